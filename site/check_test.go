package site_test

import (
	"bufio"
	"context"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/slurmtime"
	"github.com/dpsbatch/dpsbatch/internal/testenv"
	"github.com/dpsbatch/dpsbatch/site"
)

// checkSite is a site of two partitions that twoLive describes exactly.
const checkSite = `cluster: dps
runs_root: /r
partitions:
  - name: debug
    default: true
    cpus_per_node: 4
    memory: 2000M
    node_list: n[1-4]
    max_time: infinite
  - name: long
    cpus_per_node: 16
    memory: 64G
    nodes: 2
    max_time: 2-00:00:00
    max_nodes: 1
`

func twoLive() []site.Live {
	return []site.Live{
		localLive(),
		{Name: "long", Up: true, NodeList: "big[1-2]", CPUsPerNode: 16, MemoryMB: 64 << 10,
			MaxTime: 48 * time.Hour, MaxNodes: 1, Cluster: "dps"},
	}
}

func TestCheck(t *testing.T) {
	s, err := site.Parse("site.yaml", []byte(checkSite))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(l []site.Live) []site.Live
		want []string // every mismatch, as String
	}{
		{"the same", func(l []site.Live) []site.Live { return l }, nil},
		{"cluster name", func(l []site.Live) []site.Live {
			l[0].Cluster, l[1].Cluster = "prod", "prod"
			return l
		}, []string{"cluster: site file says dps, the cluster has prod"}},
		{"no cluster name reported", func(l []site.Live) []site.Live {
			l[0].Cluster, l[1].Cluster = "", ""
			return l
		}, nil},
		{"missing partition", func(l []site.Live) []site.Live {
			l[0].Name = "debgu"
			return l
		}, []string{`partition debug: the cluster has no such partition (did you mean "debgu"?; have: debgu, long)`}},
		{"missing partition, nothing close", func(l []site.Live) []site.Live { return l[:1] },
			[]string{`partition long: the cluster has no such partition (have: debug)`}},
		{"down", func(l []site.Live) []site.Live {
			l[0].Up = false
			return l
		}, []string{"partition debug: the partition is down in the cluster"}},
		{"cpus", func(l []site.Live) []site.Live {
			l[0].CPUsPerNode = 8
			return l
		}, []string{"partition debug: cpus_per_node: site file says 4, the cluster has 8"}},
		{"memory", func(l []site.Live) []site.Live {
			l[1].MemoryMB = 64000
			return l
		}, []string{"partition long: memory: site file says 64G, the cluster has 64000M"}},
		{"a node more", func(l []site.Live) []site.Live {
			l[0].Nodes = append(l[0].Nodes, "n5")
			return l
		}, []string{
			"partition debug: nodes: site file says 4, the cluster has 5",
			"partition debug: node_list: site file says n[1-4], the cluster has n[1-5] (not in the site file: n5)",
		}},
		{"other nodes", func(l []site.Live) []site.Live {
			l[0].Nodes, l[0].NodeList = nil, "n[3-6]"
			return l
		}, []string{"partition debug: node_list: site file says n[1-4], the cluster has n[3-6] (not in the cluster's partition: n[1-2]; not in the site file: n[5-6])"}},
		{"node count only", func(l []site.Live) []site.Live {
			l[1].NodeList = "big[1-3]"
			return l
		}, []string{"partition long: nodes: site file says 2, the cluster has 3"}},
		{"max_time beyond the cluster's", func(l []site.Live) []site.Live {
			l[0].MaxTime = time.Hour
			return l
		}, []string{"partition debug: max_time: site file says infinite, the cluster has 01:00:00 (longer than the cluster allows: Slurm rejects such jobs)"}},
		{"max_time below the cluster's", func(l []site.Live) []site.Live {
			l[1].MaxTime = 0
			return l
		}, []string{"partition long: max_time: site file says 2-00:00:00, the cluster has infinite (shorter than the cluster allows)"}},
		{"max_nodes beyond the cluster's", func(l []site.Live) []site.Live {
			l[0].MaxNodes = 2
			return l
		}, []string{"partition debug: max_nodes: site file says 4, the cluster has 2 (more than the cluster allows: Slurm rejects such jobs)"}},
		{"max_nodes below the cluster's", func(l []site.Live) []site.Live {
			l[1].MaxNodes = 0
			return l
		}, []string{"partition long: max_nodes: site file says 1, the cluster has 2 (fewer than the cluster allows)"}},
		{"max_nodes beyond the node count is no limit", func(l []site.Live) []site.Live {
			l[0].MaxNodes = 10
			return l
		}, nil},
		{"values not reported are not compared", func(l []site.Live) []site.Live {
			l[0].CPUsPerNode, l[0].MemoryMB, l[0].Nodes, l[0].NodeList = 0, 0, nil, ""
			return l
		}, nil},
		{"every mismatch", func(l []site.Live) []site.Live {
			l[0].Cluster, l[0].Up, l[0].CPUsPerNode, l[1].MemoryMB = "prod", false, 2, 1000
			return l
		}, []string{
			"cluster: site file says dps, the cluster has prod",
			"partition debug: the partition is down in the cluster",
			"partition debug: cpus_per_node: site file says 4, the cluster has 2",
			"partition long: memory: site file says 64G, the cluster has 1000M",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, m := range site.Check(s, tc.edit(twoLive())) {
				got = append(got, m.String())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("mismatches:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestMismatchFields(t *testing.T) {
	s, err := site.Parse("site.yaml", []byte(checkSite))
	if err != nil {
		t.Fatal(err)
	}
	l := twoLive()
	l[0].CPUsPerNode = 8
	want := []site.Mismatch{{Partition: "debug", Key: "cpus_per_node", Site: "4", Live: "8"}}
	if got := site.Check(s, l); !reflect.DeepEqual(got, want) {
		t.Errorf("Check = %+v, want %+v", got, want)
	}
}

func TestUnlisted(t *testing.T) {
	s, err := site.Parse("site.yaml", []byte(checkSite))
	if err != nil {
		t.Fatal(err)
	}
	l := append(twoLive(), site.Live{Name: "gpu"}, site.Live{Name: "debug"}, site.Live{Name: "gpu"})
	if got, want := site.Unlisted(s, l), []string{"gpu"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Unlisted = %q, want %q", got, want)
	}
	if got := site.Unlisted(s, twoLive()); got != nil {
		t.Errorf("Unlisted = %q, want none", got)
	}
}

// TestExampleMatchesCluster checks examples/sites/local.yaml against the
// real local cluster of scripts/cluster.sh, read with scontrol and sinfo.
func TestExampleMatchesCluster(t *testing.T) {
	testenv.NeedCluster(t, 1, "scontrol")
	s, err := site.Load("../examples/sites/local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	live := readLive(t)
	if ms := site.Check(s, live); len(ms) > 0 {
		t.Errorf("examples/sites/local.yaml does not match the running cluster: %v", ms)
	}
	if u := site.Unlisted(s, live); len(u) > 0 {
		t.Errorf("the cluster has partitions the example leaves out: %q", u)
	}
	// And the other way: what Discover writes from the real cluster
	// loads and matches it.
	out, err := site.Discover(live, site.DiscoverOptions{RunsRoot: "/var/tmp/dpsbatch/runs"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := site.Parse("discovered.yaml", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if d.Cluster != s.Cluster || !reflect.DeepEqual(d.Partitions, s.Partitions) {
		t.Errorf("discovered %+v of cluster %q, the example has %+v of %q", d.Partitions, d.Cluster, s.Partitions, s.Cluster)
	}
}

// readLive describes the running cluster's partitions the way the
// scheduler package does, with scontrol and sinfo (a small stand-in: site
// may not import scheduler).
func readLive(t *testing.T) []site.Live {
	t.Helper()
	run := func(name string, args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	cluster := ""
	for _, line := range strings.Split(run("scontrol", "show", "config"), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "ClusterName" {
			cluster = strings.TrimSpace(v)
		}
	}
	var live []site.Live
	sc := bufio.NewScanner(strings.NewReader(run("scontrol", "show", "partition", "-o")))
	for sc.Scan() {
		kv := map[string]string{}
		for _, f := range strings.Fields(sc.Text()) {
			if k, v, ok := strings.Cut(f, "="); ok {
				kv[k] = v
			}
		}
		if kv["PartitionName"] == "" {
			continue
		}
		l := site.Live{Name: kv["PartitionName"], Up: kv["State"] == "UP", Default: kv["Default"] == "YES",
			NodeList: kv["Nodes"], Cluster: cluster}
		if kv["MaxTime"] != "UNLIMITED" {
			d, err := slurmtime.Parse(kv["MaxTime"])
			if err != nil {
				t.Fatal(err)
			}
			l.MaxTime = d
		}
		if kv["MaxNodes"] != "UNLIMITED" {
			l.MaxNodes, _ = strconv.Atoi(kv["MaxNodes"])
		}
		nodes, err := site.ExpandHostList(l.NodeList)
		if err != nil {
			t.Fatal(err)
		}
		l.Nodes = nodes
		// The smallest CPUs and memory over the partition's nodes.
		for _, line := range strings.Split(strings.TrimSpace(run("sinfo", "-h", "-N", "-p", l.Name, "-o", "%c %m")), "\n") {
			f := strings.Fields(line)
			if len(f) != 2 {
				t.Fatalf("sinfo: %q", line)
			}
			c, _ := strconv.Atoi(f[0])
			m, _ := strconv.Atoi(strings.TrimSuffix(f[1], "+"))
			if l.CPUsPerNode == 0 || c < l.CPUsPerNode {
				l.CPUsPerNode = c
			}
			if l.MemoryMB == 0 || m < l.MemoryMB {
				l.MemoryMB = m
			}
		}
		// The GPUs of each node with GRES gpu (such as gpu:2).
		for _, line := range strings.Split(strings.TrimSpace(run("sinfo", "-h", "-N", "-p", l.Name, "-o", "%N %G")), "\n") {
			node, gres, _ := strings.Cut(line, " ")
			if g, ok := strings.CutPrefix(strings.TrimSpace(gres), "gpu:"); ok {
				g, _, _ = strings.Cut(g, "(")
				n, _ := strconv.Atoi(g[strings.LastIndex(g, ":")+1:])
				l.AddGPUs(node, n)
			}
		}
		live = append(live, l)
	}
	if len(live) == 0 {
		t.Fatal("scontrol shows no partitions")
	}
	return live
}

// A constraint, the site's or a partition's own, naming a feature no node
// of the partition has is a mismatch; one whose features the nodes have
// is not.
func TestCheckConstraint(t *testing.T) {
	text := strings.Replace(checkSite, "runs_root: /r\n", "runs_root: /r\nconstraint: intel\n", 1)
	text = strings.Replace(text, "    max_nodes: 1\n", "    max_nodes: 1\n    constraint: \"[rack1|rack2]&gpu*2\"\n", 1)
	s, err := site.Parse("site.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	live := twoLive()
	live[0].Features = []string{"amd", "ib"}
	live[1].Features = []string{"gpu", "rack1"}
	want := []string{
		"partition debug: constraint: site file says intel, the cluster has features amd, ib (no node of the partition has intel: sbatch refuses such jobs)",
		"partition long: constraint: site file says [rack1|rack2]&gpu*2, the cluster has features gpu, rack1 (no node of the partition has rack2",
	}
	ms := site.Check(s, live)
	wantMismatches(t, ms, want)
	live[0].Features = []string{"intel"}
	live[1].Features = []string{"gpu", "rack1", "rack2"}
	if ms := site.Check(s, live); len(ms) != 0 {
		t.Errorf("features all there, yet %v", ms)
	}
}

// A partition's account or QoS that the live partition does not take
// (AllowAccounts, AllowQos) is a mismatch.
func TestCheckAllowed(t *testing.T) {
	text := strings.Replace(checkSite, "runs_root: /r\n", "runs_root: /r\naccount: science\nqos: normal\n", 1)
	text = strings.Replace(text, "    max_nodes: 1\n", "    max_nodes: 1\n    account: physics\n", 1)
	s, err := site.Parse("site.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	live := twoLive()
	live[0].AllowedAccounts = []string{"science"}
	live[1].AllowedAccounts, live[1].AllowedQoS = []string{"science"}, []string{"high", "low"}
	want := []string{
		"partition long: account: site file says physics, the cluster has a partition for science (sbatch refuses such jobs)",
		"partition long: qos: site file says normal, the cluster has a partition for high, low",
	}
	ms := site.Check(s, live)
	wantMismatches(t, ms, want)
}

// wantMismatches checks that ms are, in order, mismatches whose texts
// contain want's.
func wantMismatches(t *testing.T, ms []site.Mismatch, want []string) {
	t.Helper()
	if len(ms) != len(want) {
		t.Fatalf("%d mismatches %v, want %d", len(ms), ms, len(want))
	}
	for i, m := range ms {
		if !strings.Contains(m.String(), want[i]) {
			t.Errorf("%q\nwant %q", m.String(), want[i])
		}
	}
}
