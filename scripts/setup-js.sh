#!/usr/bin/env bash
# Installs what the JavaScript tests need: the npm workspace in clients/js
# and the React example (both from their lockfiles, `npm ci`), and Debian's
# chromium for the browser tests (playwright-core drives /usr/bin/chromium;
# no browser is downloaded).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
command -v node >/dev/null || { echo "setup-js: Node.js 20+ is required (Debian package nodejs)"; exit 1; }
command -v npm >/dev/null || { echo "setup-js: npm is required (Debian package npm)"; exit 1; }
(cd "$root/clients/js" && npm ci --no-audit --no-fund --loglevel=error)
(cd "$root/examples/react-clerk" && npm ci --no-audit --no-fund --loglevel=error)
if [ ! -x /usr/bin/chromium ]; then
  echo "setup-js: installing chromium (Debian package)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi
fi
echo "setup-js: ok (node $(node -v), npm $(npm -v), $(/usr/bin/chromium --version 2>/dev/null | head -1))"
