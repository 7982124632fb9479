#!/usr/bin/env bash
# Start the `make run` stack in the background, wait for /health to be green, sample one real pair
# through the HTTP API as the demo annotator, check both generations are done, stop the stack.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${SMOKE_PORT:-8765}"
mkdir -p var
LOG=var/smoke-run.log

setsid bash -c 'echo $$ > var/smoke-run.pid; exec make run PORT='"$PORT" > "$LOG" 2>&1 < /dev/null &
stop_stack() {
  if [ -f var/smoke-run.pid ]; then
    kill -TERM -- "-$(cat var/smoke-run.pid)" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 -- "-$(cat var/smoke-run.pid)" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$(cat var/smoke-run.pid)" 2>/dev/null || true
    rm -f var/smoke-run.pid
  fi
}
trap stop_stack EXIT

echo "waiting for http://127.0.0.1:$PORT/health to be green …"
for i in $(seq 1 600); do
  if curl -fsS "http://127.0.0.1:$PORT/health?format=json" -o var/smoke-health.json 2>/dev/null; then
    echo "green after ${i} s"; cat var/smoke-health.json; echo; break
  fi
  if [ "$i" = 600 ]; then echo "health never went green"; tail -100 "$LOG"; exit 1; fi
  sleep 1
done

if ! .venv/bin/python .ci/smoke_pair.py "http://127.0.0.1:$PORT"; then
  tail -100 "$LOG"
  exit 1
fi
echo "smoke test passed"
