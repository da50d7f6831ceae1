// The Go side of the sharded HTTP benchmark (benches/sharded.sh): net/http
// with keep-alive, answering GET / with a body of -body bytes after
// spinning -work-us microseconds of CPU per request, as the trioxide
// http_server's --work-us and the tokio server's do. GOMAXPROCS (from the
// environment) sets how many cores it uses.
//
//	go run ./benches/go -port 0 -work-us 50
//
// Prints "listening on 127.0.0.1:PORT" first, then serves until killed.
// Not built by CI: the script builds it with `go build` when Go is there.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	port := flag.Int("port", 0, "port on 127.0.0.1 (0: any free port)")
	bodyLen := flag.Int("body", 1024, "size of the answer to GET /")
	workUs := flag.Int("work-us", 0, "CPU to burn per request, in microseconds")
	flag.Parse()

	body := make([]byte, *bodyLen)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	work := time.Duration(*workUs) * time.Microsecond
	length := strconv.Itoa(len(body))

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if work > 0 {
			start := time.Now()
			for time.Since(start) < work {
			}
		}
		h := w.Header()
		h.Set("Content-Type", "text/plain")
		h.Set("Content-Length", length)
		w.WriteHeader(http.StatusOK)
		w.Write(body)
	})

	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	if err := http.Serve(ln, handler); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
}
