#!/usr/bin/env bash
# The main job on the bundled default: build, start the server on a free loopback port, show it
# answering a health check and its server info (through the Python client example), stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
build/bin/tapeloop serve --listen 127.0.0.1:0 --db "$work/tapeloop.db" >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/serve.log" && break; sleep 0.1; done
cat "$work/serve.log"
port=$(sed -n 's/.*listening on [^ ]*:\([0-9]*\) .*/\1/p' "$work/serve.log")
/usr/bin/python3 examples/python/tapeloop_client.py --target "127.0.0.1:$port" info
kill -TERM $pid
wait $pid
cat "$work/serve.log" | tail -2
