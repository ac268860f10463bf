#!/usr/bin/env bash
# An S3-compatible server on loopback for tests and the multi-machine trial: moto's standalone
# server (moto[server], pinned in requirements.txt, installed into .venv by scripts/setup.sh).
#   bash scripts/servers/s3-server.sh PORT
# Prints "ready s3 http://127.0.0.1:PORT" once it answers, then runs until its stdin closes (the
# starting process exits, is killed -9, or closes the pipe): then the server is stopped. So a test
# run never leaves a server behind. Its state lives in memory only.
# Gaps against AWS S3 are listed in README.md ("Running on many machines").
set -euo pipefail
PORT=${1:?usage: s3-server.sh PORT}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MOTO=${KILN_MOTO_SERVER:-$ROOT/.venv/bin/moto_server}
[ -x "$MOTO" ] || { echo "s3-server: $MOTO not found. Fix: run npm run setup (installs moto[server] from requirements.txt)." >&2; exit 4; }
"$MOTO" -H 127.0.0.1 -p "$PORT" >/dev/null 2>&1 </dev/null &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do
  if ! kill -0 "$PID" 2>/dev/null; then echo "s3-server: moto_server exited at start (port $PORT in use?)" >&2; exit 1; fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then echo "ready s3 http://127.0.0.1:$PORT"; break; fi
  sleep 0.1
done
cat >/dev/null || true
