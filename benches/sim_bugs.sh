#!/usr/bin/env bash
# How many seeds each schedule of trioxide::sim needs to find a planted bug
# (issue 14, "Bug-finding power").
#
#   SEEDS=1000 bash benches/sim_bugs.sh
#
# Copies the working tree (tracked and untracked files, not ignored ones)
# into a temporary directory, builds examples/sim_hunt.rs there in release
# and runs every workload for seeds 0..SEEDS under batch, random and pct3:
# first unpatched (the control: nothing may fail, else the workload itself
# is wrong), then once per patch of benches/sim_bugs/ (applied with
# `git apply` to the copy, built, run, reverted). The working tree is never
# touched; the copy is removed on exit. Prints a Markdown table.
#
# Environment: SEEDS (default 1000); CARGO_TARGET_DIR (default: a target
# directory inside the copy, so every run compiles from scratch; set it to
# reuse compiled dependencies between runs); BUGS (default: every patch,
# e.g. BUGS="wakeup deadline").
set -euo pipefail

seeds=${SEEDS:-1000}
schedules=(batch random pct3)
root=$(git rev-parse --show-toplevel)
cd "$root"
patches_dir=benches/sim_bugs
bugs=${BUGS:-$(cd "$patches_dir" && ls -- *.patch | sed 's/\.patch$//' | tr '\n' ' ')}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
copy=$scratch/trioxide
mkdir -p "$copy"
git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -xmf - -C "$copy"
# (-m: the copy's files are new, so cargo rebuilds them even when
# CARGO_TARGET_DIR holds a build of an earlier copy whose sources had the
# same relative paths and older times.)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$copy/target}
hunt=$CARGO_TARGET_DIR/release/examples/sim_hunt

# Every patch must still apply to this tree: fail loudly, not silently skip.
for bug in $bugs; do
    if ! git -C "$copy" apply --check "$root/$patches_dir/$bug.patch" 2>"$scratch/apply.err"; then
        echo "sim_bugs: $patches_dir/$bug.patch no longer applies:" >&2
        cat "$scratch/apply.err" >&2
        exit 1
    fi
done

build() {
    (cd "$copy" && cargo build --quiet --release --example sim_hunt) >&2
}

# run WORKLOAD SCHEDULE -> "failing first reproduction-line"
hunt_row() {
    local out
    out=$("$hunt" --bug "$1" --schedule "$2" --seeds "$seeds" 2>/dev/null || true)
    local summary failing first repro
    summary=$(grep '^sim_hunt: ' <<<"$out" || true)
    if [ -z "$summary" ]; then
        echo "sim_bugs: sim_hunt --bug $1 --schedule $2 printed no summary:" >&2
        echo "$out" >&2
        exit 1
    fi
    failing=$(sed -n 's/.* failing=\([0-9]*\) .*/\1/p' <<<"$summary")
    first=$(sed -n 's/.* first=\([^ ]*\) .*/\1/p' <<<"$summary")
    repro=$(sed -n 's/^reproduce: //p' <<<"$out")
    echo "$failing|$first|$repro"
}

echo "building the unpatched copy..." >&2
build
echo "| bug (patch) | workload | strategy | first failing seed | seeds failing of $seeds | reproduction |"
echo "|---|---|---|---|---|---|"
control_failed=0
for w in wakeup recv-cancel cleanup ack deadline; do
    for s in "${schedules[@]}"; do
        IFS='|' read -r failing first repro <<<"$(hunt_row "$w" "$s")"
        [ -n "$failing" ] || exit 1
        if [ "$failing" != 0 ]; then
            control_failed=1
            echo "| none (control) | $w | $s | **$first** | **$failing** | \`$repro\` |"
        else
            echo "| none (control) | $w | $s | not in $seeds | 0 | |"
        fi
    done
done

for bug in $bugs; do
    echo "planting $bug..." >&2
    git -C "$copy" apply "$root/$patches_dir/$bug.patch"
    build
    for s in "${schedules[@]}"; do
        IFS='|' read -r failing first repro <<<"$(hunt_row "$bug" "$s")"
        [ -n "$failing" ] || exit 1
        if [ "$first" = none ]; then
            echo "| $bug | $bug | $s | not in $seeds | 0 | |"
        else
            echo "| $bug | $bug | $s | $first | $failing | \`git apply $patches_dir/$bug.patch; $repro\` |"
        fi
    done
    git -C "$copy" apply -R "$root/$patches_dir/$bug.patch"
done

if [ "$control_failed" = 1 ]; then
    echo "sim_bugs: the unpatched tree failed a workload: the workload is wrong or flaky" >&2
    exit 1
fi
