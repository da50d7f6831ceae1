#!/usr/bin/env bash
# Every public item of the crate has a runnable example in its doc comment.
#
# "Public item": a `pub` fn, struct, enum, union, trait, type alias, const or
# static under src/ (methods of inherent impls included), and every method
# declared in a `pub trait`. `pub(crate)`/`pub(super)` items, `#[cfg(test)]`
# modules, trait impls (their docs are the trait's), struct fields, enum
# variants and nested items in function bodies are not counted. A `pub` item
# is public API here because src/lib.rs turns on `unreachable_pub` (CI denies
# warnings): a `pub` that is not reachable from the crate root fails clippy.
#
# "Example": a fenced code block in the item's `///` comment that rustdoc runs
# or compiles as a doc test: no info string, or only `rust`, `no_run`,
# `should_panic` and `editionNNNN`. `ignore`, `text`, `sh`, `compile_fail`
# and the like do not count.
#
# Exits 1 and lists `file:line: kind name` for each item without one.
# `--count` prints only the number of such items (exit status as above).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 - "$@" <<'PY'
import os
import re
import sys

ITEM = re.compile(
    r'(?:^|\s)pub\s+(?:(?:const|async|unsafe|extern\s+"[^"]*")\s+)*'
    r'(fn|struct|enum|union|trait|type|const|static)\s+(?:mut\s+)?([A-Za-z_][A-Za-z0-9_]*)'
)
TRAIT_FN = re.compile(
    r'(?:^|\s)(?:(?:const|async|unsafe|extern\s+"[^"]*")\s+)*fn\s+([A-Za-z_][A-Za-z0-9_]*)'
)
RUNNABLE = {"", "rust", "no_run", "should_panic"}


def blank_comments_and_strings(src):
    """The source with comments and literal contents replaced by spaces
    (newlines kept), so braces and keywords in them are not seen."""
    out = list(src)
    i, n = 0, len(src)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif (c == "r" or src.startswith("br", i)) and re.match(r'b?r#*"', src[i:i + 260]) and not (
            i > 0 and (src[i - 1].isalnum() or src[i - 1] == "_")
        ):
            m = re.match(r'b?r(#*)"', src[i:])
            close = '"' + m.group(1)
            j = src.find(close, i + m.end())
            j = n if j < 0 else j + len(close)
            blank(i + m.end(), j - len(close))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            blank(i + 1, j)
            i = j + 1
        elif c == "'":
            m = re.match(r"'(?:\\(?:u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'", src[i:i + 12])
            if m:
                blank(i + 1, i + m.end() - 1)
                i += m.end()
            else:
                i += 1  # a lifetime
        else:
            i += 1
    return "".join(out)


def has_example(doc_lines):
    in_fence = None
    for raw in doc_lines:
        text = raw.strip()[3:]
        text = text[1:] if text.startswith(" ") else text
        m = re.match(r"\s*(`{3,}|~{3,})(.*)$", text)
        if not m:
            continue
        if in_fence is None:
            in_fence = m.group(1)
            info = {t.strip() for t in m.group(2).split(",")} - {""}
            info = {t for t in info if not t.startswith("edition")}
            if info <= RUNNABLE:
                return True
        elif m.group(1).startswith(in_fence) and not m.group(2).strip():
            in_fence = None
    return False


def items(path):
    src = open(path, encoding="utf-8").read()
    lines = src.split("\n")
    code = blank_comments_and_strings(src)
    line_of = [0] * (len(code) + 1)
    ln = 0
    for k, ch in enumerate(code):
        line_of[k] = ln
        if ch == "\n":
            ln += 1
    line_of[len(code)] = ln

    # Blocks: "mod" (a module or a macro call around items), "impl" (inherent),
    # "pubtrait", "trait_impl", "other" (bodies, test modules, private traits).
    stack = []
    start = 0  # where the current statement's text begins

    def visible():
        return all(k in ("mod", "impl", "pubtrait") for k in stack)

    def consider(end):
        header = code[start:end]
        stripped = re.sub(r"#!?\[[^\]]*\]", " ", header)
        found = None
        if visible():
            if stack and stack[-1] == "pubtrait":
                m = TRAIT_FN.search(stripped)
                if m and not re.search(r"\bpub\b", stripped[: m.start() + 1]):
                    found = ("fn", m.group(1), header.find("fn " + m.group(1)))
            else:
                m = ITEM.search(stripped)
                if m:
                    name = m.group(2)
                    kind = m.group(1)
                    pos = re.search(r"\b%s\s+(?:mut\s+)?%s\b" % (kind, re.escape(name)), header)
                    found = (kind, name, pos.start() if pos else 0)
        if found:
            kind, name, off = found
            item_line = line_of[start + max(off, 0)]
            doc = [l for l in lines[line_of[start]:item_line + 1] if re.match(r"\s*///(?!/)", l)]
            yield (item_line + 1, kind, name, has_example(doc))

    for i, ch in enumerate(code):
        if ch == "{":
            header = code[start:i]
            flat = re.sub(r"#!?\[[^\]]*\]", " ", header)
            for r in consider(i):
                yield r
            if not visible() or re.search(r"#\[cfg\([^\]]*\btest\b", header):
                kind = "other"
            elif re.search(r"\bmod\s+\w+\s*$", flat) or re.search(r"\w!\s*$", flat):
                kind = "mod"  # a module, or a macro call such as pin_project! around items
            elif re.match(r"\s*(unsafe\s+)?impl\b", flat):
                kind = "trait_impl" if re.search(r"\bfor\b", re.sub(r"<[^{]*?>", "", flat)) else "impl"
            elif re.search(r"(?:^|\s)pub\s+(unsafe\s+)?trait\s+\w+", flat):
                kind = "pubtrait"
            else:
                kind = "other"
            stack.append(kind)
            start = i + 1
        elif ch == "}":
            if stack:
                stack.pop()
            start = i + 1
        elif ch == ";":
            for r in consider(i):
                yield r
            start = i + 1


missing = []
total = 0
for root, dirs, files in os.walk("src"):
    dirs.sort()
    for f in sorted(files):
        if not f.endswith(".rs"):
            continue
        path = os.path.join(root, f)
        for line, kind, name, ok in items(path):
            total += 1
            if not ok:
                missing.append("%s:%d: %s %s" % (path, line, kind, name))

if "--count" in sys.argv[1:]:
    print(len(missing))
else:
    for m in missing:
        print(m)
    print("doc_examples: %d of %d public items have no runnable example" % (len(missing), total), file=sys.stderr)
sys.exit(1 if missing else 0)
PY
