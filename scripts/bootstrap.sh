#!/usr/bin/env bash
# Install what a fresh machine lacks for Waymark's local stack. Idempotent and quick when
# everything is already there. Sourced by scripts/up.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need_apt=()
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need_apt+=(postgresql)
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
# the JDK: the FHIR tests run the reference validator's harness from its Java source
# (tests/integration/fhir/validator/Validate.java)
command -v javac >/dev/null 2>&1 || need_apt+=(openjdk-17-jdk-headless)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${need_apt[*]} (Debian packages)"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}"
  else
    echo "Waymark needs these Debian packages: sudo apt-get install -y ${need_apt[*]}" >&2
    exit 1
  fi
fi

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "Waymark needs Python 3.11 (found $("$PY" --version 2>&1)); set PYTHON=..." >&2
  exit 1
fi
# reinstall only when pyproject.toml changed since the last install
mkdir -p .waymark
stamp=.waymark/pyproject.sha256
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! "$PY" -c 'import devtools.cli' 2>/dev/null; then
  "$PY" -m pip install -q --disable-pip-version-check -e '.[dev]'
  echo "$want" > "$stamp"
fi

# the local OpenID provider's npm packages (devtools/idp: oidc-provider on Node.js 20+), from
# its lock file once
if [ ! -d devtools/idp/node_modules/oidc-provider ]; then
  if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
    else
      echo "Waymark's local identity provider needs Node.js 20 and npm" >&2
      exit 1
    fi
  fi
  (cd devtools/idp && npm ci --no-audit --no-fund --loglevel=error)
fi
