#!/usr/bin/env bash
# bench/nightly.sh: the nightly example's throughput with 1, 2 and 3 visits
# in flight in its association pipeline, side by side in one sitting.
#
#   bash bench/nightly.sh [VISITS]      (VISITS detect visits, default 24)
#
# Each run is `dpsbatch local examples/nightly/production.yaml` (detect,
# mops and association as one production on this machine, no Slurm) over a
# copy of the example whose association policy has `in_flight: K` and whose
# detect visit list is VISITS visits long (the example's 6 fields repeated
# under new visit IDs, so every association result has a known answer; the
# script checks only that every pipeline ended with every visit done).
# Measured per run from the files the pipelines write, by visit:
#   throughput  association's visits per second, from the first of
#               detect's outputs to the last of association's
#   detect      detect's own visits per second (from its first output to
#               its last): the most association can take
#   lag growth  how much longer association's output of the last visit came
#               after detect's output of it than for the first visit: about
#               0 when association keeps up, growing with VISITS when not
# Each of REPS rounds (default 3) runs K = 1, 2, 3, rotating which goes
# first. Printed per K: the median [min-max] over rounds of the three
# measures, and the throughput's ratio to that of the first K of KS.
#
# Environment: REPS (3), KS ("1 2 3"), DPSBATCH (a dpsbatch binary; default:
# built from this checkout). Temporary files go to one mktemp directory,
# removed on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
VISITS=${1:-24}
REPS=${REPS:-3}
KS=${KS:-1 2 3}
DPSBATCH=${DPSBATCH:-}

NAME=nightly.sh
. bench/lib.sh
positive_int VISITS "$VISITS" "usage: bash bench/nightly.sh [VISITS]"
positive_int REPS "$REPS"
[[ $KS =~ ^[1-9][0-9]*( [1-9][0-9]*)*$ ]] || die "KS must be in_flight values separated by blanks, got \"$KS\""
check_dpsbatch_env

bench_tmp nightly
trap 'rm -rf "$tmp"' EXIT
dpsbatch_bin

# The example's 6 fields, repeated under visit IDs 5001, 5002, ...
visits=$tmp/visits.csv
awk -F, -v n="$VISITS" '
	NR == 1 { print; next }
	{ row[++k] = $0 }
	END { for (i = 0; i < n; i++) { r = row[i % k + 1]; sub(/^[^,]*/, 5001 + i, r); print r } }' \
	examples/nightly/detect/visits.csv >"$visits"

# one K ROUND: runs the production with association at in_flight K and
# appends "K throughput lag-growth" to $tmp/samples.
one() {
	local k=$1 ex=$tmp/ex-$1-$2 out
	cp -r examples/nightly "$ex"
	cp "$visits" "$ex/detect/visits.csv"
	sed -i "s/^in_flight: [0-9]*/in_flight: $k/" "$ex/association/pipeline.yaml"
	grep -q "^in_flight: $k\b" "$ex/association/pipeline.yaml" || die "no in_flight line in the example's association policy"
	out=$("$bin" local "$ex/production.yaml" --run-dir "$ex/run" 2>&1) || die "K=$k round $2: dpsbatch local failed: $(tail -n 5 <<<"$out")"
	for p in detect mops association; do
		grep -q "pipeline $p: visits: $VISITS run, $VISITS done, 0 failed" <<<"$out" ||
			die "K=$k round $2: pipeline $p did not end with every visit done: $(grep "pipeline $p" <<<"$out")"
	done
	# Each visit's last output of detect and of association (CCDs 1 and 2).
	local d=$ex/run/pipelines v line
	line=$k
	for v in $(tail -n +2 "$visits" | cut -d, -f1); do
		line+=" $(stat -c '%.9Y' "$d/detect/output/$v/"ccd{1,2}-sources.json | sort -n | tail -n 1)"
		line+=" $(stat -c '%.9Y' "$d/association/output/$v/"ccd{1,2}-associated.json | sort -n | tail -n 1)"
	done
	awk -v n="$VISITS" '{
		first = $2; dlast = $2; last = $(2 * n + 1)
		for (i = 2; i <= 2 * n + 1; i += 2) { if ($i < first) first = $i; if ($i > dlast) dlast = $i }
		for (i = 3; i <= 2 * n + 1; i += 2) if ($i > last) last = $i
		printf "%s %.4f %.3f %.4f\n", $1, n / (last - first), ($(2 * n + 1) - $(2 * n)) - ($3 - $2), (n - 1) / (dlast - first)
	}' <<<"$line" | tee -a "$tmp/samples" |
		awk -v r="$2" '{ printf "  round %d in_flight %d: %.3f visits/s (detect %.3f), lag grew %.2f s\n", r, $1, $2, $4, $3 }' >&2
	rm -rf "$ex"
}

echo "The nightly example with dpsbatch local: $VISITS detect visits, association at in_flight $KS, $REPS rounds"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME"); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$tmp/samples"
read -ra ks <<<"$KS"
for ((r = 1; r <= REPS; r++)); do
	for ((i = 0; i < ${#ks[@]}; i++)); do
		one "${ks[(i + r - 1) % ${#ks[@]}]}" "$r"
	done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| in_flight | association, visits/s | lag growth over the night, s | throughput / in_flight ${ks[0]}'s | detect, visits/s (the ceiling) |"
echo "|---|---|---|---|---|"
awk -v order="$KS" '
	function med(a, k,    i, j, t) {
		for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
		return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
	}
	{ c[$1]++; tp[$1, c[$1]] = $2; lg[$1, c[$1]] = $3; dt[$1, c[$1]] = $4 }
	END {
		n = split(order, ks, " ")
		for (i = 1; i <= n; i++) {
			k = ks[i]
			for (j = 1; j <= c[k]; j++) { a[j] = tp[k, j]; b[j] = lg[k, j]; d[j] = dt[k, j] }
			mt[k] = med(a, c[k]); tlo[k] = a[1]; thi[k] = a[c[k]]
			ml[k] = med(b, c[k]); llo[k] = b[1]; lhi[k] = b[c[k]]
			md[k] = med(d, c[k]); dlo[k] = d[1]; dhi[k] = d[c[k]]
		}
		for (i = 1; i <= n; i++) {
			k = ks[i]
			printf "| %s | %.3f [%.3f-%.3f] | %.2f [%.2f-%.2f] | %.2fx | %.3f [%.3f-%.3f] |\n", k, mt[k], tlo[k], thi[k], ml[k], llo[k], lhi[k], mt[k] / mt[ks[1]], md[k], dlo[k], dhi[k]
		}
	}' "$tmp/samples"
