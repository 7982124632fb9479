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
# CPython 3.11's ast.parse can raise "SystemError: AST constructor recursion depth mismatch" inside the
# fuzzer itself (hypothesis describing one of schemathesis' own lambdas after changing the recursion
# limit; python/cpython gh-106905). A run whose only errors are that fault, with no failure, found
# nothing about the API: it is reported and its report kept, not counted as a finding.
only_tool_fault() {
  local report=$1 listed runtime faults
  grep -q '^Failures:' "$report" && return 1
  listed=$(awk '/^Errors:/ {on = 1; next} on && /^[[:space:]]*$/ {exit} on' "$report")
  [ -n "$listed" ] || return 1
  if echo "$listed" | grep -vq 'Runtime Error: '; then return 1; fi
  runtime=$(echo "$listed" | grep -oE '[0-9]+$' | awk '{s += $1} END {print s + 0}')
  faults=$(grep -c 'SystemError: AST constructor recursion depth mismatch' "$report" || true)
  [ "$runtime" -gt 0 ] && [ "$faults" -ge "$runtime" ]
}
echo "fresh seed for this run: $fresh"
for pass in fixed fresh; do
  for i in 0 1 2; do
    role=${roles[$i]}; token=${tokens[$i]:?a token for each role}
    if [ "$pass" = fixed ]; then
      extra=(-n "${EXAMPLES:-10}")
    else
      extra=(-n "${EXAMPLES_FRESH:-5}" --seed "$fresh")
    fi
    report="$out/$role-$pass.txt"
    if ! .venv/bin/st run "$out/schema.yaml" --url "$url" -H "Authorization: Token $token" -c all "${extra[@]}" \
        --workers 2 --request-timeout 60 --no-color > "$report" 2>&1; then
      if only_tool_fault "$report"; then
        echo "$role ($pass seed): the fuzzer itself failed (CPython's AST fault, gh-106905), no failure found; see $report"
      else
        status=1
      fi
    fi
    echo "$role ($pass seed): $(grep -c 'Server error' "$report" || true) server errors; $(tail -1 "$report")"
  done
done
[ "$status" = 0 ] || echo "a finding: its report is under $out (fresh seed $fresh)"
exit $status
