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
# any failure; a response >= 500 shows as "Server error" in the report under $OUT (default var/schemathesis):
# <role>-fixed.txt for the seed of schemathesis.toml, <role>-fresh.txt for this run's fresh seed.
set -euo pipefail
url=${1:?base URL}; shift
out=${OUT:-var/schemathesis}
mkdir -p "$out"
curl -sf -m 300 "$url/api/schema/" -o "$out/schema.yaml"
status=0
tokens=("$@")
roles=(annotator admin researcher)
# Two passes: the fixed seed of schemathesis.toml (the same examples on every run), then a fresh seed,
# printed, so that each run also searches where no run searched before and a finding replays:
#   SEED=<the seed> EXAMPLES_FRESH=<n> scripts/api_schema_check.sh …   (or st run … --seed <the seed>)
fresh=${SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "fresh seed for this run: $fresh"
for pass in fixed fresh; do
  for i in 0 1 2; do
    role=${roles[$i]}; token=${tokens[$i]:?a token for each role}
    if [ "$pass" = fixed ]; then
      extra=(-n "${EXAMPLES:-10}")
    else
      extra=(-n "${EXAMPLES_FRESH:-5}" --seed "$fresh")
    fi
    .venv/bin/st run "$out/schema.yaml" --url "$url" -H "Authorization: Token $token" -c all "${extra[@]}" \
        --workers 2 --request-timeout 60 --no-color > "$out/$role-$pass.txt" 2>&1 || status=1
    echo "$role ($pass seed): $(grep -c 'Server error' "$out/$role-$pass.txt" || true) server errors; $(tail -1 "$out/$role-$pass.txt")"
  done
done
[ "$status" = 0 ] || echo "a finding: its report is under $out (fresh seed $fresh)"
exit $status
