#!/usr/bin/env bash
# scripts/cluster_keeper_test.sh: a node whose slurmd dies comes back.
#
# Kills n4's slurmd while a job runs there, as a crashed slurmd would
# exit, and checks that the cluster's slurmd keeper (scripts/cluster.sh
# keep) starts it again: a new slurmd within 15 s, the job ends
# COMPLETED, n4 is usable again (no "*" in sinfo) and a new job runs on
# it. scripts/test.sh runs it before go test, while no test uses the
# cluster. Needs root and the cluster up. Prints --- PASS or --- FAIL
# with its name, as go test does.
set -euo pipefail

# The cluster's own functions: daemon_pid, wait_for.
# shellcheck source=scripts/cluster.sh
source "$(dirname "$0")/cluster.sh"

readonly NAME=scripts/cluster_keeper_test.sh
readonly NODE=n4

fail() {
	printf '    %s\n' "$@"
	echo "--- FAIL: $NAME"
	exit 1
}

job_state() { sacct -n -X -P -j "$job" -o state 2>/dev/null | head -1; }
running() { [[ $(squeue -h -j "$job" -o %T 2>/dev/null) == RUNNING ]]; }
completed() { [[ -z $(squeue -h -j "$job" -o %T 2>/dev/null) && $(job_state) == COMPLETED ]]; }
new_slurmd() { local p; p=$(daemon_pid slurmd "$NODE") && [[ $p != "$old" ]]; }
usable() { [[ $(sinfo -h -n "$NODE" -o %t) =~ ^(idle|mix|alloc)$ ]]; }

old=$(daemon_pid slurmd "$NODE") || fail "slurmd -N $NODE is not running (scripts/cluster.sh start)"
job=$(sbatch --parsable -w "$NODE" -o /dev/null -t 2 --wrap 'sleep 4') || fail "sbatch -w $NODE failed"
trap 'scancel "$job" 2>/dev/null || true' EXIT
wait_for 30 running || fail "job $job did not start on $NODE: $(squeue -h -j "$job" -o '%T %r')"

kill -KILL "$old"
wait_for 15 new_slurmd ||
	fail "no slurmd -N $NODE 15 s after its slurmd (pid $old) was killed" "$(tail -5 "$KEEPER_LOG" 2>&1)"
wait_for 60 completed ||
	fail "job $job is $(job_state) (squeue: $(squeue -h -j "$job" -o %T)) 60 s after $NODE's slurmd came back"
wait_for 30 usable || fail "$NODE is $(sinfo -h -n "$NODE" -o %t) 30 s after its slurmd came back"
out=$(timeout 60 srun -w "$NODE" -t 1 hostname 2>&1) || fail "srun -w $NODE after the restart: $out"
echo "--- PASS: $NAME (slurmd -N $NODE pid $old killed, pid $(daemon_pid slurmd "$NODE") started; job $job COMPLETED)"
