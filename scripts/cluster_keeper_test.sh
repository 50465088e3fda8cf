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

readonly NAME=scripts/cluster_keeper_test.sh
readonly NODE=n4
readonly PID_FILE=/run/slurm/slurmd-$NODE.pid

fail() {
	printf '    %s\n' "$@"
	echo "--- FAIL: $NAME"
	exit 1
}

# slurmd_pid: the pid of NODE's live slurmd, or fail.
slurmd_pid() {
	local pid
	pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
	[[ $(cat "/proc/$pid/comm" 2>/dev/null) == slurmd ]] || return 1
	[[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "-N $NODE " || return 1
	echo "$pid"
}

# within SECONDS COMMAND...: retry COMMAND every 0.2 s until it succeeds.
within() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 5; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	return 1
}

job_state() { sacct -n -X -P -j "$job" -o state 2>/dev/null | head -1; }
running() { [[ $(squeue -h -j "$job" -o %T 2>/dev/null) == RUNNING ]]; }
completed() { [[ -z $(squeue -h -j "$job" -o %T 2>/dev/null) && $(job_state) == COMPLETED ]]; }
new_slurmd() { local p; p=$(slurmd_pid) && [[ $p != "$old" ]]; }
usable() { [[ $(sinfo -h -n "$NODE" -o %t) =~ ^(idle|mix|alloc)$ ]]; }

old=$(slurmd_pid) || fail "slurmd -N $NODE is not running (scripts/cluster.sh start)"
job=$(sbatch --parsable -w "$NODE" -o /dev/null -t 2 --wrap 'sleep 4') || fail "sbatch -w $NODE failed"
trap 'scancel "$job" 2>/dev/null || true' EXIT
within 30 running || fail "job $job did not start on $NODE: $(squeue -h -j "$job" -o '%T %r')"

kill -KILL "$old"
within 15 new_slurmd ||
	fail "no slurmd -N $NODE 15 s after its slurmd (pid $old) was killed" "$(tail -5 /var/log/slurm/keeper.log 2>&1)"
within 60 completed ||
	fail "job $job is $(job_state) (squeue: $(squeue -h -j "$job" -o %T)) 60 s after $NODE's slurmd came back"
within 30 usable || fail "$NODE is $(sinfo -h -n "$NODE" -o %t) 30 s after its slurmd came back"
out=$(timeout 60 srun -w "$NODE" -t 1 hostname 2>&1) || fail "srun -w $NODE after the restart: $out"
echo "--- PASS: $NAME (slurmd -N $NODE pid $old killed, pid $(slurmd_pid) started; job $job COMPLETED)"
