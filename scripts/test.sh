#!/usr/bin/env bash
# README's second command: every test, against the real PostgreSQL, Kafka and Temporal.
# The infrastructure is started once (or reused); the test session brings up its own
# Waymark processes as the `test` instance, so a running dev stack is left alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/bootstrap.sh
source scripts/browser_deps.sh
PY="${PYTHON:-python3}"
"$PY" -m devtools.cli up --infra-only
set +e
"$PY" -m pytest -q -p no:cacheprovider --durations=60 "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$rc"
