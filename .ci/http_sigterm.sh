#!/usr/bin/env bash
# Smoke test of the http_server example's graceful shutdown, as a process:
# start the release build on a free port, wait for its address, make one
# request, send SIGTERM, and require exit status 0 within a few seconds and
# the one-line shutdown summary on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

# Seconds to wait for the address, and for the exit after SIGTERM. The
# server closes its idle connection at once, so it exits in milliseconds;
# 10 s leaves room for a loaded CI machine.
LIMIT=10

cargo build --release --example http_server
BIN=target/release/examples/http_server

WORK=$(mktemp -d)
SERVER=
cleanup() {
    if [[ -n $SERVER ]] && kill -0 "$SERVER" 2>/dev/null; then kill -KILL "$SERVER" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
    echo "http_sigterm: FAIL: $*" >&2
    echo "--- server stdout" >&2
    cat "$WORK/out" >&2 || true
    echo "--- server stderr" >&2
    cat "$WORK/err" >&2 || true
    exit 1
}

"$BIN" --port 0 >"$WORK/out" 2>"$WORK/err" &
SERVER=$!

# Wait for "listening on 127.0.0.1:PORT".
PORT=
for _ in $(seq $((LIMIT * 10))); do
    PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$WORK/out")
    [[ -n $PORT ]] && break
    kill -0 "$SERVER" 2>/dev/null || fail "the server exited before printing its address"
    sleep 0.1
done
[[ -n $PORT ]] || fail "no address printed within ${LIMIT} s"

# One keep-alive request over bash's /dev/tcp (no curl needed); read the
# head and the 1024-byte default body, then keep the connection open, idle.
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'GET / HTTP/1.1\r\nHost: smoke\r\n\r\n' >&3
IFS= read -r -t "$LIMIT" STATUS <&3 || fail "no response"
[[ $STATUS == $'HTTP/1.1 200 OK\r' ]] || fail "unexpected status line: $STATUS"
while IFS= read -r -t "$LIMIT" LINE <&3 && [[ $LINE != $'\r' ]]; do :; done
BODY=$(head -c 1024 <&3)
[[ ${#BODY} -eq 1024 ]] || fail "short body: ${#BODY} bytes"

kill -TERM "$SERVER"

# The idle connection is closed by the server: EOF on our side.
if IFS= read -r -t "$LIMIT" EXTRA <&3; then fail "bytes after the response: $EXTRA"; fi
exec 3<&-

# Exit status 0 within the limit.
for _ in $(seq $((LIMIT * 10))); do
    kill -0 "$SERVER" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$SERVER" 2>/dev/null; then fail "still running ${LIMIT} s after SIGTERM"; fi
set +e
wait "$SERVER"
STATUS=$?
set -e
SERVER=
[[ $STATUS -eq 0 ]] || fail "exit status $STATUS after SIGTERM"
grep -q '^http_server: shut down in .* 1 idle connection(s) closed at once, 0 finished their request, 0 cancelled' "$WORK/out" ||
    fail "no shutdown summary"
echo "http_sigterm: ok (exit 0 after SIGTERM; $(grep '^http_server: shut down' "$WORK/out"))"
