#!/usr/bin/env bash
# Runs every test of the project and prints one summary line last:
#
#   tests: N passed, N failed, N skipped
#
# counting the static checks (gofmt, go vet, staticcheck, go mod tidy),
# the Go tests under the race detector (end-to-end tests start Google's
# Firestore emulator themselves), the fuzz targets, and the JavaScript
# tests when scripts/test-js.sh exists. It exits non-zero when anything
# failed.
#
# Usage: scripts/test.sh [--busy]
#   --busy (or FIREGATE_BUSY=1) keeps every core busy with a CPU-burning
#   loop for the whole run, as on a loaded CI machine: the suite must pass
#   that way too (see docs/testing.md).
# Environment: FUZZTIME (inputs per fuzz target, default 5000x),
# FIREGATE_SKIP_FUZZ=1, FIREGATE_SKIP_JS=1.
set -euo pipefail
cd "$(dirname "$0")/.."

busy="${FIREGATE_BUSY:-0}"
for arg in "$@"; do
  case "$arg" in
    --busy) busy=1 ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

start=$(date +%s)
burners=()
stop_burners() {
  for pid in "${burners[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  burners=()
}
trap stop_burners EXIT
if [ "$busy" = 1 ]; then
  for _ in $(seq "$(nproc)"); do
    (while :; do :; done) &
    burners+=($!)
  done
  echo "== busy: ${#burners[@]} CPU-burning loops for the whole run (pids ${burners[*]})"
fi

scripts/setup.sh
staticcheck=.tools/bin/staticcheck # installed by setup.sh

passed=0
failed=0
skipped=0
failures=()

# check NAME COMMAND...: one static check; its output is shown on failure.
check() {
  local name="$1"
  shift
  echo "== $name"
  if out=$("$@" 2>&1); then
    passed=$((passed + 1))
  else
    echo "$out"
    failed=$((failed + 1))
    failures+=("$name")
  fi
}

gofmt_clean() {
  local files
  files=$(find . -name '*.go' -not -path '*/node_modules/*' -not -path './.tools/*' -print0 | xargs -0 gofmt -l)
  [ -z "$files" ] || { echo "not gofmt-ed:"; echo "$files"; return 1; }
}
check gofmt gofmt_clean
check "go vet" go vet ./...
check staticcheck "$staticcheck" ./...
check "go mod tidy" go mod tidy -diff

echo "== go test -race ./..."
set +e
go test -race -count=1 -timeout 20m -json ./... > .test-output.json
test_rc=$?
go run ./internal/tools/testsummary < .test-output.json | tee .test-summary.txt
sum_rc=${PIPESTATUS[0]}
set -e
read -r p f s < <(sed -n -E 's/^([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped$/\1 \2 \3/p' .test-summary.txt | tail -n 1) || true
rm -f .test-output.json .test-summary.txt
passed=$((passed + ${p:-0}))
failed=$((failed + ${f:-0}))
skipped=$((skipped + ${s:-0}))
if [ $test_rc -ne 0 ] || [ $sum_rc -ne 0 ]; then
  failures+=("go test (rc $test_rc)")
  [ "${f:-0}" -gt 0 ] || failed=$((failed + 1)) # a build or package failure
fi

# Fuzzing runs a fixed number of inputs per target (FUZZTIME, "Nx"), so a
# busy machine makes it slower, never red. Only a crasher counts as a
# failure: a new reproducer file under the target's testdata/fuzz. The
# engine failing on its own (a stalled worker, "context deadline exceeded")
# is reported and not counted; the seed corpora already ran in go test.
if [ "${FIREGATE_SKIP_FUZZ:-}" != "1" ]; then
  echo "== fuzz (${FUZZTIME:=5000x} per target)"
  fuzz_stalled=0
  while read -r pkg name; do
    echo "-- $pkg $name"
    corpus="$pkg/testdata/fuzz/$name"
    before=$(ls "$corpus" 2>/dev/null | sort || true)
    set +e
    go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -timeout 10m "$pkg" > .fuzz.log 2>&1
    rc=$?
    set -e
    crashers=$(comm -13 <(printf '%s\n' "$before") <(ls "$corpus" 2>/dev/null | sort || true) | sed '/^$/d')
    if [ -n "$crashers" ]; then
      cat .fuzz.log
      echo "crasher: $(printf "$corpus/%s " $crashers)"
      failed=$((failed + 1))
      failures+=("fuzz $name")
    elif [ $rc -ne 0 ]; then
      tail -n 5 .fuzz.log
      echo "(the fuzzing engine failed without writing a crasher: not counted)"
      fuzz_stalled=$((fuzz_stalled + 1))
    else
      tail -n 1 .fuzz.log
      passed=$((passed + 1))
    fi
  done < <(grep -rl --include='*_test.go' --exclude-dir=node_modules '^func Fuzz' . | sort | while read -r f; do
             d=$(dirname "$f"); grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | sed "s|^|./${d#./} |"; done)
  rm -f .fuzz.log
  [ $fuzz_stalled -eq 0 ] || echo "fuzz: $fuzz_stalled engine failures without a crasher (not counted)"
fi

# The JavaScript tests, when the repository has them: their own script
# prints "js: N passed, N failed" last.
if [ -x scripts/test-js.sh ] && [ "${FIREGATE_SKIP_JS:-}" != "1" ]; then
  echo "== JavaScript tests (scripts/test-js.sh)"
  set +e
  scripts/test-js.sh 2>&1 | tee .test-js.txt
  js_rc=${PIPESTATUS[0]}
  set -e
  read -r jp jf < <(sed -n -E 's/^js: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/p' .test-js.txt | tail -n 1) || true
  rm -f .test-js.txt
  passed=$((passed + ${jp:-0}))
  failed=$((failed + ${jf:-0}))
  if [ "$js_rc" -ne 0 ]; then
    failures+=("js (rc $js_rc)")
    [ "${jf:-0}" -gt 0 ] || failed=$((failed + 1))
  fi
fi

stop_burners
elapsed=$(($(date +%s) - start))
echo "== done in $((elapsed / 60))m$((elapsed % 60))s$([ "$busy" = 1 ] && echo ' (busy machine)')"
if [ ${#failures[@]} -gt 0 ]; then
  echo "FAILED: ${failures[*]}"
  echo "tests: $passed passed, $failed failed, $skipped skipped"
  exit 1
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
