#!/usr/bin/env bash
# README's first command: the whole system, locally, with demo data.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/bootstrap.sh
PY="${PYTHON:-python3}"
"$PY" -m devtools.cli up
"$PY" -m devtools.cli seed
