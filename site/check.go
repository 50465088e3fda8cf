package site

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/internal/slurmtime"
)

// ErrUnknownPartition is matched (errors.Is) by Partition's error for a
// name the site file does not describe, and ErrNoDefaultPartition by its
// error for "" when the site file has no default. Both match
// conf.ErrInvalid too: they are bad input, such as a misspelt flag.
var (
	ErrUnknownPartition   = errors.New("site: unknown partition")
	ErrNoDefaultPartition = errors.New("site: no default partition")
)

// Partition returns the partition called name, or the default partition
// when name is "". An unknown name is an error with a suggestion and the
// list of partitions; so is "" when the site file has no default.
func (s *Site) Partition(name string) (*Partition, error) {
	names := make([]string, len(s.Partitions))
	for i, p := range s.Partitions {
		names[i] = p.Name
	}
	if name == "" {
		if s.DefaultPartition == "" {
			return nil, &inputError{
				msg: fmt.Sprintf("site: no default partition: name one %s, or mark one default: true in the site file",
					conf.Have(names)),
				kinds: []error{ErrNoDefaultPartition, conf.ErrInvalid},
			}
		}
		name = s.DefaultPartition
	}
	for i := range s.Partitions {
		if s.Partitions[i].Name == name {
			return &s.Partitions[i], nil
		}
	}
	return nil, &inputError{
		msg:   fmt.Sprintf("site: unknown partition %q%s %s", name, conf.Suggest(name, names), conf.Have(names)),
		kinds: []error{ErrUnknownPartition, conf.ErrInvalid},
	}
}

// Mismatch is one difference between the site file and the live cluster,
// found by Check.
type Mismatch struct {
	// Partition is the site file's partition, "" for a key of the whole
	// site (cluster).
	Partition string `json:"partition,omitempty"`
	// Key is the site file key that differs: cluster, or a partition's
	// name (the cluster has no such partition), state (the partition is
	// down), cpus_per_node, memory, nodes, node_list, max_time,
	// max_nodes, gpus_per_node, gpu_nodes, constraint (a feature no node
	// has), or account or qos
	// (not among the partition's allowed ones, or CheckAccounting's);
	// or reservation (CheckReservations).
	Key string `json:"key"`
	// Site and Live are the two values, written as in a site file.
	Site string `json:"site"`
	Live string `json:"live"`
	// Hint says more, when there is more to say: a suggestion, the nodes
	// that differ, what the difference means.
	Hint string `json:"hint,omitempty"`
}

// String reads like
// "partition debug: cpus_per_node: site file says 8, the cluster has 4".
func (m Mismatch) String() string {
	var b strings.Builder
	if m.Partition != "" {
		fmt.Fprintf(&b, "partition %s: ", m.Partition)
	}
	switch m.Key {
	case "name":
		b.WriteString("the cluster has no such partition")
	case "state":
		fmt.Fprintf(&b, "the partition is %s in the cluster", m.Live)
	default:
		fmt.Fprintf(&b, "%s: site file says %s, the cluster has %s", m.Key, m.Site, m.Live)
	}
	if m.Hint != "" {
		b.WriteString(" (" + m.Hint + ")")
	}
	return b.String()
}

// Check compares the site file with the live cluster and returns every
// mismatch, site-wide ones first, then partition by partition in the
// file's order: the cluster name (when both name one), and for each
// partition of the site file, whether the cluster has it, whether it is
// up, and its cpus_per_node, memory, node count, node_list, max_time and
// max_nodes, and its GPUs when it declares some (gpus_per_node: the
// fewest any GPU node has; gpu_nodes, or every node when it gives none:
// the nodes that have any); then the settings its jobs get (Site.Settings): the
// constraint's features against its nodes', the account and QoS against
// those it takes. Values the cluster does not report (zero, empty) and keys
// the site file leaves out (memory, node_list) are not compared. A
// max_time or max_nodes differing either way is a mismatch: larger than
// the cluster allows, Slurm rejects the jobs; smaller, dpsbatch does not
// use what the cluster offers. Live partitions the site file does not
// describe are not mismatches: Unlisted names them.
func Check(s *Site, live []Live) []Mismatch {
	var out []Mismatch
	byName := map[string]*Live{}
	var liveNames []string
	cluster := ""
	for i := range live {
		l := &live[i]
		if _, dup := byName[l.Name]; !dup {
			byName[l.Name] = l
			liveNames = append(liveNames, l.Name)
		}
		if cluster == "" {
			cluster = l.Cluster
		}
	}
	if s.Cluster != "" && cluster != "" && s.Cluster != cluster {
		out = append(out, Mismatch{Key: "cluster", Site: s.Cluster, Live: cluster})
	}
	for _, p := range s.Partitions {
		l := byName[p.Name]
		if l == nil {
			hint := strings.TrimPrefix(conf.Suggest(p.Name, liveNames), " ")
			hint = strings.TrimSuffix(strings.TrimPrefix(hint, "("), ")")
			if hint != "" {
				hint += "; "
			}
			out = append(out, Mismatch{Partition: p.Name, Key: "name", Site: p.Name,
				Hint: hint + strings.TrimSuffix(strings.TrimPrefix(conf.Have(liveNames), "("), ")")})
			continue
		}
		out = append(out, checkPartition(p, l)...)
		out = append(out, checkGPUs(p, l)...)
		out = append(out, checkSettings(p.Name, s.Settings(p.Name), l)...)
	}
	return out
}

func checkPartition(p Partition, l *Live) []Mismatch {
	var out []Mismatch
	add := func(key, site, live, hint string) {
		out = append(out, Mismatch{Partition: p.Name, Key: key, Site: site, Live: live, Hint: hint})
	}
	if !l.Up {
		add("state", "up", "down", "")
	}
	if l.CPUsPerNode > 0 && p.CPUsPerNode != l.CPUsPerNode {
		add("cpus_per_node", strconv.Itoa(p.CPUsPerNode), strconv.Itoa(l.CPUsPerNode), "")
	}
	if p.MemoryMB > 0 && l.MemoryMB > 0 && p.MemoryMB != l.MemoryMB {
		add("memory", formatMemory(p.MemoryMB), formatMemory(l.MemoryMB), "")
	}
	names := liveNodes(l)
	if names != nil && p.Nodes != len(names) {
		add("nodes", strconv.Itoa(p.Nodes), strconv.Itoa(len(names)), "")
	}
	if site, err := ExpandHostList(p.NodeList); p.NodeList != "" && err == nil && names != nil {
		var missing, extra []string
		for _, n := range site {
			if !slices.Contains(names, n) {
				missing = append(missing, n)
			}
		}
		for _, n := range names {
			if !slices.Contains(site, n) {
				extra = append(extra, n)
			}
		}
		var hint []string
		if len(missing) > 0 {
			hint = append(hint, "not in the cluster's partition: "+CompressHostList(missing))
		}
		if len(extra) > 0 {
			hint = append(hint, "not in the site file: "+CompressHostList(extra))
		}
		if len(hint) > 0 {
			add("node_list", p.NodeList, CompressHostList(names), strings.Join(hint, "; "))
		}
	}
	switch {
	case p.MaxTime == l.MaxTime:
	case l.MaxTime > 0 && (p.MaxTime == 0 || p.MaxTime > l.MaxTime):
		add("max_time", slurmtime.Format(p.MaxTime), slurmtime.Format(l.MaxTime), "longer than the cluster allows: Slurm rejects such jobs")
	default:
		add("max_time", slurmtime.Format(p.MaxTime), slurmtime.Format(l.MaxTime), "shorter than the cluster allows")
	}
	// The cluster's limit on nodes per job is its MaxNodes, or the
	// partition's node count when that is smaller or there is none. When
	// both sides allow every node, a difference in node count is the
	// nodes mismatch alone.
	limit := l.MaxNodes
	liveAll := limit == 0 || names != nil && limit >= len(names)
	if names != nil && (limit == 0 || limit > len(names)) {
		limit = len(names)
	}
	switch {
	case limit == 0 || p.MaxNodes == limit || liveAll && p.MaxNodes == p.Nodes:
	case p.MaxNodes > limit:
		add("max_nodes", strconv.Itoa(p.MaxNodes), strconv.Itoa(limit), "more than the cluster allows: Slurm rejects such jobs")
	default:
		add("max_nodes", strconv.Itoa(p.MaxNodes), strconv.Itoa(limit), "fewer than the cluster allows")
	}
	return out
}

// checkGPUs compares the GPUs a partition declares with its live nodes'
// GRES: the count of the GPU node that has fewest, and which nodes have
// any (gpu_nodes, else every node of the partition). A partition that
// declares none is not compared: it asks for no GPUs.
func checkGPUs(p Partition, l *Live) []Mismatch {
	if p.GPUsPerNode == 0 {
		return nil
	}
	if len(l.GPUs) == 0 {
		return []Mismatch{{Partition: p.Name, Key: "gpus_per_node", Site: strconv.Itoa(p.GPUsPerNode), Live: "no GPUs",
			Hint: "no node of the partition has GRES gpu: sbatch refuses jobs that ask for GPUs"}}
	}
	var out []Mismatch
	have := slices.Sorted(maps.Keys(l.GPUs))
	fewest := slices.Min(slices.Collect(maps.Values(l.GPUs)))
	if fewest != p.GPUsPerNode {
		out = append(out, Mismatch{Partition: p.Name, Key: "gpus_per_node", Site: strconv.Itoa(p.GPUsPerNode),
			Live: strconv.Itoa(fewest), Hint: "the fewest GPUs of its GPU nodes (" + CompressHostList(have) + ")"})
	}
	want, err := ExpandHostList(p.GPUNodes)
	site := p.GPUNodes
	if p.GPUNodes == "" {
		want, err, site = liveNodes(l), nil, "every node"
	}
	if err == nil && want != nil && !sameSet(want, have) {
		out = append(out, Mismatch{Partition: p.Name, Key: "gpu_nodes", Site: site, Live: CompressHostList(have),
			Hint: "the nodes that have GRES gpu"})
	}
	return out
}

// checkSettings compares what a partition's jobs get from the site file
// with what the live partition takes.
func checkSettings(name string, ps Settings, l *Live) []Mismatch {
	out := checkConstraint(name, ps.Constraint, l)
	out = append(out, checkAllowed(name, "account", ps.Account, l.AllowedAccounts)...)
	return append(out, checkAllowed(name, "qos", ps.QoS, l.AllowedQoS)...)
}

// checkConstraint finds the features a partition's constraint names that
// none of its live nodes has: sbatch refuses such jobs.
func checkConstraint(name, c string, l *Live) []Mismatch {
	var missing []string
	for _, f := range Features(c) {
		if !slices.Contains(l.Features, f) {
			missing = append(missing, f)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	have := "no node features"
	if len(l.Features) > 0 {
		have = "features " + strings.Join(l.Features, ", ")
	}
	return []Mismatch{{Partition: name, Key: "constraint", Site: c, Live: have,
		Hint: "no node of the partition has " + strings.Join(missing, ", ") + ": sbatch refuses such jobs"}}
}

// checkAllowed finds a partition's account or QoS (key) that the live
// partition does not take (allowed, nil for any).
func checkAllowed(name, key, value string, allowed []string) []Mismatch {
	if value == "" || allowed == nil || slices.Contains(allowed, value) {
		return nil
	}
	return []Mismatch{{Partition: name, Key: key, Site: value, Live: "a partition for " + strings.Join(allowed, ", "),
		Hint: "sbatch refuses such jobs"}}
}

// liveNodes returns the node names of a live partition: Nodes, else
// NodeList expanded; nil when the cluster reports neither.
func liveNodes(l *Live) []string {
	if len(l.Nodes) > 0 {
		return slices.Compact(slices.Sorted(slices.Values(l.Nodes)))
	}
	if l.NodeList == "" {
		return nil
	}
	names, err := ExpandHostList(l.NodeList)
	if err != nil {
		return nil
	}
	return names
}

// Unlisted returns the names of the live partitions the site file does not
// describe, in the cluster's order. They are not mismatches (a site file
// may leave partitions out on purpose), but `site check` may show them.
func Unlisted(s *Site, live []Live) []string {
	var out []string
	for _, l := range live {
		known := slices.ContainsFunc(s.Partitions, func(p Partition) bool { return p.Name == l.Name })
		if !known && !slices.Contains(out, l.Name) {
			out = append(out, l.Name)
		}
	}
	return out
}
