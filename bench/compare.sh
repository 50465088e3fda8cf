#!/usr/bin/env bash
# bench/compare.sh: the batch and events benchmarks of two versions of
# dpsbatch, A and B, run alternately in one sitting, with each figure's
# median [min-max] per side, the ratio B/A of the medians and whether B is
# within 10% of A. The machine is shared and noisy, so figures taken in
# different sittings are not compared: this script takes both sides' now.
#
#   bash bench/compare.sh BASE [HEAD]
#
# A is the commit BASE; B is the commit HEAD, or, without it, this working
# tree (uncommitted changes included). A commit is checked out into a
# temporary detached git worktree, removed on exit (also on failure, Ctrl-C
# or SIGTERM). For each side it builds, from that side's sources, the test
# binaries of jobs, state and events (`go test -c`) and the dpsbatch binary.
#
# The benchmarks, by unit name (UNITS picks them):
#   plan    batch   jobs BenchmarkPlanRun10kNodes1MIDs (-test.benchtime 3x):
#                   planning a run of a million data IDs on 10,000 nodes
#   submit  batch   one `dpsbatch submit` job of SUBMIT visits (default 200)
#                   of a trivial stage on the local Slurm cluster, with that
#                   side's binary, timed until the job has ended and the run
#                   is done: side A of bench/throughput.sh (this checkout's,
#                   PERVISIT=0 DPSBATCH=binary). Reported: "s", the whole
#                   time, and "s-visits", the visits alone by the run's own
#                   record. Left out when `sinfo` does not answer.
#   nats    events  events BenchmarkNATSThroughput (-test.benchtime 2x):
#                   10,000 events published through an embedded NATS
#                   server while one subscription receives them
#   follow  events  state BenchmarkEventsFollow (-test.benchtime 5000x):
#                   `dpsbatch events --follow`'s query over 200,000 events
#   1m      batch   jobs BenchmarkStatus1M and BenchmarkResumePlanning1M
#                   (-test.benchtime 2x). NOT in the default: each process
#                   first builds a run of a million visits, 3 to 5 minutes
#                   on 2 cores, so this unit runs one process per side (A,
#                   then B) with -test.count REPS instead of REPS processes.
# Each round runs every unit once on each side, alternating which side goes
# first (A B, then B A, ...), REPS rounds (default 5). Go benchmark lines
# are parsed for every metric they report (ns/op, B/op, allocs/op and the
# benchmark's own, less those that restate ns/op in another unit).
#
# Output (stdout): the command, both sides' commits, the machine, the load
# average, and a markdown table: per benchmark and metric, A's and B's
# median [min-max], B/A (of the medians), B/A by round (the median [min-max]
# of the ratios of the two samples taken side by side in each round: less
# swayed by the load changing between rounds), and on the benchmark's main
# figure (time per op, or seconds for submit) whether B is within 10% of A
# by the ratio of the medians; then one line per benchmark. Progress goes to stderr. A run of the defaults takes about 8
# minutes here. To look again at one benchmark:
#   UNITS=plan REPS=9 bash bench/compare.sh BASE
#
# Environment: UNITS ("plan submit nats follow"), REPS (5), SUBMIT (200;
# 0 leaves submit out), RAW (a file to write every sample to, as
# tab-separated unit, benchmark, metric, side, round, value). throughput.sh's
# STAGE, SLICES, PARTITION and POLL pass through to the submit unit.
set -euo pipefail

cd "$(dirname "$0")/.."
# The settings given, for the report's command line.
given=$(for v in UNITS REPS SUBMIT STAGE SLICES PARTITION POLL; do [[ -z ${!v+x} ]] || printf '%s=%q ' "$v" "${!v}"; done)
UNITS=${UNITS:-plan submit nats follow}
REPS=${REPS:-5}
SUBMIT=${SUBMIT:-200}
RAW=${RAW:-}

die() {
	echo "compare.sh: $*" >&2
	exit 1
}

(($# == 1 || $# == 2)) || die "usage: bash bench/compare.sh BASE [HEAD] (A is BASE, B is HEAD or this working tree)"
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer, got \"$REPS\""
[[ $SUBMIT =~ ^[0-9]+$ ]] || die "SUBMIT must be a number of visits (0 leaves submit out), got \"$SUBMIT\""
for u in $UNITS; do
	case $u in
	plan | submit | nats | follow | 1m) ;;
	*) die "UNITS: unknown unit \"$u\" (known: plan submit nats follow 1m)" ;;
	esac
done
command -v go >/dev/null || die "go is not on PATH"
baseRev=$(git rev-parse --verify --quiet "$1^{commit}") || die "BASE: \"$1\" is not a commit here"
headRev=""
if (($# == 2)); then
	headRev=$(git rev-parse --verify --quiet "$2^{commit}") || die "HEAD: \"$2\" is not a commit here"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dpsbatch-compare.XXXXXX")
chmod 755 "$tmp" # the simulated nodes' tasks read the binaries
child=""
worktrees=()
cleanup() {
	local status=$?
	trap - EXIT INT TERM
	if [[ -n $child ]]; then
		# throughput.sh cancels its own job on TERM.
		kill -TERM "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
	fi
	local w
	for w in "${worktrees[@]}"; do
		git worktree remove --force "$w" 2>/dev/null || true
	done
	rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# checkout REV DIR: a detached worktree of REV at DIR, removed on exit.
checkout() {
	git worktree add --quiet --detach "$2" "$1" >&2
	worktrees+=("$2")
}

# build SIDE SRC: the test binaries and dpsbatch of the sources in SRC.
build() {
	local side=$1 src=$2 pkg
	echo "building $side from $src" >&2
	mkdir -p "$tmp/$side"
	for pkg in jobs state events; do
		(cd "$src" && go test -c -o "$tmp/$side/$pkg.test" "./$pkg")
	done
	(cd "$src" && go build -o "$tmp/$side/dpsbatch" ./cmd/dpsbatch)
	src_of[$side]=$src
}

declare -A src_of
checkout "$baseRev" "$tmp/src-A"
build A "$tmp/src-A"
labelA=$(git rev-parse --short "$baseRev")
if [[ -n $headRev ]]; then
	checkout "$headRev" "$tmp/src-B"
	build B "$tmp/src-B"
	labelB=$(git rev-parse --short "$headRev")
else
	build B "$PWD"
	labelB="$(git rev-parse --short HEAD) (working tree$([[ -z $(git status --porcelain) ]] || echo ", with uncommitted changes"))"
fi

if [[ " $UNITS " == *" submit "* ]]; then
	if ((SUBMIT == 0)); then
		UNITS=${UNITS//submit/}
	elif ! command -v sinfo >/dev/null || ! timeout 10 sinfo -h >/dev/null 2>&1; then
		echo "compare.sh: the Slurm cluster does not answer (sinfo): submit left out" >&2
		UNITS=${UNITS//submit/}
	fi
fi

samples=$tmp/samples # unit, benchmark, metric, side, round, value
: >"$samples"
loads=() # the 1-minute load average before each measurement

# parse_go UNIT SIDE ROUND LOG: the benchmark lines of a Go test binary's
# output as samples; a benchmark that failed as a FAIL sample.
parse_go() {
	awk -v unit="$1" -v side="$2" -v round="$3" '
		BEGIN { split("ms/plan ms/status ms/resume µs/call µs/event nodes", s, " "); for (i in s) skip[s[i]] = 1 }
		/^Benchmark/ && NF >= 4 {
			name = substr($1, 10); sub(/-[0-9]+$/, "", name)
			for (i = 3; i < NF; i += 2) if (!($(i + 1) in skip)) print unit "\t" name "\t" $(i + 1) "\t" side "\t" round "\t" $i
		}
		/^--- FAIL: Benchmark/ { name = substr($3, 10); sub(/-[0-9]+$/, "", name); print unit "\t" name "\tns/op\t" side "\t" round "\tFAIL" }' "$4" >>"$samples"
}

# measure UNIT SIDE ROUND: runs one unit on one side and records its samples.
measure() {
	local unit=$1 side=$2 round=$3 dir=$tmp/$2 log=$tmp/log rc=0
	loads+=("$(cut -d' ' -f1 /proc/loadavg)")
	echo "round $round, $unit, side $side" >&2
	case $unit in
	plan) run_go jobs '^BenchmarkPlanRun10kNodes1MIDs$' 3x 1 ;;
	1m) run_go jobs '^Benchmark(Status1M|ResumePlanning1M)$' 2x "$REPS" ;;
	nats) run_go events '^BenchmarkNATSThroughput$' 2x 1 ;;
	follow) run_go state '^BenchmarkEventsFollow$' 5000x 1 ;;
	submit)
		in_child "$PWD" env DPSBATCH="$dir/dpsbatch" PERVISIT=0 bash bench/throughput.sh "$SUBMIT" || rc=$?
		parse_submit
		;;
	esac
	if ((rc != 0)); then
		echo "compare.sh: $unit on side $side failed (exit $rc); its output ends:" >&2
		tail -n 15 "$log" >&2
	fi
}

# run_go PKG PATTERN BENCHTIME COUNT (in measure): one test binary's benchmarks.
run_go() {
	in_child "${src_of[$side]}/$1" "$dir/$1.test" -test.run '^$' -test.bench "$2" \
		-test.benchtime "$3" -test.count "$4" || rc=$?
	parse_go "$unit" "$side" "$round" "$log"
}

# parse_submit (in measure): throughput.sh's side A lines as samples.
parse_submit() {
	local name="Submit${SUBMIT}Visits" s v
	s=$(sed -n 's/^A  one dpsbatch job .* visits done in \([0-9.]*\) s$/\1/p' "$log")
	v=$(sed -n 's/^   A by its own record: .* visits \([0-9.]*\) s, .*/\1/p' "$log")
	[[ -n $s ]] || s=FAIL
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$unit" "$name" s "$side" "$round" "$s" >>"$samples"
	[[ -z $v ]] || printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$unit" "$name" s-visits "$side" "$round" "$v" >>"$samples"
}

# in_child DIR CMD...: runs CMD in DIR with its output in $log, as a child
# that cleanup can stop.
in_child() {
	(cd "$1" && shift && exec "$@") >"$log" 2>&1 &
	child=$!
	local rc=0
	wait "$child" || rc=$?
	child=""
	return "$rc"
}

loadBefore=$(cut -d' ' -f1-3 /proc/loadavg)
started=$SECONDS
for ((round = 1; round <= REPS; round++)); do
	sides="A B"
	((round % 2 == 1)) || sides="B A"
	for unit in $UNITS; do
		[[ $unit != 1m ]] || ((round == 1)) || continue
		for side in $sides; do
			measure "$unit" "$side" "$round"
		done
	done
done
loadAfter=$(cut -d' ' -f1-3 /proc/loadavg)
[[ -z $RAW ]] || cp "$samples" "$RAW"

# The report.
echo "Command: \`${given}bash bench/compare.sh $*\` ($REPS rounds, A and B alternating; $((SECONDS - started)) s)"
echo
echo "A = $labelA, B = $labelB"
echo
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem=$(awk '/^MemTotal:/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo)
os=$( (. /etc/os-release && echo "$PRETTY_NAME") 2>/dev/null || uname -sr)
slurm=$(sinfo --version 2>/dev/null || echo "no Slurm")
echo "Machine: $(nproc) cores ($cpu), $mem, $os, $(go version | cut -d' ' -f3), $slurm"
lo=$(printf '%s\n' "${loads[@]}" | sort -g | head -n 1)
hi=$(printf '%s\n' "${loads[@]}" | sort -g | tail -n 1)
echo "Load average: $loadBefore before, $loadAfter after; 1-minute load $lo to $hi at the start of the measurements"
echo
awk -F'\t' -v la="A ($labelA)" -v lb="B (${labelB%% *})" '
	function sortv(a, n,   i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
	function median(a, n) { return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
	function num(v,   s, r, neg) {
		if (v >= 1000) { s = sprintf("%.0f", v); r = ""; while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) } return s r }
		if (v >= 100) return sprintf("%.0f", v)
		if (v >= 10) return sprintf("%.1f", v)
		return sprintf("%.2f", v)
	}
	# stats KEY: "median [min-max]" of the samples of KEY, scaled by div; sets med.
	function stats(key, div,   n, a, i, parts) {
		n = split(vals[key], parts, " "); if (n == 0 || fails[key]) { med = ""; return fails[key] ? "failed" : "-" }
		for (i = 1; i <= n; i++) a[i] = parts[i] / div
		sortv(a, n); med = median(a, n)
		return num(med) " [" num(a[1]) "-" num(a[n]) "]" (n < 3 ? " (" n " sample" (n > 1 ? "s" : "") ")" : "")
	}
	# paired KEY: "median [min-max]" of the ratios B/A of the samples taken
	# side by side (the i-th of A and the i-th of B are of the same round).
	function paired(key,   na, nb, pa, pb, n, a, i) {
		if (fails[key SUBSEP "A"] || fails[key SUBSEP "B"]) return ""
		na = split(vals[key SUBSEP "A"], pa, " "); nb = split(vals[key SUBSEP "B"], pb, " ")
		n = na < nb ? na : nb
		for (i = 1; i <= n; i++) { if (pa[i] <= 0) return ""; a[i] = pb[i] / pa[i] }
		if (n == 0) return ""
		sortv(a, n)
		return sprintf("%.2f [%.2f-%.2f]", median(a, n), a[1], a[n])
	}
	{ key = $2 SUBSEP $3; if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
	  k = key SUBSEP $4; if ($6 == "FAIL") fails[k] = 1; else vals[k] = vals[k] " " $6 }
	END {
		print "| benchmark | metric | " la " | " lb " | B/A | B/A by round | B within 10% of A |"
		print "|---|---|---|---|---|---|---|"
		for (i = 1; i <= nk; i++) {
			split(order[i], kp, SUBSEP); bench = kp[1]; metric = kp[2]
			div = 1; shown = metric
			if (metric == "ns/op") {
				n = split(vals[order[i] SUBSEP "A"] vals[order[i] SUBSEP "B"], p, " "); m = n ? p[1] : 0
				if (m >= 1e9) { div = 1e9; shown = "s/op" } else if (m >= 1e6) { div = 1e6; shown = "ms/op" } else if (m >= 1e3) { div = 1e3; shown = "µs/op" }
			}
			sa = stats(order[i] SUBSEP "A", div); ma = med
			sb = stats(order[i] SUBSEP "B", div); mb = med
			ratio = ""; verdict = ""
			main = metric == "ns/op" || metric == "s"
			if (ma != "" && mb != "" && ma > 0) {
				r = mb / ma; ratio = sprintf("%.2f", r)
				slow = metric ~ /\/s$/ ? ma / mb : r # for a rate, lower is slower
				slow = sprintf("%.2f", slow) + 0 # judged as shown
				if (main) {
					verdict = slow <= 1.10 ? "yes" : sprintf("**no**: %.0f%% slower", (slow - 1) * 100)
					if (slow < 0.90) verdict = sprintf("yes (%.0f%% faster)", (1 - slow) * 100)
					line[++nl] = bench ": " (slow <= 1.10 ? "B is within 10% of A" : "B is NOT within 10% of A") " (B/A of the medians " ratio ")"
				}
			} else if (main) {
				verdict = "not compared"; line[++nl] = bench ": not compared (a side has no figure: " sa " / " sb ")"
			}
			print "| " bench " | " shown " | " sa " | " sb " | " ratio " | " paired(order[i]) " | " verdict " |"
		}
		print ""
		for (i = 1; i <= nl; i++) print "- " line[i]
	}' "$samples"
