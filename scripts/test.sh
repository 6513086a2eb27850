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

# Fuzzing runs a fixed number of inputs per target (FUZZTIME, "Nx"), so a
# busy machine makes it slower, never red. Only a crasher counts as a
# failure: a new reproducer file under the target's testdata/fuzz. The
# engine failing on its own (a stalled worker, "context deadline exceeded")
# is reported and not counted; the seed corpora already ran in go test.
fuzz_rc=0
fuzz_ok=0
fuzz_bad=0
fuzz_stalled=0
if [ "${FIREGATE_SKIP_FUZZ:-}" != "1" ]; then
  echo "== fuzz (${FUZZTIME:=5000x} per target)"
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
      fuzz_rc=1; fuzz_bad=$((fuzz_bad+1))
    elif [ $rc -ne 0 ]; then
      tail -n 5 .fuzz.log
      echo "(the fuzzing engine failed without writing a crasher: not counted)"
      fuzz_stalled=$((fuzz_stalled+1))
    else
      tail -n 1 .fuzz.log; fuzz_ok=$((fuzz_ok+1))
    fi
  done < <(grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r f; do
             d=$(dirname "$f"); grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | sed "s|^|./${d#./} |"; done)
  rm -f .fuzz.log
fi

echo "fuzz targets: $fuzz_ok passed, $fuzz_bad failed, $fuzz_stalled engine failures (not counted)"
if [ $test_rc -ne 0 ] || [ $sum_rc -ne 0 ] || [ $fuzz_rc -ne 0 ]; then
  echo "FAILED (go test rc=$test_rc, summary rc=$sum_rc, fuzz rc=$fuzz_rc)"
  echo "tests: ${summary:-no summary}"
  exit 1
fi
echo "tests: $summary"
