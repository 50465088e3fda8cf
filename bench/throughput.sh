#!/usr/bin/env bash
# bench/throughput.sh: N visits of a trivial stage through ONE dpsbatch job,
# next to the same work submitted as one sbatch job per visit, in the same
# run, on the local Slurm cluster (scripts/cluster.sh start).
#
#   bash bench/throughput.sh [N]        (N visits, default 200)
#
# Every side runs the same pipeline: SLICES slices (default 2, so 3 tasks
# with the Pipeline) on one node of the partition, and one stage:
#   STAGE=exec (default)  an exec stage running `true` on every slice: one
#                         fork/exec per slice per visit
#   STAGE=noop            the noop stage (the harness's own cost only)
# Sides, run one after the other:
#   A  dpsbatch    `dpsbatch submit PIPELINE --visits FILE --slices SLICES`
#                  with all N visits: one job runs them all. Timed from just
#                  before submit until the job has ended.
#   B  per visit   N job scripts as a naive user writes them: each is an
#                  sbatch script running `srun --mpi=none -n SLICES+1
#                  dpsbatch run --run-dir D --comm tcp` over a one-visit file
#                  in its own run directory (written before the clock
#                  starts), submitted back to back with `sbatch --parsable`.
#                  Timed from the first sbatch until all N jobs have ended.
#   C  floor       (FLOOR=1, the default) the same N scripts with the srun
#                  line replaced by `srun -n SLICES+1 true`: what Slurm alone
#                  costs per job here, with no dpsbatch in it.
# "Ended" is seen by one `squeue -h -t all -o '%i %T'` call every POLL
# seconds for all of a side's jobs (not sbatch --wait, which polls at
# growing intervals: an empty job took 2 s to 10 s with it; nor
# `dpsbatch status`, which reads `squeue --json` of every job Slurm
# remembers, about 0.5 s a call here once a few runs of this script have
# left 2,500 jobs for MinJobAge, against 20 ms for this call). So every
# time is late by up to POLL plus one squeue call.
# Afterwards it checks the work was done: `dpsbatch status --json` says A's
# run is done with N visits done, and every job of B and C ended COMPLETED
# (squeue's final state, or sacct for a job squeue has forgotten). It
# prints the times, the cost per visit, visits/s and the ratios.
#
# Other users' jobs on the cluster delay every side; the script prints how
# many were queued at the start.
#
# Environment: STAGE (exec), SLICES (2; 1 to 3), PARTITION (debug), POLL (0.5),
# FLOOR (1; 0 leaves C out), PERVISIT (1; 0 runs side A alone: no per-visit
# jobs, so neither B nor C), DPSBATCH (a dpsbatch binary to run instead of
# building one from this checkout: bench/compare.sh times two versions' A). Temporary files go to one mktemp directory
# (world-readable: the simulated nodes' tasks read it), removed on exit;
# every job it submitted that is still queued or running is cancelled on
# exit, also on Ctrl-C or SIGTERM.
set -euo pipefail

cd "$(dirname "$0")/.."
N=${1:-200}
STAGE=${STAGE:-exec}
SLICES=${SLICES:-2}
PARTITION=${PARTITION:-debug}
POLL=${POLL:-0.5}
FLOOR=${FLOOR:-1}
PERVISIT=${PERVISIT:-1}
DPSBATCH=${DPSBATCH:-}

NAME=throughput.sh
. bench/lib.sh

positive_int N "$N" "usage: bash bench/throughput.sh [N]"
# Every side keeps its tasks on one node, and the local nodes have 4 CPUs.
[[ $SLICES =~ ^[1-3]$ ]] || die "SLICES must be 1, 2 or 3 (SLICES+1 tasks on one 4-CPU node of the local cluster), got \"$SLICES\""
[[ $POLL =~ ^[0-9]*\.?[0-9]+$ ]] || die "POLL must be a number of seconds, got \"$POLL\""
[[ $FLOOR == [01] ]] || die "FLOOR must be 0 or 1, got \"$FLOOR\""
[[ $PERVISIT == [01] ]] || die "PERVISIT must be 0 or 1, got \"$PERVISIT\""
check_dpsbatch_env
case $STAGE in
exec | noop) ;;
*) die "STAGE must be exec or noop, got \"$STAGE\"" ;;
esac

need_tools go sbatch squeue scancel sinfo sacct
need_partition "$PARTITION"

bench_tmp throughput
jobs_file=$tmp/jobs # every job ID this script submitted, one a line
: >"$jobs_file"

# live_jobs "ID ID ...": reads `squeue -h -t all -o '%i %T'` and prints
# those of the given jobs still queued, running or finishing.
live_jobs() {
	awk -v ids="$1" '
		BEGIN { k = split(ids, a, " "); for (i = 1; i <= k; i++) mine[a[i]] = 1 }
		($1 in mine) && $2 ~ /^(PENDING|RUNNING|CONFIGURING|COMPLETING|SUSPENDED|REQUEUED|REQUEUE_HOLD|REQUEUE_FED|RESIZING|SIGNALING|STAGE_OUT|STOPPED)$/ { print $1 }'
}

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	if [[ -s $jobs_file ]]; then
		# One scancel for all: a job that has ended is ignored by Slurm.
		mapfile -t ids <"$jobs_file"
		local live
		live=$(squeue -h -t all -o '%i %T' 2>/dev/null | live_jobs "${ids[*]}")
		if [[ -n $live ]]; then
			echo "throughput.sh: cancelling $(wc -w <<<"$live") jobs still queued or running" >&2
			# shellcheck disable=SC2086 # one word per job ID
			scancel $live 2>/dev/null || true
		fi
	fi
	rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dpsbatch_bin

write_site "$PARTITION"

case $STAGE in
exec) stage='{name: work, type: exec, settings: {command: ["true"]}}' ;;
noop) stage='{name: work, type: noop}' ;;
esac
cat >"$tmp/pipeline.yaml" <<EOF
pipeline: throughput
slices: $SLICES
mapper: {type: rank}
events: {trigger: {topic: visits}}
stages:
  - $stage
EOF
{
	echo visitId
	for ((i = 1; i <= N; i++)); do printf 'v%05d\n' "$i"; done
} >"$tmp/visits.csv"
"$bin" validate "$tmp/pipeline.yaml" --visits "$tmp/visits.csv" >/dev/null

# B's run directories and job scripts, one per visit, written before the
# clock starts. The script is what dpsbatch submit renders, less the state
# file: the same tasks on one node, the same launcher and communicator.
tasks=$((SLICES + 1))
for ((i = 1; i <= N * PERVISIT; i++)); do
	v=$(printf 'v%05d' "$i")
	d=$tmp/pervisit/$v
	mkdir -p "$d"
	cp "$tmp/pipeline.yaml" "$d/pipeline.yaml"
	printf 'visitId\n%s\n' "$v" >"$d/visits.csv"
	cat >"$d/job.sbatch" <<EOF
#!/bin/bash
#SBATCH --job-name=tput-$v
#SBATCH --partition=$PARTITION
#SBATCH --nodes=1
#SBATCH --ntasks=$tasks
#SBATCH --cpus-per-task=1
#SBATCH --output=$d/slurm-%j.out
cd $(printf %q "$d") || exit 1
srun --mpi=none --kill-on-bad-exit=1 -n $tasks $(printf %q "$bin") run --run-dir $(printf %q "$d") --comm tcp
EOF
	sed -e "s/^#SBATCH --job-name=.*/#SBATCH --job-name=tput-empty-$v/" \
		-e "s/^srun .*/srun --mpi=none --kill-on-bad-exit=1 -n $tasks true/" "$d/job.sbatch" >"$d/empty.sbatch"
done

# wait_ended ID...: polls `squeue -h -t all -o '%i %T'` every POLL seconds,
# one call for all the jobs, until none of them is live; sets ended_at (an
# $EPOCHREALTIME reading) and last_squeue (that call's output).
wait_ended() {
	local failures=0
	while :; do
		if last_squeue=$(squeue -h -t all -o '%i %T' 2>"$tmp/squeue.err"); then
			failures=0
			if [[ -z $(live_jobs "$*" <<<"$last_squeue") ]]; then
				ended_at=$EPOCHREALTIME
				return
			fi
		elif ((++failures >= 10)); then
			die "squeue failed 10 times in a row: $(cat "$tmp/squeue.err")"
		fi
		sleep "$POLL"
	done
}

# elapsed START END: seconds between two $EPOCHREALTIME readings.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

others=$(squeue -h -o '%i' | wc -l)
echo "Throughput on the local cluster: $N visits, $SLICES slices + the Pipeline ($tasks tasks on one node), stage: $STAGE; $(nproc) cores"
echo "other jobs in the queue at the start: $others; load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- A: one dpsbatch job ----
t0=$EPOCHREALTIME
sub=$("$bin" submit "$tmp/pipeline.yaml" --visits "$tmp/visits.csv" --site "$tmp/site.yaml" \
	--name throughput --slices "$SLICES" --json)
t_sub=$EPOCHREALTIME
jobA=$(tr -d ' \n' <<<"$sub" | sed -n 's/.*"jobs":\["\([0-9_]*\)".*/\1/p')
[[ -n $jobA ]] || die "no job ID in dpsbatch submit's output: $sub"
echo "$jobA" >>"$jobs_file"
wait_ended "$jobA"
t1=$ended_at
# The run's own account, once its job has ended: every visit done.
outcome="" done_visits=0
for ((try = 1; try <= 10; try++)); do
	st=$("$bin" status --json --site "$tmp/site.yaml" throughput) || die "dpsbatch status --json throughput failed"
	flat=$(tr -d ' \n' <<<"$st")
	# The run's own "live" is followed by its "outcome"; a job's is not.
	if [[ $flat =~ \"live\":false,\"outcome\":\"([a-z]+)\" ]]; then
		outcome=${BASH_REMATCH[1]}
		[[ $flat =~ \"done\":([0-9]+) ]] && done_visits=${BASH_REMATCH[1]}
		break
	fi
	sleep "$POLL"
done
timeA=$(elapsed "$t0" "$t1")
if [[ $outcome != done || $done_visits != "$N" ]]; then
	tail -n 20 "$tmp/runs/throughput/logs/slurm-$jobA.out" >&2 2>/dev/null || true
	die "A: run ended $outcome with $done_visits of $N visits done (job $jobA; its Slurm log's end is above)"
fi
echo "A  one dpsbatch job $jobA: $N visits done in ${timeA} s"
# Where A's time went, by the run's own record of its job (rank 0's clock).
stamp() { [[ $flat =~ \"$1\":\"([^\"]+)\" ]] && date -d "${BASH_REMATCH[1]}" +%s.%N; }
if sub_at=$(stamp submitted) && start_at=$(stamp started) && end_at=$(stamp ended); then
	printf '   A by its own record: submit %s s, then rank 0 starting %s s, visits %s s, job seen ended %s s later\n' \
		"$(elapsed "$t0" "$t_sub")" "$(elapsed "$sub_at" "$start_at")" "$(elapsed "$start_at" "$end_at")" "$(elapsed "$end_at" "$t1")"
fi

# perjob SCRIPT LABEL: submits $tmp/pervisit/*/SCRIPT back to back, waits
# until none of those jobs is live, checks that all COMPLETED, and sets
# per_time (first sbatch to last end) and per_submit (first to last sbatch).
perjob() {
	local script=$1 label=$2 ids=() i d id t0 ts q
	t0=$EPOCHREALTIME
	for ((i = 1; i <= N; i++)); do
		d=$tmp/pervisit/$(printf 'v%05d' "$i")
		id=$(sbatch --parsable "$d/$script")
		id=${id%%;*}
		echo "$id" >>"$jobs_file"
		ids+=("$id")
	done
	ts=$EPOCHREALTIME
	wait_ended "${ids[@]}"
	q=$last_squeue
	per_time=$(elapsed "$t0" "$ended_at")
	per_submit=$(elapsed "$t0" "$ts")

	# Every job must have COMPLETED (for B: exit 0, its one visit done).
	local bad forgotten acct
	bad=$(awk -v ids="${ids[*]}" '
		BEGIN { k = split(ids, a, " "); for (i = 1; i <= k; i++) mine[a[i]] = 1 }
		($1 in mine) { seen[$1] = 1; if ($2 != "COMPLETED") print $1 " " $2 }
		END { for (id in mine) if (!(id in seen)) print id " FORGOTTEN" }' <<<"$q")
	if grep -q FORGOTTEN <<<"$bad"; then
		# squeue forgets a job MinJobAge after it ends: ask accounting.
		forgotten=$(awk '$2 == "FORGOTTEN" { print $1 }' <<<"$bad" | paste -sd, -)
		bad=$(grep -v FORGOTTEN <<<"$bad" || true)
		acct=$(sacct -n -X -P -j "$forgotten" -o JobID,State)
		bad+=$(awk -F'|' '$2 != "COMPLETED" { print "\n" $1 " " $2 }' <<<"$acct")
		[[ $(wc -l <<<"$acct") -ge $(tr ',' '\n' <<<"$forgotten" | wc -l) ]] || bad+=$'\n'"sacct does not list all of $forgotten"
	fi
	if [[ -n ${bad//[$'\n ']/} ]]; then
		die "$label: jobs that did not complete: $(head -n 5 <<<"$bad" | paste -sd';' -)"
	fi
	echo "$label  $N sbatch jobs (${ids[0]}..${ids[N - 1]}): all COMPLETED ${per_time} s after the first sbatch (the last sbatch returned after ${per_submit} s)"
}

if [[ $PERVISIT == 0 ]]; then
	echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
	exit 0
fi

# ---- B: one sbatch job per visit ----
perjob job.sbatch B
timeB=$per_time

# ---- C: one empty sbatch job per visit (Slurm's own floor) ----
timeC=""
if [[ $FLOOR == 1 ]]; then
	perjob empty.sbatch C
	timeC=$per_time
fi

awk -v n="$N" -v a="$timeA" -v b="$timeB" -v c="$timeC" 'BEGIN {
	printf "\n%-28s %10s %14s %10s\n", "", "seconds", "ms per visit", "visits/s"
	printf "%-28s %10.2f %14.1f %10.1f\n", "A  one dpsbatch job", a, 1000 * a / n, n / a
	printf "%-28s %10.2f %14.1f %10.1f\n", "B  one sbatch job per visit", b, 1000 * b / n, n / b
	if (c != "") printf "%-28s %10.2f %14.1f %10.1f\n", "C  empty job per visit", c, 1000 * c / n, n / c
	printf "ratio B/A: %.1fx\n", b / a
	if (c != "") printf "ratio C/A: %.1fx (Slurm alone: no dpsbatch in the jobs)\n", c / a
}'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
