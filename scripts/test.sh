#!/usr/bin/env bash
# scripts/test.sh: run every test of dpsbatch, the way CI does.
#
# Installs (apt-get) and starts what the tests need: a local Slurm cluster
# of four simulated nodes with munge and accounting, its two slurmrestd's
# (local auth and JWT), Open MPI, python3, and the tools cgo needs
# (scripts/cluster.sh; idempotent, fast when all is up).
# Then go vet, each fuzz target for a few seconds (scripts/fuzz.sh; a
# failing target counts as a failed test), the check that the cluster
# starts a dead slurmd again (scripts/cluster_keeper_test.sh, while no
# other test uses the cluster; it counts as a test), and go test with the mpi build
# tag, with DPSBATCH_TEST_NO_SKIP=1 so that a test needing Slurm or MPI
# fails instead of skipping. Needs Go and root (for apt-get and the
# daemons).
#
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh ./harness/ # only some packages (still with the cluster up; no fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/cluster.sh start-rest       # the cluster, and slurmrestd with local auth
bash scripts/cluster.sh start-rest-jwt   # and a second one with JWT
export DPSBATCH_TEST_NO_SKIP=1
export OMPI_MCA_mpi_yield_when_idle=1

pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./...)

echo "test: go vet" >&2
go vet "${pkgs[@]}"
go vet -tags mpi "${pkgs[@]}"

fuzzed=0
kept=0
keeper_out=""
if [ $# -eq 0 ]; then
	echo "test: scripts/fuzz.sh" >&2
	bash scripts/fuzz.sh || fuzzed=1
	echo "test: scripts/cluster_keeper_test.sh" >&2
	keeper_out=$(bash scripts/cluster_keeper_test.sh 2>&1) || kept=1
	echo "$keeper_out"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "test: go test -tags mpi -count=1 ${pkgs[*]}" >&2
status=0
go test -tags mpi -count=1 -timeout 20m -v "${pkgs[@]}" >"$log" 2>&1 || status=$?
# The package lines and every failed test's output, not the whole log:
# what a test logged is kept (by test name, from its === RUN or CONT line
# on) until its --- PASS drops it or its --- FAIL or SKIP prints it.
awk '/^=== (RUN|CONT|NAME) / { cur = $3; next }
	/^=== PAUSE / { next }
	/^[[:space:]]*--- (FAIL|SKIP): / { printf "%s", buf[$3]; delete buf[$3]; f = 1; print; next }
	/^[[:space:]]*--- PASS: / { delete buf[$3]; f = 0; next }
	/^(ok|FAIL|panic:)/ { f = 0; print; next }
	f { print; next }
	cur != "" { buf[cur] = buf[cur] $0 "\n" }' "$log"
pass=$(grep -cE '^\s*--- PASS' "$log" || true)
fail=$(grep -cE '^\s*--- FAIL' "$log" || true)
skip=$(grep -cE '^\s*--- SKIP' "$log" || true)
if [ "$status" -ne 0 ] && [ "$fail" -eq 0 ]; then
	tail -50 "$log"   # a build failure or a panic outside a test
fi
if [ -n "$keeper_out" ]; then
	if [ "$kept" -eq 0 ]; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		status=1
	fi
fi
if [ "$fuzzed" -ne 0 ]; then
	echo "--- FAIL: scripts/fuzz.sh (a fuzz target failed: see above)"
	fail=$((fail + 1))
	status=1
fi
if [ "$status" -eq 0 ]; then
	echo "ok: $pass tests passed, $fail failed, $skip skipped"
else
	echo "FAIL: $pass tests passed, $fail failed, $skip skipped"
fi
exit "$status"
