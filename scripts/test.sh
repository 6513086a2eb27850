#!/usr/bin/env bash
# Runs every test of the project: vet, the whole suite under the race
# detector (end-to-end tests start Google's Firestore emulator themselves),
# and a short fuzzing pass over every decoder. Prints one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "== go vet"
go vet ./...

echo "== go test -race ./..."
set +e
go test -race -count=1 -timeout 20m -json ./... > .test-output.json
test_rc=$?
go run ./internal/tools/testsummary < .test-output.json | tee .test-summary.txt
sum_rc=${PIPESTATUS[0]}
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' .test-summary.txt | tail -n 1)
rm -f .test-summary.txt
set -e
rm -f .test-output.json

fuzz_rc=0
fuzz_ok=0
fuzz_bad=0
if [ "${FIREGATE_SKIP_FUZZ:-}" != "1" ]; then
  echo "== fuzz (${FUZZTIME:=10s} per target)"
  while read -r pkg name; do
    echo "-- $pkg $name"
    if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg" > .fuzz.log 2>&1; then
      cat .fuzz.log; fuzz_rc=1; fuzz_bad=$((fuzz_bad+1))
    else
      tail -n 1 .fuzz.log; fuzz_ok=$((fuzz_ok+1))
    fi
  done < <(grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
             d=$(dirname "$f"); grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | sed "s|^|./${d#./} |"; done)
  rm -f .fuzz.log
fi

echo "fuzz targets: $fuzz_ok passed, $fuzz_bad failed"
if [ $test_rc -ne 0 ] || [ $sum_rc -ne 0 ] || [ $fuzz_rc -ne 0 ]; then
  echo "FAILED (go test rc=$test_rc, summary rc=$sum_rc, fuzz rc=$fuzz_rc)"
  echo "tests: ${summary:-no summary}"
  exit 1
fi
echo "tests: $summary"
