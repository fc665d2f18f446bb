#!/usr/bin/env bash
# Runs the integration packages many times under CPU contention, to find
# the races and timing assumptions that a quiet machine hides:
#   - COUNT runs (default 5) of every package, each a fresh test process
#     (the tests share one control plane or cluster per process and name
#     their objects, as a person would, so a run is one process), at
#     GOMAXPROCS 1 and 2 in turn, with the race detector,
#   - while LOAD busy loops (default: one per core) compete for the CPU.
# The busy loops are this script's children and stop with it, even on
# Ctrl-C or failure. Usage: hack/stress.sh [PACKAGE...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

COUNT="${COUNT:-5}"
LOAD="${LOAD:-$(nproc)}"
TIMEOUT="${TIMEOUT:-90m}"
PACKAGES=("$@")
if [ "${#PACKAGES[@]}" -eq 0 ]; then
	# Every package whose tests start a control plane, a registry or a
	# cluster: those importing the harness packages that start them.
	mapfile -t PACKAGES < <(grep -rlE --include='*_test.go' 'regcred/internal/testenv/(testsuite|controlplane|testcluster|testregistry)"' . | xargs -n1 dirname | sort -u)
fi

pids=()
stop_load() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait "${pids[@]}" 2>/dev/null || true
}
trap stop_load EXIT
for _ in $(seq "$LOAD"); do
	(while :; do :; done) &
	pids+=("$!")
done

echo "stress: ${PACKAGES[*]}: $COUNT runs, GOMAXPROCS 1 and 2 in turn, -race, with $LOAD busy loops"
start=$SECONDS
passed=0
failed=0
for i in $(seq "$COUNT"); do
	procs=$((2 - i % 2))
	echo "stress: run $i of $COUNT (GOMAXPROCS=$procs)"
	if GOMAXPROCS=$procs REGCRED_REQUIRE_TESTENV=1 go test -race -count=1 -timeout "$TIMEOUT" "${PACKAGES[@]}"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
done
echo "stress: $passed passed, $failed failed in $((SECONDS - start))s"
[ "$failed" -eq 0 ]
