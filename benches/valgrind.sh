#!/usr/bin/env bash
# Runs the core test binaries under valgrind's memcheck: any invalid read or
# write (the kind of bug unsafe code in src/kernel/task.rs, src/kernel/core.rs and
# src/kernel/cancel.rs could have) fails with exit code 1. Leaks are not checked:
# the test harness itself keeps allocations alive at exit. `process` is left
# out: valgrind does not implement pidfd_open, and spawning under it reports
# a missing program differently; its unsafe code (pipes, pidfd, waitid) is
# shared with binaries that do run here. Built with --all-features so the
# poll layer's integrations (futures-io, hyper) run here too. Not `tls`:
# ring's AES-GCM assembly writes ciphertext that memcheck cannot see as
# initialised, so every TLS record sent is a false report.
set -euo pipefail
cd "$(dirname "$0")/.."
bins=$(cargo test -p trioxide -p trioxide-ecosystem --all-features --no-run --message-format=json 2>/dev/null \
    | python3 -c '
import json, sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] != ["bench"]:
        name = m["target"]["name"]
        if name in ("trioxide", "scheduler_nursery_rules", "cancel_rules", "wakers", "random_trees",
                    "io_rules", "sockets", "happy_eyeballs", "accept_emfile", "http_bad_input", "fairness",
                    "sync_rules", "sync_cancel", "channel_rules", "channel_stress", "threads", "signals",
                    "http_shutdown", "stream_conformance", "testing_kit", "sync_stress",
                    "poll_layer", "futures_io", "hyper", "sharded", "sharded_remote", "sharded_random_trees",
                    "shard_channel", "sharded_serve", "sharded_tree", "sim", "sim_net", "sim_self"):
            print(m["executable"])
')
for b in $bins; do
    echo "valgrind $b"
    # Virtual-time tests only; TRIOXIDE_VALGRIND lets heavy tests shrink.
    # --fair-sched=try (yes where the platform has it): valgrind runs one thread at a time, and its default
    # lock lets a busy thread (a runtime that never parks, a spinning
    # runtime) take it back again and again, so the tests' waker threads
    # could starve for minutes (tests/wakers.rs took 0.5-280 s run to run;
    # natively 0.02 s). Fair scheduling hands the lock round in turn.
    # TRIOXIDE_SIM_SEEDS: sim_self's seeds per strategy and workload (300
    # natively; 20 here, about 40 s under memcheck).
    TRIOXIDE_VALGRIND=1 TRIOXIDE_SIM_SEEDS=20 valgrind -q --fair-sched=try --error-exitcode=1 --leak-check=no "$b" --test-threads=1 -q
done
