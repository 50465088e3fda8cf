# bench/lib.sh: what the benchmark scripts share. Sourced, not run: the
# sourcing script sets NAME (its name in messages) first, and runs from
# the checkout's top directory.

# die prints NAME: MESSAGE on stderr and exits 1.
die() {
	echo "$NAME: $*" >&2
	exit 1
}

# positive_int VAR VALUE [HINT]: dies unless VALUE is a positive integer.
positive_int() {
	[[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got \"$2\"${3:+ ($3)}"
}

# check_dpsbatch_env: DPSBATCH, when set, must name an executable.
check_dpsbatch_env() {
	[[ -z ${DPSBATCH:-} || -x $DPSBATCH ]] || die "DPSBATCH must name an executable dpsbatch binary, got \"$DPSBATCH\""
}

# need_tools TOOL...: dies naming the tools that are not on PATH.
need_tools() {
	local missing=() t
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || missing+=("$t")
	done
	((${#missing[@]} == 0)) || die "missing: ${missing[*]} (bash scripts/cluster.sh start installs and starts the local cluster)"
}

# need_partition PARTITION: dies unless the Slurm cluster answers and
# PARTITION is up.
need_partition() {
	local avail
	avail=$(timeout 10 sinfo -h -p "$1" -o '%a' 2>/dev/null | head -n 1) ||
		die "the Slurm cluster does not answer (sinfo): bash scripts/cluster.sh start"
	[[ $avail == up ]] || die "partition $1 is not up on this cluster (sinfo says \"$avail\"): bash scripts/cluster.sh start"
}

# bench_tmp KIND: sets tmp to a new temporary directory, world-readable
# (the simulated nodes' tasks read it). Site files, policies and job
# scripts name paths under it unquoted, so a path with a blank, a quote, #
# or a colon is refused.
bench_tmp() {
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/dpsbatch-$1.XXXXXX")
	chmod 755 "$tmp"
	[[ $tmp != *[[:space:]\'\"#:]* ]] || {
		rm -rf "$tmp"
		die "the temporary directory $tmp holds a blank, quote, # or colon: set TMPDIR to a plainer one"
	}
}

# dpsbatch_bin: sets bin to DPSBATCH, or to a dpsbatch built from this
# checkout into $tmp.
dpsbatch_bin() {
	bin=${DPSBATCH:-}
	if [[ -z $bin ]]; then
		go build -o "$tmp/dpsbatch" ./cmd/dpsbatch
		bin=$tmp/dpsbatch
	fi
}

# write_site PARTITION: writes $tmp/site.yaml, a site of the local cluster
# with PARTITION (4 CPUs and 2000M a node, nodes n[1-4]), runs under
# $tmp/runs, started by srun with the TCP communicator.
write_site() {
	cat >"$tmp/site.yaml" <<SITE
runs_root: $tmp/runs
partitions:
  - name: $1
    default: true
    cpus_per_node: 4
    memory: 2000M
    node_list: n[1-4]
    max_time: infinite
launcher: {kind: srun, flags: [--mpi=none], comm: tcp}
SITE
}
