#!/usr/bin/env bash
# bench/run-mpi.sh: the harness's stage loop on MPI, next to a bare C loop
# that moves the same messages with the same ranks, in the same run.
#
#   bash bench/run-mpi.sh
#
# Builds bench/mpistages (go build -tags mpi) and bench/mpiloop (mpicc),
# then for each rank count runs, alternately and REPS times each:
#   C        bench/mpiloop: per stage one MPI_Bcast (a visit's first is the
#            visit's message, which begins it) and one MPI_Gather, all of
#            the communicator's 256-byte slots
#   Go comm  bench/mpistages -raw: the same calls through harness/comm's MPI
#            communicator, with nothing else
#   harness  bench/mpistages: harness.Run over VISITS visits of STAGES no-op
#            stages on every rank, timed on rank 0 by its Recorder
# Every figure is ns per stage: total time / (VISITS*STAGES); the three
# move the same messages.
# Each cell is the median of REPS runs with [min-max]; harness/C is the
# ratio of the medians.
#
# Launchers: mpirun --allow-run-as-root --oversubscribe -np R, and also
# srun -N1 -n R --mpi=pmix when sinfo answers (scripts/cluster.sh start).
# OMPI_MCA_mpi_yield_when_idle=YIELD (default 1) for every program: with
# more ranks than cores, busy polling starves the working ranks; YIELD=0
# times the busy-polling floor (only where every rank has a core).
#
# Environment: VISITS (default 20000), STAGES (10), REPS (3), RANKS ("2 4"),
# SRUN (auto: when sinfo answers; 0: never; 1: always), YIELD (1), QUIET
# (30: before each run, wait up to that many seconds for half a second in
# which the machine's CPUs were at least 80% idle; 0: do not wait).
# DPSBATCH_MPI_THREAD (single, the default, or funneled; see comm.NewMPI)
# and GOMAXPROCS, when set, reach every rank.
set -euo pipefail

cd "$(dirname "$0")/.."
VISITS=${VISITS:-20000}
STAGES=${STAGES:-10}
REPS=${REPS:-3}
RANKS=${RANKS:-"2 4"}
SRUN=${SRUN:-auto}
YIELD=${YIELD:-1}
QUIET=${QUIET:-30}

missing=()
for t in go mpicc mpirun; do
	command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
if ((${#missing[@]} > 0)); then
	echo "run-mpi.sh: missing: ${missing[*]} (apt-get install -y openmpi-bin libopenmpi-dev pkg-config gcc)" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -tags mpi -o "$tmp/mpistages" ./bench/mpistages
mpicc -O2 -Wall -o "$tmp/mpiloop" bench/mpiloop/mpiloop.c
export OMPI_MCA_mpi_yield_when_idle=$YIELD

# mpirun passes on only the variables named with -x.
xenv=()
for v in DPSBATCH_MPI_THREAD GOMAXPROCS; do
	if [[ -n ${!v+set} ]]; then xenv+=(-x "$v"); fi
done

launchers=(mpirun)
case $SRUN in
auto) if command -v sinfo >/dev/null 2>&1 && timeout 5 sinfo -h >/dev/null 2>&1; then launchers+=(srun); fi ;;
1) launchers+=(srun) ;;
esac

# idle: the percentage of CPU time the machine was idle over half a second.
idle() {
	local a b c d e f g h s1 i1
	read -r _ a b c d e f g h _ </proc/stat
	s1=$((a + b + c + d + e + f + g + h)) i1=$((d + e))
	sleep 0.5
	read -r _ a b c d e f g h _ </proc/stat
	echo $((100 * (d + e - i1) / (a + b + c + d + e + f + g + h - s1 + 1)))
}

# await_quiet: waits (up to QUIET seconds) until the other work on a shared
# machine leaves it mostly idle, so that a run starts in a quiet moment.
await_quiet() {
	local i
	[[ -r /proc/stat ]] || return 0
	for ((i = 0; i < 2 * QUIET; i++)); do
		(($(idle) >= 80)) && return 0
	done
}

# launch LAUNCHER RANKS PROGRAM ARGS...: runs one program on RANKS ranks
# and prints the two figures of its rank 0: ns/stage over the whole run,
# and the median block's (block-ns/stage).
launch() {
	local how=$1 np=$2
	shift 2
	local out
	await_quiet
	case $how in
	mpirun) out=$(mpirun --allow-run-as-root --oversubscribe ${xenv[@]+"${xenv[@]}"} -np "$np" "$@") ;;
	srun) out=$(timeout 300 srun -N1 -n "$np" --mpi=pmix "$@") ;;
	esac
	local ns bns
	ns=$(sed -n 's/.* ns\/stage=\([0-9]*\).*/\1/p' <<<"$out" | head -n 1)
	bns=$(sed -n 's/.* block-ns\/stage=\([0-9]*\).*/\1/p' <<<"$out" | head -n 1)
	if [[ -z $ns || -z $bns ]]; then
		echo "run-mpi.sh: no figure from $how -np $np $*: $out" >&2
		return 1
	fi
	echo "$ns $bns"
}

# row LAUNCHER RANKS FIGURE C RAW HARNESS: one line of the table, each of
# C, RAW and HARNESS a space-separated list of the runs' figures.
row() {
	local c raw h
	read -ra c <<<"$4"
	read -ra raw <<<"$5"
	read -ra h <<<"$6"
	ratio=$(awk -v a="$(median "${h[@]}")" -v b="$(median "${c[@]}")" 'BEGIN { printf "%.2fx", a / b }')
	printf '%-8s %-6s %-7s %-22s %-22s %-22s %s\n' "$1" "$2" "$3" "$(stats "${c[@]}")" "$(stats "${raw[@]}")" "$(stats "${h[@]}")" "$ratio"
}

# stats N...: "median [min-max]"
stats() {
	printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {
		m = NR % 2 ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2
		printf "%d [%d-%d]", m, v[1], v[NR] }'
}

median() {
	printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END { print NR % 2 ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2 }'
}

status=0
echo "Stage loop on MPI: $VISITS visits x $STAGES no-op stages (+ $((VISITS / 100)) warm-up visits), $REPS runs each, $(nproc) cores"
echo "ns per stage, median [min-max] of the runs; the same messages in every column (one Bcast and one Gather a stage)"
echo "figure: run = each run's whole timed part; blocks = each run's median of 20 blocks (bursts of other work left out)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); OMPI_MCA_mpi_yield_when_idle=$YIELD DPSBATCH_MPI_THREAD=${DPSBATCH_MPI_THREAD-unset} GOMAXPROCS=${GOMAXPROCS-unset}"
printf '%-8s %-6s %-7s %-22s %-22s %-22s %s\n' launcher ranks figure "C (bare MPI)" "Go comm alone" harness harness/C
for how in "${launchers[@]}"; do
	for np in $RANKS; do
		c=() raw=() h=() bc=() braw=() bh=() ok=1
		for ((i = 0; i < REPS && ok; i++)); do
			if x=$(launch "$how" "$np" "$tmp/mpiloop" "$VISITS" "$STAGES") &&
				y=$(launch "$how" "$np" "$tmp/mpistages" -raw -visits "$VISITS" -stages "$STAGES") &&
				z=$(launch "$how" "$np" "$tmp/mpistages" -visits "$VISITS" -stages "$STAGES"); then
				c+=("${x% *}") raw+=("${y% *}") h+=("${z% *}")
				bc+=("${x#* }") braw+=("${y#* }") bh+=("${z#* }")
			else
				ok=0
			fi
		done
		if ((!ok)); then
			printf '%-8s %-6s failed (see above)\n' "$how" "$np"
			status=1
			continue
		fi
		row "$how" "$np" run "${c[*]}" "${raw[*]}" "${h[*]}"
		row "$how" "$np" blocks "${bc[*]}" "${braw[*]}" "${bh[*]}"
	done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
