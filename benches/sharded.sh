#!/usr/bin/env bash
# Sharded HTTP benchmark (issue 13): trioxide's http_server with --threads 1
# and 2 beside Go's net/http (GOMAXPROCS 1 and 2, benches/go/) and tokio's
# multi-thread runtime (1 and 2 workers, benches/io/tokio_servers.rs), all
# with the same per-request busy work and the same load generator
# (benches/io/loadgen.rs, one thread on raw mio).
#
#   bash benches/sharded.sh                    # everything, 5 s runs, median of 3
#   SECS=2 RUNS=1 bash benches/sharded.sh      # quick look
#   BASE_REF=main bash benches/sharded.sh      # also today's http_server (no work), built from that ref
#
# Parts (PARTS, default all of them):
#   work   100 keep-alive connections, --work-us 50 (WORK) per request: req/s
#   nowork the same with no work: req/s and server CPU per request
#          (utime+stime from /proc/PID/stat over the load ÷ requests)
#   skew   SKEW_CONNS (4, then 10) long-lived connections, --work-us 50,
#          trioxide with 2 shards in both balance modes: req/s and how the
#          connections were spread (the server prints it at SIGTERM);
#          SKEW_RUNS (5) runs each. With reuseport the split is the kernel's
#          hash of each connection's ports: with 4 connections, all 4 on one
#          shard (one core idle) has odds 1/8, 3/1 has 1/2.
#
# Nothing is pinned: on a 2-core machine the load generator competes with
# a 2-thread server for the same 2 cores (as it does for every server here),
# so no server can use 2 full cores. Each run starts its server afresh.
# The servers and the load generator run at nice NICE (-10 when root, 0
# otherwise), so that other work on the machine (builds) disturbs them less. Markdown
# tables go to stdout, progress to stderr. Go is installed with apt-get if
# `go` is missing and we are root; without Go its rows are left out.
#
# Environment: SECS (5), RUNS (3), SKEW_RUNS (5), SKEW_CONNS ("4 10"), CONNS (100), WORK (50),
# PARTS, BASE_REF, NICE, CARGO_TARGET_DIR. Linux only; needs awk, getconf.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-5}
RUNS=${RUNS:-3}
SKEW_RUNS=${SKEW_RUNS:-5}
SKEW_CONNS=${SKEW_CONNS:-4 10}
CONNS=${CONNS:-100}
WORK=${WORK:-50}
PARTS=${PARTS:-work nowork skew}
BASE_REF=${BASE_REF:-}
if [[ $(id -u) -eq 0 ]]; then NICE=${NICE:--10}; else NICE=${NICE:-0}; fi
TARGET=${CARGO_TARGET_DIR:-target}
EX=$TARGET/release/examples
LOADGEN=$EX/bench_loadgen
TICK=$(getconf CLK_TCK)

log() { echo "sharded.sh: $*" >&2; }

TMP=$(mktemp -d /tmp/trioxide-sharded.XXXXXX)
SERVER=
cleanup() {
    if [[ -n $SERVER ]] && kill -0 "$SERVER" 2>/dev/null; then kill -KILL "$SERVER" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

# ---------------------------------------------------------------- build

log "building (release)"
cargo build --release --example http_server >&2
cargo build --release -p trioxide-bench --example bench_tokio_servers --example bench_loadgen >&2
GO_BIN=
if ! command -v go >/dev/null && [[ $(id -u) -eq 0 ]]; then
    log "installing Go (apt-get install -y golang-go)"
    apt-get install -y golang-go >&2 || log "could not install Go: its rows are left out"
fi
if command -v go >/dev/null; then
    (cd benches/go && GOFLAGS=-mod=mod go build -o "$TMP/go_http" .) >&2 && GO_BIN=$TMP/go_http
fi
BASE_BIN=
if [[ -n $BASE_REF ]]; then
    log "building today's http_server from $BASE_REF"
    mkdir -p "$TMP/base"
    git archive "$BASE_REF" | tar -x -C "$TMP/base"
    # git archive keeps the commit's mtimes: a second run rebuilds nothing.
    (cd "$TMP/base" && CARGO_TARGET_DIR="$TARGET/sharded-base" cargo build --release --example http_server) >&2
    BASE_BIN=$(cd "$TARGET" && pwd)/sharded-base/release/examples/http_server
fi

# ---------------------------------------------------------------- one run

# start NAME ENV... -- CMD...: starts the server at nice $NICE, waits for
# "listening on 127.0.0.1:PORT"; sets SERVER and PORT.
start() {
    local name=$1
    shift
    local envs=()
    while [[ $1 != -- ]]; do
        envs+=("$1")
        shift
    done
    shift
    # Emptied here, not by the background job's redirection: that happens
    # later, and the wait below would read the last server's port.
    : >"$TMP/out"
    : >"$TMP/err"
    env "${envs[@]}" nice -n "$NICE" "$@" >>"$TMP/out" 2>>"$TMP/err" &
    SERVER=$!
    PORT=
    for _ in $(seq 200); do
        PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$TMP/out")
        [[ -n $PORT ]] && break
        kill -0 "$SERVER" 2>/dev/null || { cat "$TMP/err" >&2; log "$name exited"; exit 1; }
        sleep 0.05
    done
    [[ -n $PORT ]] || { log "$name printed no address"; exit 1; }
}

# stop: SIGTERM (trioxide drains and prints its per-shard counts), then
# SIGKILL if still there after 10 s.
stop() {
    kill -TERM "$SERVER" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$SERVER" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# load CONNS: runs the load generator; sets RATE, REQS, CPU_US (server CPU
# per request, µs).
load() {
    local t0 t1 line
    t0=$(cpu_ticks "$SERVER")
    line=$(nice -n "$NICE" "$LOADGEN" http --addr "127.0.0.1:$PORT" --conns "$1" --secs "$SECS" | grep '^RESULT')
    t1=$(cpu_ticks "$SERVER")
    RATE=$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$line")
    REQS=$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' <<<"$line")
    local errors
    errors=$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<<"$line")
    [[ $errors == 0 ]] || log "  $errors load generator errors"
    CPU_US=$(awk -v d=$((t1 - t0)) -v t="$TICK" -v r="$REQS" 'BEGIN { printf "%.2f", (r > 0) ? d / t * 1e6 / r : 0 }')
}

median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# The servers: label, then env assignments, --, the command (work in µs as $W).
servers() {
    local w=$1
    # Today's server has no --work-us: it runs in the no-work table only.
    [[ -n $BASE_BIN && $w == 0 ]] && echo "trioxide today (single-threaded, $BASE_REF)|X=1|$BASE_BIN --port 0"
    echo "trioxide --threads 1|X=1|$EX/http_server --port 0 --work-us $w"
    echo "trioxide --threads 2 (reuseport)|X=1|$EX/http_server --port 0 --work-us $w --threads 2 --balance reuseport"
    echo "trioxide --threads 2 (least-loaded)|X=1|$EX/http_server --port 0 --work-us $w --threads 2 --balance least-loaded"
    if [[ -n $GO_BIN ]]; then
        echo "Go net/http GOMAXPROCS=1|GOMAXPROCS=1|$GO_BIN -port 0 -work-us $w"
        echo "Go net/http GOMAXPROCS=2|GOMAXPROCS=2|$GO_BIN -port 0 -work-us $w"
    fi
    echo "tokio multi-thread, 1 worker|X=1|$EX/bench_tokio_servers http --port 0 --work-ns $((w * 1000)) --workers 1"
    echo "tokio multi-thread, 2 workers|X=1|$EX/bench_tokio_servers http --port 0 --work-ns $((w * 1000)) --workers 2"
}

# table WORK_US: one row per server, median req/s (and CPU per request).
# Runs are interleaved (run 1 of every server, then run 2, ...), so that a
# change in the machine's load meanwhile falls on every row alike.
table() {
    local w=$1 label envs cmd i
    local -A rates=() cpus=()
    local labels=()
    echo
    echo "HTTP keep-alive, $CONNS connections, ${w} µs of work per request, ${SECS} s runs, median of $RUNS, interleaved ($(date -u +%FT%TZ), load before: $(cut -d' ' -f1-3 /proc/loadavg))"
    echo
    echo "| server | req/s (runs) | median req/s | server CPU µs/request |"
    echo "|---|---|---:|---:|"
    servers "$w" >"$TMP/servers"
    while IFS='|' read -r label envs cmd; do labels+=("$label"); done <"$TMP/servers"
    for i in $(seq "$RUNS"); do
        while IFS='|' read -r label envs cmd; do
            # shellcheck disable=SC2086 # the command is split on purpose
            start "$label" $envs -- $cmd </dev/null
            load "$CONNS" </dev/null
            stop
            rates[$label]+="$RATE "
            cpus[$label]+="$CPU_US "
            log "run $i, $label: $RATE req/s, $CPU_US µs CPU/request"
        done <"$TMP/servers"
    done
    local med cpu
    for label in "${labels[@]}"; do
        med=$(median <<<"${rates[$label]}")
        cpu=$(median <<<"${cpus[$label]}")
        echo "$label|$med" >>"$TMP/medians.$w"
        printf '| %s | %s | %.0f | %.2f |\n' "$label" "$(tr ' ' '\n' <<<"${rates[$label]}" | { grep -v '^$' || true; } | awk '{ printf "%s%.0f", (NR > 1) ? ", " : "", $1 }')" "$med" "$cpu"
    done
    echo
    ratio "$w" "trioxide --threads 2 (reuseport)" "trioxide --threads 1"
    ratio "$w" "trioxide --threads 2 (least-loaded)" "trioxide --threads 1"
    ratio "$w" "Go net/http GOMAXPROCS=2" "Go net/http GOMAXPROCS=1"
    ratio "$w" "tokio multi-thread, 2 workers" "tokio multi-thread, 1 worker"
    ratio "$w" "trioxide --threads 2 (reuseport)" "Go net/http GOMAXPROCS=2"
    ratio "$w" "trioxide --threads 2 (least-loaded)" "Go net/http GOMAXPROCS=2"
    [[ -n $BASE_BIN && $w == 0 ]] && ratio "$w" "trioxide --threads 1" "trioxide today (single-threaded, $BASE_REF)"
    echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
}

ratio() {
    local a b
    a=$(awk -F'|' -v k="$2" '$1 == k { print $2 }' "$TMP/medians.$1")
    b=$(awk -F'|' -v k="$3" '$1 == k { print $2 }' "$TMP/medians.$1")
    [[ -n $a && -n $b ]] && awk -v a="$a" -v b="$b" -v x="$2" -v y="$3" 'BEGIN { printf "- %s ÷ %s: %.2f×\n", x, y, a / b }'
    return 0
}

skew() {
    local conns=$1 mode rates cells split
    echo
    echo "Skewed connections: $conns long-lived keep-alive connections, ${WORK} µs of work per request, 2 shards, ${SECS} s runs, $SKEW_RUNS runs ($(date -u +%FT%TZ), load before: $(cut -d' ' -f1-3 /proc/loadavg))"
    echo
    echo "| balance | req/s per run (connections per shard) | median req/s |"
    echo "|---|---|---:|"
    for mode in reuseport least-loaded; do
        rates="" cells=""
        for _ in $(seq "$SKEW_RUNS"); do
            start "$mode" X=1 -- "$EX/http_server" --port 0 --work-us "$WORK" --threads 2 --balance "$mode"
            load "$conns"
            stop
            split=$(sed -n 's/^http_server: connections served per shard: \[\(.*\)\]$/\1/p' "$TMP/err" | tr -d ' ' | tr ',' '/')
            rates+="$RATE "
            cells+="$(printf '%.0f (%s), ' "$RATE" "$split")"
            log "$mode, $conns connections: $RATE req/s, connections per shard $split"
        done
        printf '| %s | %s | %.0f |\n' "$mode" "${cells%, }" "$(median <<<"$rates")"
    done
}

for part in $PARTS; do
    case $part in
        work) table "$WORK" ;;
        nowork) table 0 ;;
        skew) for c in $SKEW_CONNS; do skew "$c"; done ;;
        *) log "unknown part $part" && exit 2 ;;
    esac
done
