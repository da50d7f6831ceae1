#!/usr/bin/env bash
# User-space instructions per request of each example server, counted by
# callgrind: trioxide's examples, the same servers on tokio's current-thread
# runtime, and the hand-written mio loop, one after the other.
#
#   bash benches/io_instructions.sh            # about 1 minute
#   SECS=4 SCENARIOS="echo1k http" bash benches/io_instructions.sh
#
# Why: on a shared 2-core machine, CPU time per request (benches/io.sh) moves
# by ±10% from run to run, and every server spends ~90% of it in the kernel,
# in the same syscalls. Instructions executed in user space are what differs
# between the runtimes, and callgrind counts them the same way whatever else
# the machine is doing. (It does not see the kernel: compare syscall counts
# for that, in benches/io.sh's `syscalls` scenario.)
#
# Each server runs under `valgrind --tool=callgrind`; its counters are zeroed
# once it listens (`callgrind_control -z`), the load generator runs for SECS
# seconds, the counters are dumped (`callgrind_control -d`), and the dump's
# total is divided by the requests the load generator completed. Startup and
# shutdown are not counted.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-3}
declare -A REQ=()
SCENARIOS=${SCENARIOS:-"echo1k echo10k http pingpong"}
EX=${CARGO_TARGET_DIR:-target}/release/examples
TMP=$(mktemp -d)
VPID=
cleanup() {
    [[ -n $VPID ]] && kill -KILL "$VPID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || {
    echo "valgrind (with callgrind_control) is needed" >&2
    exit 1
}
cargo build --release --workspace --examples -q

declare -A KIND=([echo1k]=echo [echo10k]=echo [http]=http [pingpong]=pingpong)
declare -A LOAD=(
    [echo1k]="echo --conns 10 --size 1024"
    [echo10k]="echo --conns 10 --size 10240"
    [http]="http --conns 100"
    [pingpong]="pingpong --inflight 50"
)
declare -A TITLE=(
    [echo1k]="echo, 1 KiB messages, 10 connections"
    [echo10k]="echo, 10 KiB messages, 10 connections"
    [http]="HTTP/1.1 keep-alive, 100 connections, 1 KiB body"
    [pingpong]="pingpong, 50 connections in flight"
)

server_cmd() { # server kind
    case $1 in
        trioxide)
            case $2 in
                echo) echo "$EX/echo_server" ;;
                http) echo "$EX/http_server" ;;
                pingpong) echo "$EX/pingpong" ;;
            esac
            ;;
        tokio) echo "$EX/bench_tokio_servers $2" ;;
        mio) echo "$EX/bench_mio_servers $2" ;;
    esac
}

# Prints "instructions requests" for one server in one scenario.
measure() { # server scenario
    local out="$TMP/cg.out" port line i
    # The previous server's output must go first: the wait below would
    # otherwise find its "listening on" line before the new server's
    # redirection truncates the file.
    rm -f "$out"* "$TMP/server.out" "$TMP/server.err"
    # shellcheck disable=SC2046 # the command is words on purpose
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out" \
        $(server_cmd "$1" "${KIND[$2]}") --port 0 >"$TMP/server.out" 2>"$TMP/server.err" &
    VPID=$!
    for ((i = 0; i < 200; i++)); do
        grep -q '^listening on' "$TMP/server.out" 2>/dev/null && break
        sleep 0.05
    done
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$TMP/server.out")
    [[ -n $port ]] || {
        echo "$1 did not start; its output and the end of its error output:" >&2
        cat "$TMP/server.out" >&2
        tail -5 "$TMP/server.err" >&2
        return 1
    }
    callgrind_control -z "$VPID" >/dev/null
    # shellcheck disable=SC2086
    line=$(taskset -c 1 "$EX/bench_loadgen" ${LOAD[$2]} --secs "$SECS" --addr "127.0.0.1:$port" | grep '^RESULT')
    callgrind_control -d "$VPID" >/dev/null
    for ((i = 0; i < 100; i++)); do
        [[ -s $out.1 ]] && grep -q '^totals:' "$out.1" && break
        sleep 0.05
    done
    kill -TERM "$VPID" 2>/dev/null || true
    wait "$VPID" 2>/dev/null || true
    VPID=
    echo "$(awk '/^totals:/ {print $2}' "$out.1") $(sed -n 's/.* requests=\([0-9]*\).*/\1/p' <<<"$line")"
}

echo "## User-space instructions per request (callgrind)"
echo
echo "\`SECS=$SECS bash benches/io_instructions.sh\`, $(date -u +%Y-%m-%dT%H:%MZ). Servers under callgrind on core 0,"
echo "load generator on core 1; counters zeroed after startup, dumped after the load."
for scn in $SCENARIOS; do
    declare -A IPR=()
    for s in trioxide tokio mio; do
        read -r ins req < <(measure "$s" "$scn")
        IPR[$s]=$(awk -v i="$ins" -v r="$req" 'BEGIN {printf "%.0f", i / r}')
        REQ[$s]=$req
    done
    echo
    echo "### ${TITLE[$scn]}"
    echo
    echo "| server | requests counted | instructions/request | vs tokio | vs mio |"
    echo "|---|---:|---:|---:|---:|"
    for s in trioxide tokio mio; do
        echo "| $s | ${REQ[$s]} | ${IPR[$s]} | $(awk -v a="${IPR[$s]}" -v b="${IPR[tokio]}" 'BEGIN {printf "%.2f", a / b}') | $(awk -v a="${IPR[$s]}" -v b="${IPR[mio]}" 'BEGIN {printf "%.2f", a / b}') |"
    done
done
