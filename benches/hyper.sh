#!/usr/bin/env bash
# hyper on trioxide beside hyper on tokio's current-thread runtime
# (hyper-util's TokioIo/TokioExecutor), same handler, same load, one run:
#
#   bash benches/hyper.sh                     # 5 s runs, median of 3
#   SECS=2 REPEAT=1 bash benches/hyper.sh     # a quick look
#   SCENARIOS="h1 h2" bash benches/hyper.sh
#
# Scenarios (each server answers every request with --body bytes of `x`):
#   h1        HTTP/1.1 keep-alive, 1 KiB, 100 connections, driven by `wrk`
#   h1gen     the same, driven by the project's load generator (bench_loadgen http)
#   h2        HTTP/2 (prior knowledge), 1 KiB, `h2load -c 10 -m 10`
#   tls_hs    TLS handshakes per second: `h2load` over https, one request per
#             connection (-n = -c = HS_CONNS), repeated for SECS
#   tls_bulk  bulk TLS throughput: HTTP/1.1 over TLS, 1 MiB bodies, `wrk -c 4`
#   epoll     epoll_ctl calls per request, h1 with wrk, under `strace -c`
#
# Servers: `bench_hyper_trioxide` (trioxide's `hyper` and `rustls` features)
# and `bench_hyper_tokio` (tokio + tokio-rustls), both built from benches/io/,
# both with rustls on ring and a self-signed certificate made at start-up.
# The server runs on core 0 (`taskset -c 0`), the load on core 1. Server CPU
# per request is utime+stime from /proc/PID/stat across the load, divided by
# the requests the load tool reports. Markdown tables go to stdout.
#
# Needs wrk, h2load (Debian's nghttp2-client), taskset, strace; Linux only.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-5}
REPEAT=${REPEAT:-3}
HS_CONNS=${HS_CONNS:-200}
SCENARIOS=${SCENARIOS:-h1 h1gen h2 tls_hs tls_bulk epoll}
SERVERS=(trioxide tokio)
EX=${CARGO_TARGET_DIR:-target}/release/examples
TICK=$(getconf CLK_TCK)

log() { echo "hyper.sh: $*" >&2; }

for tool in wrk h2load taskset; do
    command -v "$tool" >/dev/null || { log "$tool not found (apt-get install wrk nghttp2-client util-linux)"; exit 1; }
done

TMP=$(mktemp -d /tmp/trioxide-hyper.XXXXXX)
SERVER_PID=
cleanup() {
    [[ -n $SERVER_PID ]] && kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building the two servers and the load generator"
cargo build --release -p trioxide-bench --example bench_hyper_trioxide --example bench_hyper_tokio --example bench_loadgen >&2

# start_server SERVER [ARGS...]: on core 0; sets PORT and SERVER_PID.
start_server() {
    local server=$1
    shift
    : >"$TMP/server.out"
    taskset -c 0 "$EX/bench_hyper_$server" --port 0 "$@" >"$TMP/server.out" 2>"$TMP/server.err" &
    SERVER_PID=$!
    local line='' i
    for ((i = 0; i < 200; i++)); do
        line=$(head -n1 "$TMP/server.out")
        [[ -n $line ]] && break
        sleep 0.05
    done
    if [[ $line =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)$ ]]; then
        PORT=${BASH_REMATCH[1]}
        return 0
    fi
    log "$server did not start: '$line'"
    sed 's/^/    /' "$TMP/server.err" >&2
    return 1
}

stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

cpu_ticks() {
    local line rest
    read -r line <"/proc/$1/stat"
    rest=${line##*) }
    # shellcheck disable=SC2086
    set -- $rest
    echo $((${12} + ${13}))
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else printf "%.6g\n", (a[NR/2]+a[NR/2+1])/2}'; }

# wrk's total requests and req/s from its summary.
wrk_requests() { awk '/requests in/ {print $1}' "$1"; }
wrk_rps() { awk '/^Requests\/sec/ {print $2}' "$1"; }
wrk_mbps() { # Transfer/sec in MiB/s
    awk '/^Transfer\/sec/ {v=$2; u=substr(v, length(v)-1); n=v+0; if (u=="GB") n*=1024; else if (u=="KB") n/=1024; print n}' "$1"
}
# h2load: "finished in 5.00s, 123.45 req/s, ..." and "requests: N total, N started, N done, N succeeded"
h2_rps() { awk '/^finished in/ {print $4}' "$1"; }
h2_done() { awk '/^requests:/ {print $8}' "$1"; }

# run_load SCENARIO SERVER -> "req/s cpu_us_per_req" (or "MiB/s cpu" for tls_bulk)
run_load() {
    local sc=$1 server=$2 out="$TMP/load.out" args=() reqs rate t0 t1
    case $sc in
        tls_hs | tls_bulk) args+=(--tls) ;;
    esac
    [[ $sc == tls_bulk ]] && args+=(--body 1048576)
    start_server "$server" "${args[@]}" || { echo "nan nan"; return; }
    t0=$(cpu_ticks "$SERVER_PID")
    case $sc in
        h1 | epoll)
            taskset -c 1 wrk -t1 -c100 -d"${SECS}s" "http://127.0.0.1:$PORT/" >"$out" 2>&1
            reqs=$(wrk_requests "$out"); rate=$(wrk_rps "$out") ;;
        h1gen)
            taskset -c 1 "$EX/bench_loadgen" http --addr "127.0.0.1:$PORT" --conns 100 --secs "$SECS" >"$out" 2>&1
            reqs=$(grep -o 'requests=[0-9]*' "$out" | cut -d= -f2); rate=$(grep -o 'rate=[0-9.]*' "$out" | cut -d= -f2) ;;
        h2)
            taskset -c 1 h2load -D "$SECS" -c 10 -m 10 "http://127.0.0.1:$PORT/" >"$out" 2>&1
            reqs=$(h2_done "$out"); rate=$(h2_rps "$out") ;;
        tls_hs)
            local end=$((SECONDS + SECS)) total=0 start_ns now_ns
            start_ns=$(date +%s%N)
            while ((SECONDS < end)); do
                taskset -c 1 h2load -n "$HS_CONNS" -c "$HS_CONNS" -m 1 "https://127.0.0.1:$PORT/" >"$out" 2>&1
                total=$((total + $(h2_done "$out")))
            done
            now_ns=$(date +%s%N)
            reqs=$total
            rate=$(awk -v n="$total" -v ns=$((now_ns - start_ns)) 'BEGIN {print n / (ns / 1e9)}') ;;
        tls_bulk)
            taskset -c 1 wrk -t1 -c4 -d"${SECS}s" "https://127.0.0.1:$PORT/" >"$out" 2>&1
            reqs=$(wrk_requests "$out"); rate=$(wrk_mbps "$out") ;;
    esac
    t1=$(cpu_ticks "$SERVER_PID")
    stop_server
    awk -v r="$rate" -v n="$reqs" -v dt=$((t1 - t0)) -v tick="$TICK" \
        'BEGIN {if (n > 0) printf "%s %.2f\n", r, dt / tick * 1e6 / n; else print "nan nan"}'
}

# epoll_ctl calls per request under strace (h1, wrk, 2 s).
epoll_per_request() {
    local server=$1 out="$TMP/load.out"
    : >"$TMP/server.out"
    taskset -c 0 strace -f -c -o "$TMP/strace.out" "$EX/bench_hyper_$server" --port 0 >"$TMP/server.out" 2>"$TMP/server.err" &
    local wrap=$! line='' i
    for ((i = 0; i < 200; i++)); do
        line=$(head -n1 "$TMP/server.out"); [[ -n $line ]] && break; sleep 0.05
    done
    [[ $line =~ :([0-9]+)$ ]] || { echo nan; kill -KILL $wrap; return; }
    taskset -c 1 wrk -t1 -c100 -d2s "http://127.0.0.1:${BASH_REMATCH[1]}/" >"$out" 2>&1
    pkill -TERM -P "$wrap" 2>/dev/null || true
    wait "$wrap" 2>/dev/null || true
    local reqs ctl
    reqs=$(wrk_requests "$out")
    ctl=$(awk '$NF == "epoll_ctl" {print $4}' "$TMP/strace.out")
    awk -v c="${ctl:-0}" -v n="$reqs" 'BEGIN {printf "%.4f\n", c / n}'
}

declare -A RATE CPU
for sc in $SCENARIOS; do
    if [[ $sc == epoll ]]; then
        for s in "${SERVERS[@]}"; do RATE[$sc,$s]=$(epoll_per_request "$s"); done
        continue
    fi
    for ((r = 1; r <= REPEAT; r++)); do
        for s in "${SERVERS[@]}"; do
            read -r rate cpu < <(run_load "$sc" "$s")
            log "$sc $s run $r: $rate $cpu"
            echo "$rate" >>"$TMP/$sc.$s.rate"
            echo "$cpu" >>"$TMP/$sc.$s.cpu"
        done
    done
    for s in "${SERVERS[@]}"; do
        RATE[$sc,$s]=$(median <"$TMP/$sc.$s.rate")
        CPU[$sc,$s]=$(median <"$TMP/$sc.$s.cpu")
    done
done

echo
echo "| scenario | trioxide | tokio | ratio (tokio / trioxide) | server µs/request trioxide | tokio | ratio (trioxide / tokio) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for sc in $SCENARIOS; do
    [[ $sc == epoll ]] && continue
    awk -v sc="$sc" -v a="${RATE[$sc,trioxide]}" -v b="${RATE[$sc,tokio]}" -v ca="${CPU[$sc,trioxide]}" -v cb="${CPU[$sc,tokio]}" \
        'BEGIN {unit = (sc == "tls_bulk") ? " MiB/s" : " /s"; printf "| %s | %s%s | %s%s | %.3f | %s | %s | %.3f |\n", sc, a, unit, b, unit, b / a, ca, cb, ca / cb}'
done
if [[ " $SCENARIOS " == *" epoll "* ]]; then
    echo
    echo "epoll_ctl calls per request (h1, wrk, 2 s under strace): trioxide ${RATE[epoll,trioxide]}, tokio ${RATE[epoll,tokio]}"
fi
