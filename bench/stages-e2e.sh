#!/usr/bin/env bash
# bench/stages-e2e.sh: where to put a pipeline author's work, end to end on
# the local Slurm cluster (scripts/cluster.sh start): N visits of 4 data IDs
# (CCDs 1-4, two per slice on 2 slices) through one `dpsbatch submit` job
# each, for one stage of each kind, timed from just before submit until
# `dpsbatch wait` returns with the run done.
#
#   bash bench/stages-e2e.sh [N]        (N visits, default 1000)
#
# The kinds, each one stage in an otherwise identical pipeline:
#   output  the built-in output stage writing each data ID's file
#           (atomically: temporary file, fsync, rename)
#   worker  the worker stage: a Python function served by
#           python/dpsworker.py, one process per slice for the run, asked
#           once per data ID over a pipe
#   exec    the exec stage starting `sh -c 'echo ...'` per data ID (the
#           cheapest program start; a Python program per data ID costs
#           ten times more here: BENCHMARKS.md, "Where to put the work")
# Each of REPS rounds (default 3) runs every kind once, rotating which goes
# first. Every run must end done with N visits and 4N data IDs done
# (`dpsbatch status --json`), else the script stops. Printed per kind: the
# median [min-max] over rounds of the whole time (submit to wait's return)
# and of the visits alone by the run's own record (rank 0's start to its
# end), in ms per visit, and the ratio of each kind's median to output's.
#
# Environment: REPS (3), PARTITION (debug), PYTHON (/usr/bin/python3, else
# python3 from PATH: a shim that starts slowly adds to the worker's start,
# once per run), DPSBATCH (a dpsbatch binary; default: built from this checkout).
# Temporary files go to one mktemp directory (world-readable: the simulated
# nodes' tasks read it), removed on exit; a run still live is cancelled.
set -euo pipefail

cd "$(dirname "$0")/.."
N=${1:-1000}
REPS=${REPS:-3}
PARTITION=${PARTITION:-debug}
PYTHON=${PYTHON:-$(command -v /usr/bin/python3 || echo python3)}
DPSBATCH=${DPSBATCH:-}

NAME=stages-e2e.sh
. bench/lib.sh

positive_int N "$N" "usage: bash bench/stages-e2e.sh [N]"
positive_int REPS "$REPS"
check_dpsbatch_env
need_tools go sinfo "$PYTHON"
need_partition "$PARTITION"
python=$(command -v "$PYTHON")

bench_tmp stages
live_run=""
cleanup() {
	local status=$?
	trap - EXIT INT TERM
	[[ -z $live_run ]] || "$bin" cancel --site "$tmp/site.yaml" "$live_run" >/dev/null 2>&1 || true
	rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dpsbatch_bin
cp python/dpsworker.py "$tmp/"
write_site "$PARTITION"
cat >"$tmp/work.py" <<'EOF'
import dpsworker

def process(inputs, data_id, visit, params):
    return {"v": int(data_id["ccd"]) + 1}

dpsworker.serve(process)
EOF

stage_output='{name: s, type: output, settings: {files: {ccd: "{output}/ccd{ccd}.json"}}}'
stage_worker="{name: s, type: worker, settings: {command: [\"$python\", \"$tmp/work.py\"], env: {PYTHONPATH: \"$tmp\"}, produces: [v]}}"
stage_exec="{name: s, type: exec, settings: {command: [sh, -c, 'echo \"{{\\\"v\\\": \$1}}\"', sh, \"{ccd}\"], produces: [v]}}"
kinds=(output worker exec)
for k in "${kinds[@]}"; do
	v=stage_$k
	cat >"$tmp/$k.yaml" <<EOF
pipeline: stages-$k
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: 4}}
locations: {output: "output/{visit}"}
events: {trigger: {topic: visits}}
stages:
  - ${!v}
EOF
	"$bin" validate "$tmp/$k.yaml" >/dev/null || die "$k: the pipeline does not validate"
done
{
	echo visitId
	for ((i = 1; i <= N; i++)); do printf 'v%05d\n' "$i"; done
} >"$tmp/visits.csv"

# elapsed START END: seconds between two $EPOCHREALTIME readings.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# one KIND ROUND: submits the kind's run, waits for it, checks it is done,
# and appends "KIND whole visits" (seconds) to $tmp/samples.
one() {
	local kind=$1 t0 t1 st flat
	local name=$kind-$2
	t0=$EPOCHREALTIME
	"$bin" submit "$tmp/$kind.yaml" --visits "$tmp/visits.csv" --site "$tmp/site.yaml" --name "$name" >/dev/null
	live_run=$name
	"$bin" wait --site "$tmp/site.yaml" "$name" >/dev/null || die "$kind round $2: dpsbatch wait says the run did not end done"
	t1=$EPOCHREALTIME
	live_run=""
	st=$("$bin" status --json --site "$tmp/site.yaml" "$name")
	flat=$(tr -d ' \n' <<<"$st")
	[[ $flat == *'"outcome":"done"'* && $flat == *"\"done\":$N,"* && $flat == *"\"dataIds\":{\"done\":$((4 * N))}"* ]] ||
		die "$kind round $2: not every visit and data ID done: $st"
	local started ended
	[[ $flat =~ \"started\":\"([^\"]+)\" ]] || die "$kind round $2: status names no start of the job: $st"
	started=$(date -d "${BASH_REMATCH[1]}" +%s.%N)
	[[ $flat =~ \"ended\":\"([^\"]+)\" ]] || die "$kind round $2: status names no end of the job: $st"
	ended=$(date -d "${BASH_REMATCH[1]}" +%s.%N)
	echo "$kind $(elapsed "$t0" "$t1") $(elapsed "$started" "$ended")" >>"$tmp/samples"
	printf '  round %d %-7s %8s s whole, %8s s visits\n' "$2" "$kind" "$(elapsed "$t0" "$t1")" "$(elapsed "$started" "$ended")" >&2
	rm -rf "$tmp/runs/$name"
}

echo "Stage kinds end to end on the local cluster: $N visits x 4 data IDs, 2 slices + the Pipeline on one node, $REPS rounds"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME"); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$tmp/samples"
for ((r = 1; r <= REPS; r++)); do
	for ((i = 0; i < ${#kinds[@]}; i++)); do
		one "${kinds[(i + r - 1) % ${#kinds[@]}]}" "$r"
	done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| stage | whole run, ms/visit | visits alone, ms/visit | whole / output's | visits / output's |"
echo "|---|---|---|---|---|"
awk -v n="$N" -v order="${kinds[*]}" '
	function med(a, k,    i, j, t) {
		for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
		return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
	}
	{ c[$1]++; w[$1, c[$1]] = $2; v[$1, c[$1]] = $3 }
	END {
		k = split(order, names, " ")
		for (i = 1; i <= k; i++) {
			m = names[i]
			for (j = 1; j <= c[m]; j++) { ww[j] = w[m, j]; vv[j] = v[m, j] }
			mw[m] = med(ww, c[m]); lo[m] = ww[1]; hi[m] = ww[c[m]]
			mv[m] = med(vv, c[m]); vlo[m] = vv[1]; vhi[m] = vv[c[m]]
		}
		for (i = 1; i <= k; i++) {
			m = names[i]
			printf "| %s | %.2f [%.2f-%.2f] | %.2f [%.2f-%.2f] | %.2fx | %.2fx |\n", m,
				1000 * mw[m] / n, 1000 * lo[m] / n, 1000 * hi[m] / n,
				1000 * mv[m] / n, 1000 * vlo[m] / n, 1000 * vhi[m] / n,
				mw[m] / mw["output"], mv[m] / mv["output"]
		}
	}' "$tmp/samples"
