#!/usr/bin/env bash
# Runs the JavaScript tests: setup (npm ci, chromium), the build and
# typecheck of @firegate/client and @firegate/react, the unit tests, the
# check that the committed web bundles are fresh, the Node integration
# tests against a real `firegate dev` (Firestore emulator), and the
# browser tests (headless Debian chromium). Prints one last line
# `js: N passed, N failed` and exits non-zero when anything failed.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
js="$root/clients/js"
passed=0
failed=0
log="$(mktemp -d)/test-js"
mkdir -p "$log"

step() { # name, command...: a non-test step; a failure counts as one failed test
  local name="$1"; shift
  if "$@" >"$log/$name.out" 2>&1; then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); echo "FAIL $name"; cat "$log/$name.out"
  fi
}

suite() { # name, test dir: node's test runner, counted per test
  local name="$1" dir="$2"
  (cd "$js" && node --test --test-concurrency=1 --test-timeout=300000 --test-reporter=tap "$dir") >"$log/$name.tap" 2>&1
  local rc=$? p f
  p=$(grep -E '^# pass [0-9]+' "$log/$name.tap" | tail -1 | awk '{print $3}')
  f=$(grep -E '^# fail [0-9]+' "$log/$name.tap" | tail -1 | awk '{print $3}')
  p=${p:-0}; f=${f:-0}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  echo "$( [ "$f" -eq 0 ] && echo "ok  " || echo FAIL) $name: $p passed, $f failed"
  if [ "$f" -ne 0 ]; then grep -v '^ *duration_ms' "$log/$name.tap" | grep -B2 -A25 '^not ok\|^    not ok' | head -200; fi
}

if ! "$root/scripts/setup-js.sh"; then
  echo "js: 0 passed, 1 failed"
  exit 1
fi
step build bash -c "cd '$js' && node scripts/build.mjs"
step typecheck-example bash -c "cd '$root/examples/react-clerk' && npx tsc -p ."
step web-bundle-fresh bash -c "cd '$js' && node scripts/build.mjs --check"
suite unit test/unit/
# The integration and browser tests start `firegate dev`: build it once.
bindir="$(mktemp -d)"
trap 'rm -rf "$bindir"' EXIT
step build-firegate bash -c "cd '$root' && go build -o '$bindir/firegate' ./cmd/firegate"
export FIREGATE_BIN="$bindir/firegate"
if [ -d "$js/test/integration" ]; then suite integration test/integration/; fi
if [ -d "$js/test/browser" ]; then suite browser test/browser/; fi
echo "js: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
