#!/usr/bin/env bash
# User-space instructions per scheduler operation (the cases of
# benches/drivers/scheduler.rs), counted exactly by callgrind. Each case
# runs with N and 2N operations and the difference is divided by N, so the
# runtime's start-up and shutdown cancel out.
#
# Run: bash benches/scheduler_instructions.sh   (~1 minute; prints a markdown table)
#      BIN=path/to/bench_scheduler_driver bash benches/scheduler_instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
if [[ -z ${BIN:-} ]]; then
    cargo build --quiet --profile bench -p trioxide-bench --example bench_scheduler_driver
    BIN=${CARGO_TARGET_DIR:-target}/release/examples/bench_scheduler_driver
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Total instructions of one run.
count() {
    valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$BIN" "$1" "$2" >/dev/null 2>"$tmp/err"
    grep -o 'refs: *[0-9,]*' "$tmp/err" | tr -dc '0-9'
}

echo "| case | instructions/op |"
echo "|---|---:|"
for case in spawn_join spawn_join_4k switch step cancel_scope move_on_after tokio_timeout; do
    a=$(count "$case" "$N")
    b=$(count "$case" $((2 * N)))
    echo "| $case | $(awk -v a="$a" -v b="$b" -v n="$N" 'BEGIN { printf "%.1f", (b - a) / n }') |"
done
