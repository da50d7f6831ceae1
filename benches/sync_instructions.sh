#!/usr/bin/env bash
# User-space instructions per operation for the cases of benches/sync.rs,
# counted exactly by callgrind: the figure that does not move with the load
# of this shared VM. Each case runs twice, with N and 2N operations, and the
# difference is divided by N, so the runtime's start-up and shutdown cancel
# out. (A ping-pong operation is a round trip: two messages.) to_thread is
# left out: its cost is two thread wake-ups, which callgrind does not time.
#
# Run: bash benches/sync_instructions.sh        (~2 minutes; prints a markdown table)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
cargo build --quiet --profile bench -p trioxide-bench --example bench_sync_driver
bin=${CARGO_TARGET_DIR:-target}/release/examples/bench_sync_driver
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Total instructions of one run.
count() {
    valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$bin" "$1" "$2" "$3" >/dev/null 2>"$tmp/err"
    grep -o 'refs: *[0-9,]*' "$tmp/err" | tr -dc '0-9'
}

# Instructions per message (ping-pong) or per operation.
per_op() {
    local case=$1 runtime=$2 messages=1
    [[ $case == pingpong_* ]] && messages=2
    local a b
    a=$(count "$case" "$runtime" "$N")
    b=$(count "$case" "$runtime" $((2 * N)))
    echo $(((b - a) / (N * messages)))
}

echo "| case | trioxide | tokio | trioxide/tokio |"
echo "|---|---:|---:|---:|"
for case in pingpong_cap1 pingpong_cap0 throughput_1p throughput_4p lock_uncontended lock_try \
    semaphore_uncontended semaphore_try lock_contended semaphore_contended; do
    t=$(per_op "$case" trioxide)
    if [[ $case == pingpong_cap0 ]]; then
        # tokio has no rendezvous channel.
        echo "| $case | $t | – | – |"
        continue
    fi
    k=$(per_op "$case" tokio)
    echo "| $case | $t | $k | $(awk -v t="$t" -v k="$k" 'BEGIN { printf "%.2f", t / k }') |"
done
