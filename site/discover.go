package site

import (
	"bytes"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/internal/slurmtime"
)

// DiscoverOptions is what Discover cannot learn from the cluster.
type DiscoverOptions struct {
	// RunsRoot is the runs_root to write (required): where runs are
	// created, on a file system every node shares.
	RunsRoot string
	// Cluster is the cluster name to write; "" takes the live cluster's.
	// One that differs from the live cluster's is an error.
	Cluster string
	// Account and QoS are written when set, else left as comments.
	Account, QoS string
}

// Discover writes a starting site file, as commented YAML, describing the
// live partitions: their CPUs and memory per node, node lists, time and
// node limits, and the cluster's default. Partitions that report no nodes
// or no CPUs are left out, with a comment saying so. The keys the cluster
// cannot tell (launcher, setup, sbatch options, broker) are written as
// comments that explain them. What it writes is checked before it is
// returned: Parse accepts it, and Check against the same live list finds
// nothing.
func Discover(live []Live, o DiscoverOptions) ([]byte, error) {
	if o.RunsRoot == "" {
		return nil, &inputError{msg: "site: discover: a runs root is needed", kinds: []error{conf.ErrInvalid}}
	}
	cluster := o.Cluster
	for _, l := range live {
		if l.Cluster == "" {
			continue
		}
		if cluster == "" {
			cluster = l.Cluster
		} else if cluster != l.Cluster {
			return nil, &inputError{msg: fmt.Sprintf("site: discover: the cluster is %q, not %q", l.Cluster, cluster),
				kinds: []error{conf.ErrInvalid}}
		}
	}
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	about := "the cluster"
	if cluster != "" {
		about = "cluster " + cluster
	}
	w("# dpsbatch site file for %s, discovered from the live cluster.", about)
	w("# Review it, then compare it with the cluster at any time with")
	w("# `dpsbatch site check`.")
	w("")
	if cluster != "" {
		w("# The cluster's name (slurm.conf ClusterName), checked against the live one.")
		w("cluster: %s", yamlString(cluster))
	}
	w("# Runs are created by name under this folder, which every node must see.")
	w("runs_root: %s", yamlString(o.RunsRoot))
	w("# Default sbatch --account and --qos of every job.")
	if o.Account != "" {
		w("account: %s", yamlString(o.Account))
	} else {
		w("# account: myproject")
	}
	if o.QoS != "" {
		w("qos: %s", yamlString(o.QoS))
	} else {
		w("# qos: normal")
	}
	w("")
	w("# The partitions dpsbatch may submit to. Nodes are taken as alike: the")
	w("# CPUs and memory are those of the partition's smallest node. A partition")
	w("# may have its own account, qos, constraint and reservation (replacing the")
	w("# site's), setup lines (run after the site's) and env (replacing the site's")
	w("# variables of the same name). gpus_per_node (and gpu_nodes, when not every")
	w("# node has GPUs) let runs ask for GPUs with --gpus-per-slice.")
	w("partitions:")
	seen := map[string]bool{}
	written, defaultDone := 0, false
	shortest := time.Duration(0)
	for _, l := range live {
		if seen[l.Name] {
			continue
		}
		seen[l.Name] = true
		names := liveNodes(&l)
		switch {
		case len(names) == 0:
			w("  # partition %s is left out: the cluster reports no nodes in it", l.Name)
			continue
		case l.CPUsPerNode <= 0:
			w("  # partition %s is left out: the cluster reports no CPUs for its nodes", l.Name)
			continue
		}
		written++
		w("  - name: %s", yamlString(l.Name))
		if l.Default && !defaultDone {
			defaultDone = true
			w("    default: true  # used when a submission names no partition")
		}
		w("    cpus_per_node: %d", l.CPUsPerNode)
		if l.MemoryMB > 0 {
			w("    memory: %s  # per node", formatMemory(l.MemoryMB))
		}
		nodeList := l.NodeList
		if expanded, err := ExpandHostList(nodeList); err != nil || !sameSet(expanded, names) {
			nodeList = CompressHostList(names)
		}
		w("    node_list: %s  # %d nodes", yamlString(nodeList), len(names))
		w("    max_time: %s  # longest job", slurmtime.Format(l.MaxTime))
		if l.MaxNodes > 0 && l.MaxNodes < len(names) {
			w("    max_nodes: %d  # per job", l.MaxNodes)
		}
		discoverGPUs(w, l, names)
		if !l.Up {
			w("    # The partition is down now: `dpsbatch site check` reports it until it is up.")
		}
		discoverSettings(w, l)
		if l.MaxTime > 0 && (shortest == 0 || l.MaxTime < shortest) {
			shortest = l.MaxTime
		}
	}
	if written == 0 {
		return nil, fmt.Errorf("site: discover: the cluster reports no partition with nodes and CPUs (%d partitions)", len(live))
	}
	if !defaultDone && written > 1 {
		w("  # No partition is the cluster's default: submissions must name one, or")
		w("  # add default: true to one of them.")
	}
	w("")
	w("# Slurm signals a job this long before its time limit, so that it stops at")
	w("# a clean visit boundary and `dpsbatch resume` goes on from there. It must")
	w("# be shorter than every partition's max_time.")
	if shortest > 0 && shortest <= DefaultTimeWarning {
		tw := (shortest / 2).Truncate(time.Second)
		if tw <= 0 {
			tw = shortest / 2
		}
		w("time_warning: %v", tw)
	} else {
		w("# time_warning: %v", DefaultTimeWarning)
	}
	w("")
	w(`# How a job starts the pipeline's ranks: kind srun (default) or mpirun,`)
	w(`# extra flags, and the communicator: tcp (pure Go), mpi (Open MPI), or auto`)
	w(`# (mpi under mpirun or with --mpi=pmix*, else tcp).`)
	w(`# launcher:`)
	w(`#   kind: srun`)
	w(`#   flags: [--mpi=pmix]`)
	w(`#   comm: auto`)
	w("")
	w(`# Shell lines every job runs before the launcher, such as module loads.`)
	w(`# setup:`)
	w(`#   - module load openmpi`)
	w(`# Variables every job exports before the launcher.`)
	w(`# env:`)
	w(`#   OMP_NUM_THREADS: "1"`)
	w(`# Node features (sbatch --constraint) and a reservation for every job.`)
	w(`# constraint: intel&ib`)
	w(`# reservation: maint`)
	w("")
	w(`# Extra sbatch options for every job, each --name or --name=value. Those`)
	w(`# dpsbatch sets itself (--nodes, --ntasks, --partition, --time, ...) are refused.`)
	w(`# sbatch_options:`)
	w(`#   - --mem-per-cpu=2G`)
	w("")
	w(`# A replacement for the embedded sbatch template.`)
	w(`# template: ./sbatch.tmpl`)
	w("")
	w(`# The event broker: embedded (default, started inside each job) or an`)
	w(`# external NATS server, with at most one of credentials_file, token_file`)
	w(`# and token_env. A token is never written here.`)
	w(`# broker:`)
	w(`#   kind: external`)
	w(`#   urls: [nats://nats.example.org:4222]`)
	w(`#   token_env: DPSBATCH_NATS_TOKEN`)
	out := b.Bytes()
	s, err := Parse("discovered site file", out)
	if err != nil {
		return nil, fmt.Errorf("site: discover wrote a file it cannot read (a bug): %w\n%s", err, out)
	}
	for _, m := range Check(s, live) {
		if m.Key != "state" { // a partition down now is no fault of the file
			return nil, fmt.Errorf("site: discover wrote a file that does not match the cluster (a bug): %v", m)
		}
	}
	return out, nil
}

// discoverSettings writes, as comments, what the live partition says of
// the settings a partition may have: its nodes' features, and the accounts
// and QoS it takes when not any.
func discoverSettings(w func(string, ...any), l Live) {
	if len(l.Features) > 0 {
		w("    # Its nodes' features: %s. To run only on nodes with some:", strings.Join(l.Features, ", "))
		w("    # constraint: %s", yamlString(l.Features[0]))
	}
	if len(l.AllowedAccounts) > 0 {
		w("    # It takes jobs of accounts %s only:", strings.Join(l.AllowedAccounts, ", "))
		w("    # account: %s", yamlString(l.AllowedAccounts[0]))
	}
	if len(l.AllowedQoS) > 0 {
		w("    # It takes jobs of QoS %s only:", strings.Join(l.AllowedQoS, ", "))
		w("    # qos: %s", yamlString(l.AllowedQoS[0]))
	}
}

// discoverGPUs writes the GPUs of a live partition's nodes (GRES gpu),
// when any has some: the fewest a GPU node has, and which nodes have
// them when not all do.
func discoverGPUs(w func(string, ...any), l Live, names []string) {
	if len(l.GPUs) == 0 {
		return
	}
	have := slices.Sorted(maps.Keys(l.GPUs))
	w("    gpus_per_node: %d  # GRES gpu, the fewest of its GPU nodes", slices.Min(slices.Collect(maps.Values(l.GPUs))))
	if !sameSet(have, names) {
		w("    gpu_nodes: %s  # the nodes that have GPUs", yamlString(CompressHostList(have)))
	}
}

// sameSet reports whether a and b hold the same names.
func sameSet(a, b []string) bool {
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	n := map[string]bool{}
	for _, x := range b {
		if !m[x] {
			return false
		}
		n[x] = true
	}
	return len(m) == len(n)
}

var plainYAML = regexp.MustCompile(`^[A-Za-z_/][A-Za-z0-9_./\-\[\],]*$`)

// yamlString writes s as a YAML scalar that reads back as the string s:
// plain when that is safe, else double-quoted.
func yamlString(s string) string {
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~":
		return strconv.Quote(s)
	}
	if plainYAML.MatchString(s) {
		return s
	}
	return strconv.Quote(s)
}
