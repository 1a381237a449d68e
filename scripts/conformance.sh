#!/usr/bin/env bash
# Conformance of the server to its own OpenAPI document: schemathesis (from PyPI, in a venv under
# target/) against the real binary on loopback, seeded with a small county (ohassist-seed), every
# operation with a supervisor's token and again with an admin's, all checks. The sync operations
# are CBOR + gzip: scripts/conformance/hooks.py teaches schemathesis that encoding, so they are
# generated like the JSON ones. Exits non-zero on any failure.
#   ./scripts/conformance.sh
set -euo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
VENV=${CONFORMANCE_VENV:-target/conformance-venv}
SCHEMATHESIS_VERSION=4.32.5

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION" \
  || ! "$VENV/bin/python" -c "import cbor2" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION" "cbor2==6.3.0"
fi

# Built apart, as the test harness builds the server: one build each, no feature flip-flop.
cargo build -q --locked -p ohassist-server --bin ohassist
cargo build -q --locked -p ohassist-tests --bin ohassist-seed

work=$(mktemp -d)
trap 'exec 3>&- 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mkfifo "$work/stdin"
# The seeded server runs until its standard input (fd 3 here) closes.
target/debug/ohassist-seed "$work/data" <"$work/stdin" >"$work/seed.json" &
SEED_PID=$!
exec 3>"$work/stdin"
# Seeding builds nothing more (the binaries are built above) and takes seconds; a minute at most.
for _ in $(seq 1200); do
  grep -q '}' "$work/seed.json" 2>/dev/null && break
  kill -0 "$SEED_PID" 2>/dev/null || { echo "seeding failed" >&2; exit 1; }
  sleep 0.1
done
seed() { "$VENV/bin/python" -c "import json,sys; print(json.load(open('$work/seed.json'))['$1'])"; }
URL=$(seed url)
OHASSIST_ENTERPRISE=$(seed enterprise) OHASSIST_VISIT=$(seed visit) OHASSIST_ATTACHMENT=$(seed attachment)
export OHASSIST_ENTERPRISE OHASSIST_VISIT OHASSIST_ATTACHMENT
echo "seeded server at $URL"

run() { # token-name, extra schemathesis arguments...
  local token; token=$(seed "$1"); shift
  PYTHONPATH=scripts/conformance SCHEMATHESIS_HOOKS=hooks "$VENV/bin/schemathesis" \
    --no-color --config-file scripts/conformance/schemathesis.toml \
    run "$URL/api/v1/openapi.json" --checks all --workers 1 --seed 1 \
    -H "Authorization: Bearer $token" "$@"
}
# One process per token, side by side (one worker each: hypothesis is not thread-safe on this
# Python). The admin is a county's, so revoking and marking lost the devices it lists never
# touches the supervisor's. Logging out ends the token, so it runs last for each.
as_user() { # token-name
  local s=0
  echo "=== every operation but logout, as ${1%_token}"
  run "$1" --exclude-operation-id logout || s=1
  # schemathesis leaves out the operation that serves the document it reads: named here.
  echo "=== logout and the document, as ${1%_token}"
  run "$1" --include-operation-id logout --include-operation-id openapi || s=1
  return $s
}
as_user supervisor_token >"$work/supervisor.log" 2>&1 &
SUP=$!
as_user admin_token >"$work/admin.log" 2>&1 &
ADM=$!
status=0
wait $SUP || status=1
wait $ADM || status=1
cat "$work/supervisor.log" "$work/admin.log"
echo "conformance: $((SECONDS - START)) s"
exit $status
