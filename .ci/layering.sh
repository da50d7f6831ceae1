#!/usr/bin/env bash
# The layering rule (DESIGN.md, "Layers"): the kernel names nothing above it.
#
# Fails when a file under src/kernel/ uses a path into a module declared in
# src/lib.rs other than `kernel` (crate::sync, crate::nursery, ...), in code
# or in a doc link, or reaches the crate root's re-exports from code
# (`use crate::{open_nursery, ..}` or `crate::open_nursery`): code in the
# kernel spells every crate path `crate::kernel::...`. Doc links to items
# at the crate root (`crate::run`) are allowed: they name the public API,
# not a module.
set -euo pipefail
cd "$(dirname "$0")/.."

upper=$(grep -oE '^\s*(pub(\([a-z]+\))? )?mod [a-z_]+' src/lib.rs | awk '{print $NF}' | grep -vx kernel | paste -sd'|')
[ -n "$upper" ] || { echo "layering: no modules found in src/lib.rs" >&2; exit 1; }

bad=0
# 1. Any mention of an upper module by a crate path (code, comments, docs).
if grep -rnE "crate::($upper)\b" src/kernel; then
    echo "layering: the files above name a module above the kernel" >&2
    bad=1
fi
# 2. Code (not comments) must reach the crate only through crate::kernel.
if grep -rnE '^\s*[^/ ].*crate::' src/kernel | grep -vE '^[^:]+:[0-9]+:\s*//' | grep -E 'crate::' | grep -vE 'crate::kernel\b' | grep -E 'crate::(\{|[A-Za-z_])'; then
    echo "layering: kernel code above uses a crate path outside crate::kernel" >&2
    bad=1
fi
if [ "$bad" -ne 0 ]; then
    exit 1
fi
echo "layering: src/kernel names nothing above it ($(find src/kernel -name '*.rs' | wc -l) files checked; upper modules: ${upper//|/, })"
