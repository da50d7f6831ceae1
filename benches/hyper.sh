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
#   instr     user-space instructions per request under callgrind (the
#             repeatable figure): h1 with bench_loadgen (100 connections) and
#             h2 with h2load (-c 10 -m 10), INSTR_SECS seconds of load after
#             the counters are zeroed (the server listening); needs valgrind.
#             CALLGRIND_KEEP=DIR keeps the dumps for callgrind_annotate.
#
# Servers: `bench_hyper_trioxide` (trioxide's `hyper` and `rustls` features)
# and `bench_hyper_tokio` (tokio + tokio-rustls), both built from benches/io/,
# both with rustls on ring and a self-signed certificate made at start-up.
# The server runs on core 0 (`taskset -c 0`), the load on core 1; the two
# servers' order alternates from one repeat to the next. Server CPU per
# request is utime+stime from /proc/PID/stat across the load, divided by the
# requests the load tool reports; "busy" is that CPU time over the load's
# wall time (near 100 %: the server, not the load tool, is the bottleneck).
# The load average is printed before and after. Markdown tables go to stdout.
#
# Needs wrk, h2load (Debian's nghttp2-client), taskset, strace; Linux only.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-5}
REPEAT=${REPEAT:-3}
HS_CONNS=${HS_CONNS:-200}
INSTR_SECS=${INSTR_SECS:-3}
SCENARIOS=${SCENARIOS:-h1 h1gen h2 tls_hs tls_bulk epoll instr}
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
    if [[ -n $SERVER_PID ]]; then
        # Under strace the server is strace's child: that one first.
        for child in $(pgrep -P "$SERVER_PID" || true); do kill -KILL "$child" 2>/dev/null || true; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
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
h2_done() { awk '/^requests:/ {print $8}' "$1"; }     # succeeded
h2_failed() { awk '/^requests:/ {print $10}' "$1"; }  # failed
# wrk: socket errors (connect, read, write, timeout) and non-2xx answers.
wrk_errors() {
    awk '/Socket errors/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10} /Non-2xx/ {n += $NF} END {print n + 0}' "$1"
}

# run_load SCENARIO SERVER: sets LOAD to "rate cpu_us_per_req busy_percent
# errors" (rate in req/s, in MiB/s for tls_bulk), "nan nan nan nan" on failure.
# Runs in the main shell (not in a $(...)) so that the EXIT trap knows the
# server's pid.
run_load() {
    local sc=$1 server=$2 out="$TMP/load.out" args=() reqs=0 rate=nan errs=0 t0 t1 w0 w1
    LOAD="nan nan nan nan"
    case $sc in
        tls_hs | tls_bulk) args+=(--tls) ;;
    esac
    [[ $sc == tls_bulk ]] && args+=(--body 1048576)
    start_server "$server" "${args[@]}" || return 0
    t0=$(cpu_ticks "$SERVER_PID")
    w0=$(date +%s%N)
    case $sc in
        h1 | epoll)
            taskset -c 1 wrk -t1 -c100 -d"${SECS}s" "http://127.0.0.1:$PORT/" >"$out" 2>&1 || true
            reqs=$(wrk_requests "$out"); rate=$(wrk_rps "$out"); errs=$(wrk_errors "$out") ;;
        h1gen)
            taskset -c 1 "$EX/bench_loadgen" http --addr "127.0.0.1:$PORT" --conns 100 --secs "$SECS" >"$out" 2>&1 || true
            reqs=$(grep -o 'requests=[0-9]*' "$out" | cut -d= -f2)
            rate=$(grep -o 'rate=[0-9.]*' "$out" | cut -d= -f2)
            errs=$(grep -o 'errors=[0-9]*' "$out" | cut -d= -f2) ;;
        h2)
            taskset -c 1 h2load -D "$SECS" -c 10 -m 10 "http://127.0.0.1:$PORT/" >"$out" 2>&1 || true
            reqs=$(h2_done "$out"); rate=$(h2_rps "$out"); errs=$(h2_failed "$out") ;;
        tls_hs)
            local end_ns=$((w0 + SECS * 1000000000)) total=0 failed=0 n
            while (($(date +%s%N) < end_ns)); do
                taskset -c 1 h2load -n "$HS_CONNS" -c "$HS_CONNS" -m 1 "https://127.0.0.1:$PORT/" >"$out" 2>&1 || true
                n=$(h2_done "$out"); total=$((total + ${n:-0}))
                n=$(h2_failed "$out"); failed=$((failed + ${n:-$HS_CONNS}))
            done
            reqs=$total errs=$failed
            rate=$(awk -v n="$total" -v ns=$(($(date +%s%N) - w0)) 'BEGIN {print n / (ns / 1e9)}') ;;
        tls_bulk)
            taskset -c 1 wrk -t1 -c4 -d"${SECS}s" "https://127.0.0.1:$PORT/" >"$out" 2>&1 || true
            reqs=$(wrk_requests "$out"); rate=$(wrk_mbps "$out"); errs=$(wrk_errors "$out") ;;
    esac
    t1=$(cpu_ticks "$SERVER_PID")
    w1=$(date +%s%N)
    stop_server
    [[ ${reqs:-0} -gt 0 ]] || { log "$sc $server: no requests; the load tool said:"; sed 's/^/    /' "$out" >&2; return 0; }
    LOAD=$(awk -v r="${rate:-nan}" -v n="$reqs" -v dt=$((t1 - t0)) -v tick="$TICK" -v wall=$((w1 - w0)) -v e="${errs:-0}" \
        'BEGIN {printf "%s %.2f %.0f %s\n", r, dt / tick * 1e6 / n, dt / tick * 1e9 / wall * 100, e}')
}

# epoll_ctl under strace (h1, wrk, 100 connections, 2 s): sets EPOLL to
# "epoll_ctl_calls requests epoll_ctl_per_request epoll_ctl_per_connection".
# Counted over the server's whole life (start-up and the 100 connects
# included), so a per-request figure well below 1 means "none per request".
epoll_per_request() {
    local server=$1 out="$TMP/load.out" line='' i pid=''
    EPOLL="nan nan nan nan"
    : >"$TMP/server.out"
    taskset -c 0 strace -f -c -o "$TMP/strace.out" "$EX/bench_hyper_$server" --port 0 >"$TMP/server.out" 2>"$TMP/server.err" &
    SERVER_PID=$! # strace (taskset execs it); the server is its child
    for ((i = 0; i < 200; i++)); do
        line=$(head -n1 "$TMP/server.out"); [[ -n $line ]] && break; sleep 0.05
    done
    if ! [[ $line =~ :([0-9]+)$ ]]; then
        log "$server under strace did not start: '$line'"
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        return 0
    fi
    taskset -c 1 wrk -t1 -c100 -d2s "http://127.0.0.1:${BASH_REMATCH[1]}/" >"$out" 2>&1 || true
    pid=$(pgrep -P "$SERVER_PID" | head -n1 || true)
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    local reqs ctl
    reqs=$(wrk_requests "$out")
    ctl=$(awk '$NF == "epoll_ctl" {print $4}' "$TMP/strace.out")
    EPOLL=$(awk -v c="${ctl:-0}" -v n="${reqs:-0}" 'BEGIN {if (n > 0) printf "%d %d %.4f %.2f\n", c, n, c / n, c / 100; else print "nan nan nan nan"}')
}

# instructions SERVER h1|h2: sets INSTR to "instructions requests per_request"
# (user space, callgrind, counters zeroed once the server listens).
instructions() {
    local server=$1 kind=$2 out="$TMP/cg.out" line='' i reqs=0 ins
    INSTR="nan nan nan"
    rm -f "$out"*
    : >"$TMP/server.out"
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$EX/bench_hyper_$server" --port 0 >"$TMP/server.out" 2>"$TMP/server.err" &
    SERVER_PID=$!
    for ((i = 0; i < 600; i++)); do
        line=$(head -n1 "$TMP/server.out"); [[ -n $line ]] && break; sleep 0.05
    done
    if ! [[ $line =~ :([0-9]+)$ ]]; then
        log "$server under callgrind did not start: '$line'"
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
        return 0
    fi
    local port=${BASH_REMATCH[1]}
    callgrind_control -z "$SERVER_PID" >/dev/null
    case $kind in
        h1)
            taskset -c 1 "$EX/bench_loadgen" http --addr "127.0.0.1:$port" --conns 100 --secs "$INSTR_SECS" >"$TMP/load.out" 2>&1 || true
            reqs=$(grep -o 'requests=[0-9]*' "$TMP/load.out" | cut -d= -f2) ;;
        h2)
            taskset -c 1 h2load -D "$INSTR_SECS" -c 10 -m 10 "http://127.0.0.1:$port/" >"$TMP/load.out" 2>&1 || true
            reqs=$(h2_done "$TMP/load.out") ;;
    esac
    callgrind_control -d "$SERVER_PID" >/dev/null
    for ((i = 0; i < 200; i++)); do
        [[ -s $out.1 ]] && grep -q '^totals:' "$out.1" && break
        sleep 0.05
    done
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    ins=$(awk '/^totals:/ {print $2}' "$out.1")
    if [[ -n ${CALLGRIND_KEEP:-} ]]; then
        mkdir -p "$CALLGRIND_KEEP"
        cp "$out.1" "$CALLGRIND_KEEP/callgrind.$kind.$server"
    fi
    [[ ${reqs:-0} -gt 0 && -n $ins ]] || return 0
    INSTR=$(awk -v i="$ins" -v n="$reqs" 'BEGIN {printf "%d %d %.0f\n", i, n, i / n}')
}

LOADAVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u +%Y-%m-%dT%H:%MZ)
declare -A RATE CPU BUSY ERRS EP IN
for sc in $SCENARIOS; do
    if [[ $sc == instr ]]; then
        command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || { log "instr needs valgrind"; continue; }
        for k in h1 h2; do
            for s in "${SERVERS[@]}"; do
                instructions "$s" "$k"
                IN[$k,$s]=$INSTR
                log "instr $k $s: instructions requests per_request = $INSTR"
            done
        done
        continue
    fi
    if [[ $sc == epoll ]]; then
        for s in "${SERVERS[@]}"; do
            epoll_per_request "$s"
            EP[$s]=$EPOLL
            log "epoll $s: epoll_ctl requests per_request per_connection = $EPOLL"
        done
        continue
    fi
    for ((r = 1; r <= REPEAT; r++)); do
        order=("${SERVERS[@]}")
        ((r % 2 == 0)) && order=("${SERVERS[1]}" "${SERVERS[0]}")
        for s in "${order[@]}"; do
            run_load "$sc" "$s"
            read -r rate cpu busy errs <<<"$LOAD"
            log "$sc $s run $r: rate $rate, server $cpu µs/request, busy $busy %, errors $errs"
            echo "$rate" >>"$TMP/$sc.$s.rate"
            echo "$cpu" >>"$TMP/$sc.$s.cpu"
            echo "$busy" >>"$TMP/$sc.$s.busy"
            echo "$errs" >>"$TMP/$sc.$s.errs"
        done
    done
    for s in "${SERVERS[@]}"; do
        RATE[$sc,$s]=$(median <"$TMP/$sc.$s.rate")
        CPU[$sc,$s]=$(median <"$TMP/$sc.$s.cpu")
        BUSY[$sc,$s]=$(median <"$TMP/$sc.$s.busy")
        ERRS[$sc,$s]=$(awk '{n += $1} END {print n + 0}' "$TMP/$sc.$s.errs")
    done
done
LOADAVG_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a + 0 > 0 && b + 0 > 0) printf "%.3f", a / b; else print "nan"}'; }

echo
echo "\`SECS=$SECS REPEAT=$REPEAT HS_CONNS=$HS_CONNS bash benches/hyper.sh\` on $(nproc) cores, $(uname -sr), $STARTED;"
echo "load average (1, 5, 15 min) $LOADAVG_BEFORE before, $LOADAVG_AFTER after. Medians of $REPEAT run(s); ratios > 1 mean trioxide is behind."
echo
echo "| scenario | trioxide | tokio | throughput ratio (tokio / trioxide) | server µs/request trioxide | tokio | CPU ratio (trioxide / tokio) | server busy % trioxide / tokio | errors trioxide / tokio |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for sc in $SCENARIOS; do
    [[ $sc == epoll || $sc == instr ]] && continue
    unit=/s
    [[ $sc == tls_bulk ]] && unit=" MiB/s"
    a=${RATE[$sc,trioxide]} b=${RATE[$sc,tokio]} ca=${CPU[$sc,trioxide]} cb=${CPU[$sc,tokio]}
    echo "| $sc | $a$unit | $b$unit | $(ratio "$b" "$a") | $ca | $cb | $(ratio "$ca" "$cb") | ${BUSY[$sc,trioxide]} / ${BUSY[$sc,tokio]} | ${ERRS[$sc,trioxide]} / ${ERRS[$sc,tokio]} |"
done
if [[ " $SCENARIOS " == *" epoll "* ]]; then
    echo
    echo "epoll_ctl under \`strace -f -c\` (h1, wrk, 100 connections, 2 s; counted over the server's whole life):"
    echo
    echo "| server | epoll_ctl calls | requests | epoll_ctl / request | epoll_ctl / connection |"
    echo "|---|---:|---:|---:|---:|"
    for s in "${SERVERS[@]}"; do
        read -r c n pr pc <<<"${EP[$s]}"
        echo "| $s | $c | $n | $pr | $pc |"
    done
fi
if [[ " $SCENARIOS " == *" instr "* ]]; then
    echo
    echo "User-space instructions per request under callgrind ($INSTR_SECS s of load after the server listens):"
    echo
    echo "| load | trioxide | tokio | ratio (trioxide / tokio) | requests trioxide / tokio |"
    echo "|---|---:|---:|---:|---:|"
    for k in h1 h2; do
        read -r _ na pa <<<"${IN[$k,trioxide]:-nan nan nan}"
        read -r _ nb pb <<<"${IN[$k,tokio]:-nan nan nan}"
        case $k in
            h1) what="h1, bench_loadgen http, 100 connections" ;;
            h2) what="h2, h2load -c 10 -m 10" ;;
        esac
        echo "| $what | $pa | $pb | $(ratio "$pa" "$pb") | $na / $nb |"
    done
fi
