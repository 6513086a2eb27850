#!/usr/bin/env bash
# bench.sh - run the hot-path micro-benchmarks (go test -bench, -benchmem)
# of the packages that own them and collect the output.
#
#   scripts/bench.sh                 # every package below, 1 s per benchmark
#   BENCHTIME=3s COUNT=5 scripts/bench.sh ./wire ./subscriptions
#   OUT=bench.txt scripts/bench.sh   # also write the combined output here
#
# Benchmarks live next to the code they measure (frame decode and splice in
# ./wire, fan-out to 10k in-memory subscribers and Feed key normalization in
# ./subscriptions, verification on a cached key in ./authz, metric recording
# in ./metrics, the write path in ./gateway). Packages without benchmarks
# are reported as such, not as failures. The output is benchstat-friendly:
# run twice and compare with `benchstat old.txt new.txt`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
	pkgs=(./wire ./subscriptions ./authz ./gateway ./metrics ./internal/loadtest)
fi
benchtime="${BENCHTIME:-1s}"
count="${COUNT:-1}"
out="${OUT:-}"

tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT

{
	echo "# firegate micro-benchmarks $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "# $(go version); nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "# benchtime=$benchtime count=$count"
} | tee "$tmp"

status=0
for p in "${pkgs[@]}"; do
	if ! go list "$p" >/dev/null 2>&1; then
		echo "# $p: not a package here, skipped" | tee -a "$tmp"
		continue
	fi
	if ! grep -qs '^func Benchmark' "$p"/*_test.go; then
		echo "# $p: no benchmarks yet" | tee -a "$tmp"
		continue
	fi
	echo "# $p" | tee -a "$tmp"
	if ! go test -run '^$' -bench . -benchmem -benchtime "$benchtime" -count "$count" "$p" 2>&1 | tee -a "$tmp"; then
		echo "# $p: FAILED" | tee -a "$tmp"
		status=1
	fi
done

if [ -n "$out" ]; then
	cp "$tmp" "$out"
	echo "# written to $out"
fi
exit "$status"
