#!/usr/bin/env bash
# Runs the integration packages many times under CPU contention, to find
# the races and timing assumptions that a quiet machine hides:
#   - every test COUNT times (default 5) at GOMAXPROCS 1 and 2 (-cpu 1,2),
#     with the race detector,
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
	# cluster.
	mapfile -t PACKAGES < <(grep -rl --include='*_test.go' 'testenv\.' . | xargs -n1 dirname | sort -u)
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

echo "stress: ${PACKAGES[*]}: -count=$COUNT -cpu 1,2 -race with $LOAD busy loops"
start=$SECONDS
status=0
REGCRED_REQUIRE_TESTENV=1 go test -race -count="$COUNT" -cpu 1,2 -timeout "$TIMEOUT" "${PACKAGES[@]}" || status=$?
echo "stress: exit $status after $((SECONDS - start))s; each test ran $((COUNT * 2)) times"
exit "$status"
