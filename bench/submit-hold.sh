#!/usr/bin/env bash
# bench/submit-hold.sh: the wall time and peak memory of `dpsbatch submit
# --hold` of a run of N visits (default 1,000,000) on the local Slurm
# cluster (scripts/cluster.sh start), one or more dpsbatch binaries side by
# side in one sitting.
#
#   bash bench/submit-hold.sh [DPSBATCH...]
#
# Each DPSBATCH is a dpsbatch binary; without one it builds this checkout's.
# The visit file (CSV of visit IDs; with PROPS=1 also a property, filter,
# which the trigger declares) and a pipeline of two slices of the noop
# stage are written once, before any clock starts.
# Each round runs every binary once, the order turning by one each round
# (A B C, B C A, ...), REPS rounds (default 5): `submit --hold` under
# /usr/bin/time -f '%e %M' (wall seconds, peak resident KiB), then the held
# job is cancelled (`dpsbatch cancel`) and the run directory removed.
# It prints, per binary, the median [min-max] of the seconds and of the
# peak RSS in MiB, and the machine and load average.
#
# Environment: VISITS (1000000), REPS (5), PROPS (0), PARTITION (debug). Temporary
# files go to one mktemp directory (world-readable: the simulated nodes
# read it), removed on exit; every job submitted is cancelled on exit,
# also on Ctrl-C or SIGTERM.
set -euo pipefail

cd "$(dirname "$0")/.."
VISITS=${VISITS:-1000000}
REPS=${REPS:-5}
PROPS=${PROPS:-0}
PARTITION=${PARTITION:-debug}

NAME=submit-hold.sh
. bench/lib.sh

positive_int VISITS "$VISITS"
positive_int REPS "$REPS"
[[ $PROPS == [01] ]] || die "PROPS must be 0 or 1, got \"$PROPS\""
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"
need_tools go sbatch scancel sinfo
need_partition "$PARTITION"

bench_tmp hold
jobs_file=$tmp/jobs # every job this script submitted, one a line
: >"$jobs_file"
cleanup() {
	local status=$?
	trap - EXIT INT TERM
	if [[ -s $jobs_file ]]; then
		# shellcheck disable=SC2046 # one word per job ID
		scancel $(cat "$jobs_file") 2>/dev/null || true
	fi
	rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bins=("$@")
if ((${#bins[@]} == 0)); then
	go build -o "$tmp/dpsbatch" ./cmd/dpsbatch
	bins=("$tmp/dpsbatch")
fi
for b in "${bins[@]}"; do
	[[ -x $b ]] || die "not an executable: $b"
done
write_site "$PARTITION"
trigger='{topic: visits}'
((PROPS == 0)) || trigger='{topic: visits, properties: {filter: string}}'
cat >"$tmp/pipeline.yaml" <<EOF
pipeline: hold
slices: 2
mapper: {type: rank}
events: {trigger: $trigger}
stages:
  - {name: work, type: noop}
EOF
awk -v n="$VISITS" -v props="$PROPS" 'BEGIN {
	print props ? "visitId,filter" : "visitId"; split("u g r i z y", f, " ")
	for (i = 1; i <= n; i++) if (props) printf "v%07d,%s\n", i, f[i % 6 + 1]; else printf "v%07d\n", i
}' >"$tmp/visits.csv"

samples=$tmp/samples # binary index, seconds, peak KiB
: >"$samples"
loadBefore=$(cut -d' ' -f1-3 /proc/loadavg)
for ((round = 1; round <= REPS; round++)); do
	for ((k = 0; k < ${#bins[@]}; k++)); do
		i=$(((k + round - 1) % ${#bins[@]}))
		bin=${bins[$i]}
		run=hold-$round-$i
		echo "round $round: $bin" >&2
		if ! /usr/bin/time -o "$tmp/time" -f '%e %M' "$bin" submit --site "$tmp/site.yaml" "$tmp/pipeline.yaml" \
			--visits "$tmp/visits.csv" --hold --name "$run" --json >"$tmp/out.json" 2>"$tmp/err"; then
			cat "$tmp/err" >&2
			die "submit with $bin failed"
		fi
		# The first job of the "jobs" list of submit's JSON.
		job=$(tr -d ' \n' <"$tmp/out.json" | sed -n 's/.*"jobs":\["\([0-9][0-9]*\)".*/\1/p')
		if [[ -z $job ]]; then
			"$bin" cancel --site "$tmp/site.yaml" "$run" >/dev/null 2>&1 || true
			die "no job in submit's output: $(head -c 300 "$tmp/out.json")"
		fi
		echo "$job" >>"$jobs_file"
		"$bin" cancel --site "$tmp/site.yaml" "$run" >/dev/null 2>&1 || scancel "$job" || true
		rm -rf "$tmp/runs/$run"
		printf '%s %s\n' "$i" "$(cat "$tmp/time")" >>"$samples"
	done
done
loadAfter=$(cut -d' ' -f1-3 /proc/loadavg)

echo "Command: \`VISITS=$VISITS REPS=$REPS PROPS=$PROPS bash bench/submit-hold.sh${*:+ ...}\`: dpsbatch submit --hold of $VISITS visits, $REPS rounds"
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem=$(awk '/^MemTotal:/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo)
os=$( (. /etc/os-release && echo "$PRETTY_NAME") 2>/dev/null || uname -sr)
echo "Machine: $(nproc) cores ($cpu), $mem, $os, $(go version | cut -d' ' -f3)"
echo "Load average: $loadBefore before, $loadAfter after"
echo
echo "| binary | seconds | peak RSS MiB |"
echo "|---|---|---|"
for ((i = 0; i < ${#bins[@]}; i++)); do
	label=${bins[$i]}
	[[ $label != "$tmp/dpsbatch" ]] || label="this checkout"
	awk -v i="$i" -v label="$label" '
		function sortv(a, n,   x, y, t) { for (x = 2; x <= n; x++) { t = a[x]; for (y = x - 1; y >= 1 && a[y] > t; y--) a[y + 1] = a[y]; a[y + 1] = t } }
		function median(a, n) { return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
		$1 == i { s[++n] = $2; m[n] = $3 / 1024 }
		END {
			sortv(s, n); sortv(m, n)
			printf "| %s | %.2f [%.2f-%.2f] | %.0f [%.0f-%.0f] |\n", label, median(s, n), s[1], s[n], median(m, n), m[1], m[n]
		}' "$samples"
done
