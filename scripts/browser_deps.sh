#!/usr/bin/env bash
# Install what the dashboard's browser tests (tests/dashboard) need when it is missing:
# Debian's Chromium, which Playwright drives (never `playwright install`: no browser is
# downloaded), and axe-core at the version pinned in tests/dashboard/package-lock.json.
# Idempotent, quiet, and quick when everything is there. Sourced by scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need_browser_apt=()
[ -x /usr/bin/chromium ] || need_browser_apt+=(chromium)
command -v npm >/dev/null 2>&1 || need_browser_apt+=(npm)
if ((${#need_browser_apt[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${need_browser_apt[*]} (Debian packages, for the browser tests)"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_browser_apt[@]}" >/dev/null
  else
    echo "the browser tests need: sudo apt-get install -y ${need_browser_apt[*]}" >&2
    exit 1
  fi
fi

# axe-core from the npm registry, exactly as locked (npm ci checks its integrity hash);
# again only when the lock file changed since the last install
browser_lock=tests/dashboard/package-lock.json
browser_stamp=tests/dashboard/node_modules/.waymark-lock.sha256
browser_want=$(sha256sum "$browser_lock" | cut -d' ' -f1)
if [ ! -f tests/dashboard/node_modules/axe-core/axe.min.js ] || [ ! -f "$browser_stamp" ] \
    || [ "$(cat "$browser_stamp")" != "$browser_want" ]; then
  npm ci --prefix tests/dashboard --no-audit --no-fund --loglevel=error >/dev/null
  echo "$browser_want" > "$browser_stamp"
fi
