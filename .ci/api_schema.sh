#!/usr/bin/env bash
# Schemathesis against the API as each role (scripts/api_schema_check.sh), on a throwaway SQLite
# database: migrate, one account and token per role (manage.py api_check_tokens), gunicorn as in
# production with throttles and limits out of the fuzzer's way, the check, then stop the server.
# Fails on any finding (docs/api.md). EXAMPLES per operation: 10 keeps the three roles at about 4-5
# minutes on a 2-core machine; raise it locally for a deeper search.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8011}
WORK=$(mktemp -d)
export DJANGO_SETTINGS_MODULE=config.settings.local DEBUG=false TANDEM_VAR_DIR="$WORK/var"
export DATABASE_URL="sqlite:///$WORK/api-check.sqlite3" CELERY_BROKER_URL="filesystem://"
export THROTTLE_USER=1000000/min THROTTLE_ANON=1000000/min THROTTLE_LOGIN=1000000/min
export MAX_IN_FLIGHT_PER_USER=1000000 AXES_FAILURE_LIMIT=1000000
mkdir -p "$TANDEM_VAR_DIR"

.venv/bin/python manage.py migrate --noinput > "$WORK/migrate.log"
# The embedded default's two policy variants, so that pairs can be requested (their tasks wait in
# the broker: no worker and no model server are needed for the API's answers).
.venv/bin/python manage.py bootstrap_demo --no-accounts > /dev/null
tokens=$(.venv/bin/python manage.py api_check_tokens)

# The same request-line limit as the Dockerfile's gunicorn (config/gunicorn.py); sync workers, as
# the throwaway SQLite database takes one writer at a time.
.venv/bin/gunicorn config.wsgi -c config/gunicorn.py --bind "127.0.0.1:$PORT" --workers 2 --worker-class sync \
  --pid "$WORK/gunicorn.pid" > "$WORK/gunicorn.log" 2>&1 &
server=$!
stop_server() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap stop_server EXIT

for i in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$PORT/api/schema/" -o /dev/null 2>/dev/null && break
  if [ "$i" = 60 ] || ! kill -0 "$server" 2>/dev/null; then echo "the server did not start"; cat "$WORK/gunicorn.log"; exit 1; fi
  sleep 1
done

# shellcheck disable=SC2086  # three tokens, one per role
EXAMPLES=${EXAMPLES:-10} scripts/api_schema_check.sh "http://127.0.0.1:$PORT" $tokens
