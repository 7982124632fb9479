#!/usr/bin/env bash
# Schemathesis against a running Tandem's /api/schema/, as an annotator, an admin and a researcher
# (property-based examples, coverage, fuzzing and the stateful links the schema allows).
#
#   scripts/api_schema_check.sh http://127.0.0.1:8000 ANNOTATOR_TOKEN ADMIN_TOKEN RESEARCHER_TOKEN
#
# Run the server with generous throttles for it (THROTTLE_USER=100000/min …, MAX_IN_FLIGHT_PER_USER
# and AXES_FAILURE_LIMIT high) and under gunicorn with config/gunicorn.py: the fuzzer sends thousands
# of requests. .ci/api_schema.sh does all of that on a throwaway database. schemathesis.toml says
# which operations also refuse schema-valid input for a database rule (docs/api.md). Exits non-zero on
# any failure; a response >= 500 shows as "Server error" in the report under $OUT (default var/schemathesis).
set -euo pipefail
url=${1:?base URL}; shift
out=${OUT:-var/schemathesis}
mkdir -p "$out"
curl -sf -m 300 "$url/api/schema/" -o "$out/schema.yaml"
status=0
for role in annotator admin researcher; do
  token=${1:?a token for each role}; shift
  .venv/bin/st run "$out/schema.yaml" --url "$url" -H "Authorization: Token $token" -c all \
      -n "${EXAMPLES:-10}" --workers 2 --request-timeout 60 --no-color > "$out/$role.txt" 2>&1 || status=1
  echo "$role: $(grep -c 'Server error' "$out/$role.txt" || true) server errors; $(tail -1 "$out/$role.txt")"
done
exit $status
