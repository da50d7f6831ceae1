#!/usr/bin/env bash
# ecosystem/examples/hyper_server against real HTTP clients, as a process: curl
# (HTTP/1.1, the h2c upgrade, HTTP/2 with prior knowledge, HTTPS with
# HTTP/2 by ALPN and HTTP/1.1, POST echoes), h2load (1000 requests over
# h2c and over https) and wrk (2 s of HTTP/1.1, plain and https), then
# SIGINT: exit status 0 within the grace period. Plain first, then --tls
# with a CA written by --ca-out for curl --cacert.
#
# Prints PASS or FAIL for each check, and exits 1 if any failed. Needs
# curl, h2load (Debian: nghttp2-client) and wrk. Every client runs under
# `timeout 20`.
set -uo pipefail
cd "$(dirname "$0")/.."

# Seconds each client may take, and how long to wait for the address.
CLIENT_LIMIT=20
START_LIMIT=20
# The server's --grace, and the slack its exit after SIGINT may take.
GRACE=5
EXIT_SLACK=3

for tool in curl h2load wrk; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "real_clients: $tool is not installed (apt-get install curl nghttp2-client wrk)" >&2
        exit 1
    fi
done

cargo build --release -p trioxide-ecosystem --example hyper_server || exit 1
BIN=${CARGO_TARGET_DIR:-target}/release/examples/hyper_server

TMP=$(mktemp -d)
SERVER=
cleanup() {
    if [[ -n $SERVER ]] && kill -0 "$SERVER" 2>/dev/null; then kill -KILL "$SERVER" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

FAILED=0
pass() { printf 'PASS  %s\n' "$1"; }
fail() {
    printf 'FAIL  %s\n' "$1"
    shift
    local line
    for line in "$@"; do printf '      %s\n' "$line"; done
    FAILED=1
}
# check NAME WANT GOT: PASS if equal, FAIL showing both otherwise.
check() {
    if [[ $2 == "$3" ]]; then pass "$1"; else fail "$1" "want: $(printf %q "$2")" "got:  $(printf %q "$3")"; fi
}

# start_server SCHEME [ARGS...]: sets PORT and SERVER, or fails the run.
start_server() {
    local scheme=$1 line='' i
    shift
    "$BIN" --port 0 --grace "$GRACE" "$@" >"$TMP/out" 2>"$TMP/err" &
    SERVER=$!
    for ((i = 0; i < START_LIMIT * 10; i++)); do
        line=$(head -n1 "$TMP/out")
        [[ -n $line ]] && break
        kill -0 "$SERVER" 2>/dev/null || break
        sleep 0.1
    done
    if [[ $line =~ ^listening\ on\ $scheme://127\.0\.0\.1:([0-9]+)$ ]]; then
        PORT=${BASH_REMATCH[1]}
        pass "$scheme server started: $line"
        return 0
    fi
    fail "$scheme server started" "first line: '$line'" "stderr: $(head -c 2000 "$TMP/err")"
    exit 1
}

# stop_server: SIGINT, then exit status 0 within the grace period (plus
# slack) and the shutdown summary on stdout.
stop_server() {
    local name=$1 i status
    kill -INT "$SERVER"
    for ((i = 0; i < (GRACE + EXIT_SLACK) * 10; i++)); do
        kill -0 "$SERVER" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVER" 2>/dev/null; then
        fail "$name: SIGINT -> exit within $((GRACE + EXIT_SLACK)) s" "still running"
        kill -KILL "$SERVER"
        wait "$SERVER" 2>/dev/null
        SERVER=
        return
    fi
    wait "$SERVER"
    status=$?
    SERVER=
    local summary
    summary=$(grep '^hyper_server: shut down in' "$TMP/out")
    if [[ $status == 0 && -n $summary ]]; then
        pass "$name: SIGINT -> exit status 0 after $(echo "$i" | awk '{printf "%.1f", $1 / 10}') s ($summary)"
    else
        fail "$name: SIGINT -> exit status 0" "status $status" "stdout: $(cat "$TMP/out")" "stderr: $(head -c 2000 "$TMP/err")"
    fi
}

# curl_get NAME WANT_VERSION WANT_BODY CURL_ARGS...: one request, exact
# body and the protocol curl reports.
curl_get() {
    local name=$1 want_version=$2 want_body=$3 got
    shift 3
    if ! got=$(timeout "$CLIENT_LIMIT" curl -sS --fail -o "$TMP/body" -w '%{http_version}' "$@" 2>"$TMP/curl.err"); then
        fail "$name" "curl failed: $(cat "$TMP/curl.err")"
        return
    fi
    check "$name" "HTTP/$want_version $want_body" "HTTP/$got $(cat "$TMP/body"; echo x)"
}

# curl_echo NAME WANT_VERSION URL CURL_ARGS...: POST a 64 KiB random body
# to /echo; the answer must be the same bytes.
curl_echo() {
    local name=$1 want_version=$2 url=$3 got
    shift 3
    if ! got=$(timeout "$CLIENT_LIMIT" curl -sS --fail --data-binary @"$TMP/payload" -o "$TMP/echoed" \
        -w '%{http_version}' "$@" "$url/echo" 2>"$TMP/curl.err"); then
        fail "$name" "curl failed: $(cat "$TMP/curl.err")"
        return
    fi
    if [[ $got == "$want_version" ]] && cmp -s "$TMP/payload" "$TMP/echoed"; then
        pass "$name: 65536 bytes back, HTTP/$got"
    else
        fail "$name" "HTTP/$got (want $want_version), $(wc -c <"$TMP/echoed") bytes back, same: $(cmp -s "$TMP/payload" "$TMP/echoed" && echo yes || echo no)"
    fi
}

# h2load_all NAME URL: 1000 requests, 10 connections, 10 streams each;
# all must succeed.
h2load_all() {
    local name=$1 url=$2 line
    timeout "$CLIENT_LIMIT" h2load -n 1000 -c 10 -m 10 "$url" >"$TMP/h2load" 2>&1
    line=$(grep '^requests:' "$TMP/h2load")
    local proto
    proto=$(grep -o 'Application protocol: .*' "$TMP/h2load")
    if [[ $line == "requests: 1000 total, 1000 started, 1000 done, 1000 succeeded, 0 failed, 0 errored, 0 timeout" ]]; then
        pass "$name: $line ($proto)"
    else
        fail "$name" "${line:-no summary}" "$(tail -n 15 "$TMP/h2load")"
    fi
}

# wrk_run NAME URL: 2 s with 10 connections; requests made, every answer
# 2xx, and no read, write or timeout error (connect errors are reported).
wrk_run() {
    local name=$1 url=$2 reqs errors
    timeout "$CLIENT_LIMIT" wrk -t1 -c10 -d2s "$url" >"$TMP/wrk" 2>&1
    reqs=$(awk '/requests in/ {print $1}' "$TMP/wrk")
    errors=$(grep -o 'Socket errors: .*' "$TMP/wrk")
    local bad=''
    grep -q 'Non-2xx' "$TMP/wrk" && bad="$(grep 'Non-2xx' "$TMP/wrk")"
    if [[ $errors =~ read\ ([0-9]+),\ write\ ([0-9]+),\ timeout\ ([0-9]+) ]] &&
        ((BASH_REMATCH[1] + BASH_REMATCH[2] + BASH_REMATCH[3] > 0)); then
        bad="$bad $errors"
    fi
    if [[ -n $reqs && $reqs -gt 0 && -z $bad ]]; then
        pass "$name: $reqs requests in 2 s, all 2xx${errors:+ ($errors)}"
    else
        fail "$name" "requests: ${reqs:-none}; $bad" "$(cat "$TMP/wrk")"
    fi
}

head -c 65536 /dev/urandom >"$TMP/payload"
H1='hello from trioxide over HTTP/1.1
x'
H2='hello from trioxide over HTTP/2.0
x'

echo "== plain HTTP"
start_server http
URL=http://127.0.0.1:$PORT
curl_get "curl --http1.1 GET /" 1.1 "$H1" --http1.1 "$URL/"
# hyper-util's auto builder does not answer the h2c upgrade (HTTP/1.1
# with `Upgrade: h2c`): it serves the request over HTTP/1.1.
curl_get "curl --http2 (h2c upgrade not offered by hyper-util: HTTP/1.1 answer)" 1.1 "$H1" --http2 "$URL/"
curl_get "curl --http2-prior-knowledge GET /" 2 "$H2" --http2-prior-knowledge "$URL/"
if got=$(timeout "$CLIENT_LIMIT" curl -sS -o "$TMP/body" -w '%{http_code}' --http1.1 "$URL/nowhere" 2>&1); then
    check "curl GET /nowhere: 404" "404 not found" "$got $(cat "$TMP/body")"
else
    fail "curl GET /nowhere" "$got"
fi
curl_echo "curl --http1.1 POST /echo" 1.1 "$URL" --http1.1
curl_echo "curl --http2-prior-knowledge POST /echo" 2 "$URL" --http2-prior-knowledge
h2load_all "h2load h2c -n 1000 -c 10 -m 10" "$URL/"
wrk_run "wrk -t1 -c10 -d2s http" "$URL/"
stop_server "plain"

echo "== HTTPS (--tls)"
start_server https --tls --ca-out "$TMP/ca.pem"
URL=https://localhost:$PORT
if [[ -s $TMP/ca.pem ]] && grep -q -- '-----BEGIN CERTIFICATE-----' "$TMP/ca.pem"; then
    pass "--ca-out wrote a PEM certificate"
else
    fail "--ca-out wrote a PEM certificate" "$(head -c 200 "$TMP/ca.pem" 2>&1)"
fi
curl_get "curl --cacert https GET / (HTTP/2 by ALPN)" 2 "$H2" --cacert "$TMP/ca.pem" "$URL/"
curl_get "curl --cacert --http1.1 https GET /" 1.1 "$H1" --cacert "$TMP/ca.pem" --http1.1 "$URL/"
curl_get "curl --cacert https://127.0.0.1 (IP in the certificate)" 2 "$H2" --cacert "$TMP/ca.pem" \
    "https://127.0.0.1:$PORT/"
curl_echo "curl --cacert https POST /echo (HTTP/2)" 2 "$URL" --cacert "$TMP/ca.pem"
curl_echo "curl --cacert --http1.1 https POST /echo" 1.1 "$URL" --cacert "$TMP/ca.pem" --http1.1
# Without the CA, curl must refuse the certificate (exit 60).
timeout "$CLIENT_LIMIT" curl -sS -o /dev/null "$URL/" 2>/dev/null
check "curl without --cacert refuses the certificate (exit 60)" 60 "$?"
h2load_all "h2load https -n 1000 -c 10 -m 10" "https://127.0.0.1:$PORT/"
wrk_run "wrk -t1 -c10 -d2s https" "https://127.0.0.1:$PORT/"
stop_server "https"

if ((FAILED)); then
    echo "real_clients: some checks FAILED"
    exit 1
fi
echo "real_clients: all checks passed"
