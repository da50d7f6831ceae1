#!/usr/bin/env bash
# I/O benchmarks: trioxide's example servers (echo_server, http_server,
# pingpong) against the same servers on tokio's current-thread runtime
# (benches/io/tokio_servers.rs) and on a hand-written mio loop
# (benches/io/mio_servers.rs), all driven by benches/io/loadgen.rs.
#
#   bash benches/io.sh                         # everything, 5 s runs, median of 3
#   SECS=2 REPEAT=1 bash benches/io.sh         # quick look
#   SCENARIOS="echo10k http" bash benches/io.sh
#   SCENARIOS=fairness_hog bash benches/io.sh  # fairness under contention only
#
# Scenarios: echo1k echo10k echo100k (10 connections, one message in flight
# each), http (100 keep-alive connections, 1 KiB body), pingpong (50
# connections in flight, one request each), fairness (echo with
# --work-ns 20000: two greedy streams and a 10 ms ping), fairness_hog (plain
# echo, two greedy 64 KiB streams and the ping, while a CPU hog, a busy
# loop started and stopped by this script, shares the server's core; the mio
# loop with a 32-read budget per readiness event), idle (10,000 idle
# connections: server RSS per connection), syscalls (echo10k, http and
# pingpong again under `strace -f -c`: syscalls per request).
#
# Every server runs on core 0 (`taskset -c 0`), the load generator on core 1.
# Each repeat runs the three servers one after the other, each freshly
# started. Server CPU is utime+stime from /proc/PID/stat, read before and
# after the load; the load generator's `requests` covers the same span.
# Markdown tables go to stdout, progress to stderr.
#
# Environment: SECS (5) seconds of load per run, REPEAT (3) runs per figure
# (the median is reported), SCENARIOS (all of the above), STRACE_SECS (2)
# seconds per run in the syscall pass, IDLE_CONNS (10000), CARGO_TARGET_DIR,
# SYSCALL_TOOL (strace): `perf` counts the syscalls with `perf stat` on the
# syscall tracepoints instead (root or perf_event_paranoid <= -1). strace
# slows a server several times over, which changes how much work each
# wake-up finds (fewer EAGAIN reads, fewer epoll_waits per request); perf
# does not.
#
# Needs taskset, strace (or perf), getconf, awk; Linux only.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-5}
REPEAT=${REPEAT:-3}
STRACE_SECS=${STRACE_SECS:-2}
SYSCALL_TOOL=${SYSCALL_TOOL:-strace}
IDLE_CONNS=${IDLE_CONNS:-10000}
SCENARIOS=${SCENARIOS:-echo1k echo10k echo100k http pingpong fairness fairness_hog idle syscalls}
SERVERS=(trioxide tokio mio)
EX=${CARGO_TARGET_DIR:-target}/release/examples
LOADGEN=$EX/bench_loadgen
TICK=$(getconf CLK_TCK)

log() { echo "io.sh: $*" >&2; }

# ---------------------------------------------------------------- cleanup

TMP=$(mktemp -d /tmp/trioxide-io.XXXXXX)
PIDS=() # every process started in the background, killed on exit

children() { cat "/proc/$1/task/$1/children" 2>/dev/null || true; }

cleanup() {
    local p
    # Children first: a server under strace would survive strace's death.
    for p in "${PIDS[@]}"; do
        # shellcheck disable=SC2046
        kill -TERM $(children "$p") 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.2
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
    local p keep=()
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# ---------------------------------------------------------------- build

log "building (cargo build --release --workspace --examples)"
if ! cargo build --release --workspace --examples >&2; then
    log "full build failed: building the benchmark's own examples only; trioxide's servers are skipped"
    cargo build --release -p trioxide-bench --example bench_tokio_servers --example bench_mio_servers --example bench_loadgen >&2
    SKIP_TRIOXIDE=1
fi

# Open-file limit for the idle scenario (the servers and the load generator
# inherit it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 1048576 2>/dev/null || true
NOFILE=$(ulimit -n)
if [[ $NOFILE != unlimited ]] && ((NOFILE < IDLE_CONNS + 64)); then
    log "ulimit -n is $NOFILE: idle scenario uses $((NOFILE - 64)) connections instead of $IDLE_CONNS"
    IDLE_CONNS=$((NOFILE - 64))
fi

# ---------------------------------------------------------------- servers

server_bin() { # server kind
    case $1 in
        trioxide)
            case $2 in
                echo) echo "$EX/echo_server" ;;
                http) echo "$EX/http_server" ;;
                pingpong) echo "$EX/pingpong" ;;
            esac
            ;;
        tokio) echo "$EX/bench_tokio_servers" ;;
        mio) echo "$EX/bench_mio_servers" ;;
    esac
}

# Why a server cannot run (empty if it can).
server_missing() { # server kind
    local bin
    bin=$(server_bin "$1" "$2")
    if [[ $1 == trioxide && -n ${SKIP_TRIOXIDE:-} ]]; then
        echo "trioxide's examples did not build"
    elif [[ ! -x $bin ]]; then
        echo "$bin not found"
    fi
}

SERVER_PID=
WRAP_PID=
PORT=

# start_server SERVER KIND [ARGS...]: starts it on core 0 (under `strace -f -c
# -o $STRACE_FILE` if that is set), waits for its first line, sets PORT and
# SERVER_PID. Returns 1 if it does not come up.
start_server() {
    local server=$1 kind=$2
    shift 2
    local cmd=("$(server_bin "$server" "$kind")")
    [[ $server == trioxide ]] || cmd+=("$kind")
    cmd+=(--port 0 "$@")
    : >"$TMP/server.out"
    if [[ -n ${STRACE_FILE:-} ]]; then
        taskset -c 0 strace -f -c -o "$STRACE_FILE" "${cmd[@]}" >"$TMP/server.out" 2>"$TMP/server.err" &
        WRAP_PID=$!
        PIDS+=("$WRAP_PID")
        SERVER_PID= # found below, once it is up (strace forks probes first)
    else
        taskset -c 0 "${cmd[@]}" >"$TMP/server.out" 2>"$TMP/server.err" &
        SERVER_PID=$!
        WRAP_PID=$SERVER_PID
        PIDS+=("$SERVER_PID")
    fi
    local line='' i c
    for ((i = 0; i < 200; i++)); do
        line=$(head -n1 "$TMP/server.out")
        [[ -n $line ]] && break
        kill -0 "$WRAP_PID" 2>/dev/null || break
        sleep 0.05
    done
    if [[ -z $SERVER_PID ]]; then
        # Once the server has printed, strace's probe children are long gone.
        for c in $(children "$WRAP_PID"); do
            SERVER_PID=$c
            PIDS+=("$c")
            break
        done
    fi
    if [[ $line =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)$ && -n $SERVER_PID ]]; then
        PORT=${BASH_REMATCH[1]}
        return 0
    fi
    log "$server $kind did not start (first line: '${line}'); stderr:"
    sed 's/^/    /' "$TMP/server.err" >&2
    stop_server
    return 1
}

# Stops the server (and strace, which writes its summary once the server has
# exited), SIGKILL after 3 s.
stop_server() {
    local p i
    if [[ -n $SERVER_PID ]]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; fi
    for ((i = 0; i < 60; i++)); do
        kill -0 "$WRAP_PID" 2>/dev/null || break
        sleep 0.05
    done
    for p in $SERVER_PID $WRAP_PID; do
        kill -KILL "$p" 2>/dev/null || true
    done
    wait "$WRAP_PID" 2>/dev/null || true
    for p in $SERVER_PID $WRAP_PID; do forget_pid "$p"; done
    SERVER_PID=
    WRAP_PID=
}

cpu_ticks() { # pid -> utime+stime in clock ticks (fields 14 and 15)
    local line rest
    read -r line <"/proc/$1/stat" || return 1
    rest=${line##*) } # fields from 3 on: comm may contain spaces
    # shellcheck disable=SC2086
    set -- $rest
    echo $((${12} + ${13}))
}

fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

vmrss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Runs the load generator on core 1 (bounded in time); prints its RESULT line.
loadgen() { # args...
    timeout -k 5 $((SECS + STRACE_SECS + 60)) taskset -c 1 "$LOADGEN" "$@" --addr "127.0.0.1:$PORT" | grep '^RESULT' || true
}

field() { # key line
    local re=" $1=([^ ]*)"
    [[ $2 =~ $re ]] && echo "${BASH_REMATCH[1]}"
}

# ---------------------------------------------------------------- results

declare -A RES # "scenario|server|metric" -> space-separated values, one per repeat
declare -A SKIPPED # "scenario|server" -> why

add() { RES["$1|$2|$3"]+="$4 "; }

median() {
    printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {
        if (NR == 0) print "";
        else if (NR % 2) print a[(NR + 1) / 2];
        else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

med() { # scenario server metric -> median or empty
    # shellcheck disable=SC2086
    median ${RES["$1|$2|$3"]:-}
}

fmt() { # printf-format value -> formatted, or – when empty
    # shellcheck disable=SC2059 # the format is the argument
    if [[ -z $2 ]]; then echo "–"; else LC_ALL=C printf "$1" "$2"; fi
}

ratio() { # a b -> a/b with 2 decimals, or –
    if [[ -z $1 || -z $2 ]] || awk -v b="$2" 'BEGIN {exit !(b == 0)}'; then
        echo "–"
    else
        awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'
    fi
}

skip_notes() { # scenario
    local s
    for s in "${SERVERS[@]}"; do
        [[ -n ${SKIPPED["$1|$s"]:-} ]] && echo "_${s}: skipped (${SKIPPED["$1|$s"]})._"
    done
    true
}

# ---------------------------------------------------------------- scenarios

# scenario name -> server kind, server args, load generator args, title
declare -A KIND=([echo1k]=echo [echo10k]=echo [echo100k]=echo [http]=http [pingpong]=pingpong [fairness]=echo [fairness_hog]=echo [idle]=echo)
declare -A SARGS=([http]="--body 1024" [fairness]="--work-ns 20000")
# Extra server arguments for one server only: "scenario|server" -> args.
declare -A SARGS_ONLY=([fairness_hog|mio]="--read-budget 32")
declare -A LARGS=(
    [echo1k]="echo --conns 10 --size 1024"
    [echo10k]="echo --conns 10 --size 10240"
    [echo100k]="echo --conns 10 --size 102400"
    [http]="http --conns 100 --pipeline 1"
    [pingpong]="pingpong --inflight 50"
    [fairness]="fairness --chunk 16384"
    [fairness_hog]="fairness --chunk 65536"
)
declare -A TITLE=(
    [echo1k]="echo, 1 KiB messages, 10 connections"
    [echo10k]="echo, 10 KiB messages, 10 connections"
    [echo100k]="echo, 100 KiB messages, 10 connections"
    [http]="HTTP/1.1 keep-alive, 100 connections, 1 KiB body"
    [pingpong]="pingpong (one request per connection), 50 connections in flight"
    [fairness]="fairness: echo with --work-ns 20000, two greedy 16 KiB streams + a 1-byte ping every 10 ms"
    [fairness_hog]="fairness under contention: echo, two greedy 64 KiB streams + a 1-byte ping every 10 ms, a CPU hog on the server's core (mio: 32-read budget)"
    [idle]="idle: $IDLE_CONNS connections held open (echo server)"
)

run_throughput() { # scenario server
    local scn=$1 s=$2 kind=${KIND[$1]} before after line req
    # shellcheck disable=SC2086
    start_server "$s" "$kind" ${SARGS[$scn]:-} || {
        add "$scn" "$s" fail 1
        return
    }
    before=$(cpu_ticks "$SERVER_PID" || echo 0)
    # shellcheck disable=SC2086
    line=$(loadgen ${LARGS[$scn]} --secs "$SECS")
    after=$(cpu_ticks "$SERVER_PID" || echo "")
    stop_server
    req=$(field requests "$line")
    if [[ -z $line || -z $after || -z $req || $req == 0 ]]; then
        log "$scn $s: no result (load generator: '${line}')"
        add "$scn" "$s" fail 1
        return
    fi
    log "$scn $s: $line cpu_ticks=$((after - before))"
    if awk -v t="$(field secs "$line")" -v want="$SECS" 'BEGIN {exit !(t > want * 1.1 + 0.1)}'; then
        log "warning: $scn $s: the load generator overran its ${SECS} s (descheduled? the machine is busy): treat this run with suspicion"
    fi
    add "$scn" "$s" rate "$(field rate "$line")"
    add "$scn" "$s" cpu "$(awk -v t=$((after - before)) -v hz="$TICK" -v r="$req" 'BEGIN {print t / hz * 1e6 / r}')"
    add "$scn" "$s" errors "$(field errors "$line")"
}

table_throughput() { # scenario
    local scn=$1 s tok mio
    tok=$(med "$scn" tokio cpu)
    mio=$(med "$scn" mio cpu)
    echo
    echo "### ${TITLE[$scn]}"
    echo
    echo "| server | rate (req/s) | server CPU (µs/req) | CPU/req vs tokio | CPU/req vs mio | errors |"
    echo "|---|---:|---:|---:|---:|---:|"
    for s in "${SERVERS[@]}"; do
        [[ -n ${SKIPPED["$scn|$s"]:-} ]] && continue
        local cpu
        cpu=$(med "$scn" "$s" cpu)
        echo "| $s | $(fmt %.0f "$(med "$scn" "$s" rate)") | $(fmt %.2f "$cpu") | $(ratio "$cpu" "$tok") | $(ratio "$cpu" "$mio") | $(fmt %.0f "$(med "$scn" "$s" errors)")$(
            [[ -n ${RES["$scn|$s|fail"]:-} ]] && echo " (failed runs: $(wc -w <<<"${RES["$scn|$s|fail"]}"))"
        ) |"
    done
    skip_notes "$scn"
}

HOG_PID=

# A CPU hog on core 0 (the servers' core): a shell busy loop, bounded by
# `timeout` in case this script dies without its cleanup.
start_hog() {
    timeout -k 1 $((SECS + 60)) taskset -c 0 sh -c 'while :; do :; done' &
    HOG_PID=$!
    PIDS+=("$HOG_PID")
}

stop_hog() {
    [[ -n $HOG_PID ]] || return 0
    kill -TERM "$HOG_PID" 2>/dev/null || true
    wait "$HOG_PID" 2>/dev/null || true
    forget_pid "$HOG_PID"
    HOG_PID=
}

run_fairness() { # scenario server
    local scn=$1 s=$2 line secs a b
    [[ $scn == fairness_hog ]] && start_hog
    # shellcheck disable=SC2086 # word splitting wanted
    start_server "$s" echo ${SARGS[$scn]:-} ${SARGS_ONLY["$scn|$s"]:-} || {
        stop_hog
        add "$scn" "$s" fail 1
        return
    }
    # shellcheck disable=SC2086
    line=$(loadgen ${LARGS[$scn]} --secs "$SECS")
    stop_server
    stop_hog
    secs=$(field secs "$line")
    if [[ -z $line || -z $secs ]] || awk -v t="$secs" 'BEGIN {exit !(t <= 0)}'; then
        log "$scn $s: no result (load generator: '${line}')"
        add "$scn" "$s" fail 1
        return
    fi
    a=$(field a "$line")
    b=$(field b "$line")
    log "$scn $s: $line"
    add "$scn" "$s" a "$(awk -v x="$a" -v t="$secs" 'BEGIN {print x / t / 1048576}')"
    add "$scn" "$s" b "$(awk -v x="$b" -v t="$secs" 'BEGIN {print x / t / 1048576}')"
    # slower / faster, per run (the median of the per-run ratios is reported)
    add "$scn" "$s" ratio "$(awk -v a="$a" -v b="$b" 'BEGIN {lo = a < b ? a : b; hi = a < b ? b : a; print (hi > 0 ? lo / hi : 0)}')"
    local k
    for k in jain p50_us p99_us max_us errors; do add "$scn" "$s" "$k" "$(field "$k" "$line")"; done
}

table_fairness() { # scenario
    local scn=$1 s
    echo
    echo "### ${TITLE[$scn]}"
    echo
    echo "| server | greedy a (MiB/s) | greedy b (MiB/s) | slower/faster | Jain's index | ping p50 (µs) | ping p99 (µs) | ping max (µs) | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for s in "${SERVERS[@]}"; do
        [[ -n ${SKIPPED["$scn|$s"]:-} ]] && continue
        echo "| $s | $(fmt %.0f "$(med "$scn" "$s" a)") | $(fmt %.0f "$(med "$scn" "$s" b)") | $(fmt %.3f "$(med "$scn" "$s" ratio)") | $(fmt %.4f "$(med "$scn" "$s" jain)") | $(fmt %.0f "$(med "$scn" "$s" p50_us)") | $(fmt %.0f "$(med "$scn" "$s" p99_us)") | $(fmt %.0f "$(med "$scn" "$s" max_us)") | $(fmt %.0f "$(med "$scn" "$s" errors)") |"
    done
    skip_notes "$scn"
}

run_idle() { # server
    local s=$1 rss0 rss1='' lg line='' opened i fds=0 base
    start_server "$s" echo || {
        add idle "$s" fail 1
        return
    }
    rss0=$(vmrss_kib "$SERVER_PID")
    base=$(fd_count "$SERVER_PID")
    # Held long enough for the server to accept them all; stopped early below.
    timeout -k 5 $((SECS + 60)) taskset -c 1 "$LOADGEN" idle --addr "127.0.0.1:$PORT" --conns "$IDLE_CONNS" \
        --hold-secs $((SECS + 30)) >"$TMP/idle.out" 2>"$TMP/idle.err" &
    lg=$!
    PIDS+=("$lg")
    for ((i = 0; i < 600; i++)); do
        line=$(grep '^RESULT' "$TMP/idle.out" || true)
        [[ -n $line ]] && break
        kill -0 "$lg" 2>/dev/null || break
        sleep 0.1
    done
    opened=$(field opened "$line")
    if [[ -n $opened ]]; then
        # Connected is not accepted: wait until the server holds them all.
        for ((i = 0; i < 200; i++)); do
            fds=$(($(fd_count "$SERVER_PID") - base))
            ((fds >= opened)) && break
            sleep 0.05
        done
        sleep 0.5
        rss1=$(vmrss_kib "$SERVER_PID")
    fi
    kill -TERM "$lg" 2>/dev/null || true
    wait "$lg" 2>/dev/null || true
    forget_pid "$lg"
    stop_server
    if [[ -z $opened || $opened == 0 || -z ${rss1:-} ]]; then
        log "idle $s: no result (load generator: '${line}')"
        add idle "$s" fail 1
        return
    fi
    log "idle $s: $line rss_before=${rss0}KiB rss_held=${rss1}KiB accepted=$fds"
    add idle "$s" opened "$opened"
    add idle "$s" rss0 "$rss0"
    add idle "$s" rss1 "$rss1"
    add idle "$s" per_conn "$(awk -v a="$rss0" -v b="$rss1" -v n="$opened" 'BEGIN {print (b - a) * 1024 / n}')"
    add idle "$s" errors "$(field errors "$line")"
}

table_idle() {
    local s tok mio
    tok=$(med idle tokio per_conn)
    mio=$(med idle mio per_conn)
    echo
    echo "### ${TITLE[idle]}"
    echo
    echo "| server | opened | RSS before (KiB) | RSS held (KiB) | RSS per connection (bytes) | vs tokio | vs mio | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for s in "${SERVERS[@]}"; do
        [[ -n ${SKIPPED["idle|$s"]:-} ]] && continue
        local per
        per=$(med idle "$s" per_conn)
        echo "| $s | $(fmt %.0f "$(med idle "$s" opened)") | $(fmt %.0f "$(med idle "$s" rss0)") | $(fmt %.0f "$(med idle "$s" rss1)") | $(fmt %.0f "$per") | $(ratio "$per" "$tok") | $(ratio "$per" "$mio") | $(fmt %.0f "$(med idle "$s" errors)") |"
    done
    skip_notes idle
}

# Calls of the named syscalls (comma-separated), or of all ("total"), from a
# `strace -c` summary or a `perf stat -x,` output.
syscall_calls() { # file names|total
    if [[ $SYSCALL_TOOL == perf ]]; then
        awk -F, -v names="$2" 'BEGIN {n = split(names, a, ","); for (i = 1; i <= n; i++) want["syscalls:sys_enter_" a[i]] = 1}
            $1 ~ /^[0-9]+$/ && ((names == "total" && $3 == "raw_syscalls:sys_enter") || ($3 in want)) {s += $1}
            END {print s + 0}' "$1"
    else
        awk -v names="$2" 'BEGIN {n = split(names, a, ","); for (i = 1; i <= n; i++) want[a[i]] = 1}
            $4 ~ /^[0-9]+$/ && ((names == "total" && $NF == "total") || ($NF in want)) {s += $4}
            END {print s + 0}' "$1"
    fi
}

# shellcheck disable=SC2054 # commas separate the syscalls of one group
SC_GROUPS=(total epoll_ctl epoll_wait,epoll_pwait,epoll_pwait2 read,recvfrom,readv,recvmsg write,sendto,writev,sendmsg)

# perf events for SC_GROUPS (the syscall tracepoints this kernel has).
perf_events() {
    local ev=raw_syscalls:sys_enter g n dir
    for dir in /sys/kernel/tracing /sys/kernel/debug/tracing; do [[ -d $dir/events/syscalls ]] && break; done
    for g in "${SC_GROUPS[@]:1}"; do
        for n in ${g//,/ }; do
            [[ -d $dir/events/syscalls/sys_enter_$n ]] && ev+=",syscalls:sys_enter_$n"
        done
    done
    echo "$ev"
}

run_syscalls() { # scenario server
    local scn=$1 s=$2 kind=${KIND[$1]} line req g key out perf_pid=''
    out=$TMP/syscalls.$scn.$s
    [[ $SYSCALL_TOOL == perf ]] || STRACE_FILE=$out
    # shellcheck disable=SC2086
    if ! start_server "$s" "$kind" ${SARGS[$scn]:-}; then
        STRACE_FILE=
        add "sys-$scn" "$s" fail 1
        return
    fi
    STRACE_FILE=
    if [[ $SYSCALL_TOOL == perf ]]; then
        perf stat -x, -o "$out" -e "$(perf_events)" -p "$SERVER_PID" 2>"$TMP/perf.err" &
        perf_pid=$!
        PIDS+=("$perf_pid")
        sleep 0.2
    fi
    # shellcheck disable=SC2086
    line=$(loadgen ${LARGS[$scn]} --secs "$STRACE_SECS")
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        forget_pid "$perf_pid"
    fi
    stop_server # strace writes its summary when the traced server exits
    req=$(field requests "$line")
    if [[ -z $line || -z $req || $req == 0 || ! -s $out ]]; then
        log "syscalls $scn $s: no result (load generator: '${line}')"
        add "sys-$scn" "$s" fail 1
        return
    fi
    log "syscalls $scn $s: $line"
    add "sys-$scn" "$s" requests "$req"
    for g in "${SC_GROUPS[@]}"; do
        key=${g%%,*}
        add "sys-$scn" "$s" "$key" "$(awk -v c="$(syscall_calls "$out" "$g")" -v r="$req" 'BEGIN {print c / r}')"
    done
}

table_syscalls() { # scenario
    local scn=$1 s g
    echo
    local how="strace -f -c"
    [[ $SYSCALL_TOOL == perf ]] && how="perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_*"
    echo "### syscalls per request (\`$how\`): ${TITLE[$scn]} (${STRACE_SECS} s runs)"
    echo
    echo "| server | requests | total/req | epoll_ctl/req | epoll_wait/req | read+recvfrom/req | write+sendto+writev/req |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for s in "${SERVERS[@]}"; do
        [[ -n ${SKIPPED["$scn|$s"]:-} ]] && continue
        local row
        row="| $s | $(fmt %.0f "$(med "sys-$scn" "$s" requests)")"
        for g in "${SC_GROUPS[@]}"; do row+=" | $(fmt %.2f "$(med "sys-$scn" "$s" "${g%%,*}")")"; done
        echo "$row |"
    done
    skip_notes "$scn"
}

# ---------------------------------------------------------------- main

note_skips() { # scenario
    local s why
    for s in "${SERVERS[@]}"; do
        why=$(server_missing "$s" "${KIND[$1]}")
        if [[ -n $why ]]; then
            SKIPPED["$1|$s"]=$why
            log "$1: skipping $s: $why"
        fi
    done
}

echo "## I/O benchmarks"
echo
echo "\`SECS=$SECS REPEAT=$REPEAT bash benches/io.sh\` on $(nproc) cores, $(uname -sr), $(date -u +%Y-%m-%dT%H:%MZ)."
echo "Servers on core 0, load generator on core 1; figures are medians of $REPEAT run(s), the servers' order rotating from one repeat to the next."

# The servers in the order of repeat $1: rotated by one each repeat, so no
# server always runs first (after a quiet spell) or last on a busy machine.
rotated() {
    local r=$1 n=${#SERVERS[@]} i
    for ((i = 0; i < n; i++)); do
        echo "${SERVERS[$(((i + r - 1) % n))]}"
    done
}

for scn in $SCENARIOS; do
    case $scn in
        echo1k | echo10k | echo100k | http | pingpong)
            note_skips "$scn"
            for ((r = 1; r <= REPEAT; r++)); do
                for s in $(rotated "$r"); do
                    [[ -n ${SKIPPED["$scn|$s"]:-} ]] || run_throughput "$scn" "$s"
                done
            done
            table_throughput "$scn"
            ;;
        fairness | fairness_hog)
            note_skips "$scn"
            for ((r = 1; r <= REPEAT; r++)); do
                for s in $(rotated "$r"); do
                    [[ -n ${SKIPPED["$scn|$s"]:-} ]] || run_fairness "$scn" "$s"
                done
            done
            table_fairness "$scn"
            ;;
        idle)
            note_skips idle
            for ((r = 1; r <= REPEAT; r++)); do
                for s in "${SERVERS[@]}"; do
                    [[ -n ${SKIPPED["idle|$s"]:-} ]] || run_idle "$s"
                done
            done
            table_idle
            ;;
        syscalls)
            for sc in echo10k http pingpong; do
                note_skips "$sc"
                for ((r = 1; r <= REPEAT; r++)); do
                    for s in "${SERVERS[@]}"; do
                        [[ -n ${SKIPPED["$sc|$s"]:-} ]] || run_syscalls "$sc" "$s"
                    done
                done
                table_syscalls "$sc"
            done
            ;;
        *) log "unknown scenario '$scn' (known: echo1k echo10k echo100k http pingpong fairness fairness_hog idle syscalls)" ;;
    esac
done
