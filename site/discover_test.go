package site_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/site"
)

// TestDiscoverRoundTrip checks that what Discover writes parses and that
// Check against the same live cluster finds nothing, for clusters of
// several shapes.
func TestDiscoverRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name        string
		live        []site.Live
		opts        site.DiscoverOptions
		partitions  []string // the partitions written
		defaultPart string
		timeWarning time.Duration
		contains    []string // in the YAML
	}{
		{name: "local", live: []site.Live{localLive()}, opts: site.DiscoverOptions{RunsRoot: "/var/tmp/dpsbatch/runs"},
			partitions: []string{"debug"}, defaultPart: "debug", timeWarning: 5 * time.Minute,
			contains: []string{"cluster: dps\n", "runs_root: /var/tmp/dpsbatch/runs\n", "node_list: n[1-4]", "memory: 2000M", "max_time: infinite", "# account: myproject"}},
		{name: "two, with limits", live: twoLive(), opts: site.DiscoverOptions{RunsRoot: "/scratch/runs", Account: "science", QoS: "normal"},
			partitions: []string{"debug", "long"}, defaultPart: "debug", timeWarning: 5 * time.Minute,
			contains: []string{"account: science\n", "qos: normal\n", "node_list: big[1-2]", "memory: 64G", "max_time: 2-00:00:00", "max_nodes: 1"}},
		{name: "nodes without a list, odd names", opts: site.DiscoverOptions{RunsRoot: "/r with space", Cluster: "dps"},
			live: []site.Live{
				{Name: "true", Up: true, Nodes: []string{"gpu02", "gpu01", "gpu03"}, CPUsPerNode: 8, MemoryMB: 1 << 20, Cluster: "dps"},
				{Name: "short", Up: false, Default: true, NodeList: "n[1-2]", CPUsPerNode: 2, MaxTime: 3 * time.Minute},
				{Name: "empty", Up: true, CPUsPerNode: 2},
				{Name: "nocpu", Up: true, NodeList: "x1"},
			},
			partitions: []string{"true", "short"}, defaultPart: "short", timeWarning: 90 * time.Second,
			contains: []string{`name: "true"`, "node_list: gpu[01-03]", "memory: 1T", `runs_root: "/r with space"`, "time_warning: 1m30s",
				"partition empty is left out: the cluster reports no nodes", "partition nocpu is left out: the cluster reports no CPUs",
				"The partition is down now"}},
		{name: "no default", opts: site.DiscoverOptions{RunsRoot: "/r"},
			live: []site.Live{
				{Name: "a", Up: true, NodeList: "n1", CPUsPerNode: 2, MaxTime: time.Minute},
				{Name: "b", Up: true, NodeList: "n2", CPUsPerNode: 2, MaxTime: 90 * time.Minute},
				{Name: "a", Up: true, NodeList: "n9", CPUsPerNode: 2},
			},
			partitions: []string{"a", "b"}, timeWarning: 30 * time.Second,
			contains: []string{"No partition is the cluster's default"}},
		{name: "features and allowed accounts and QoS", opts: site.DiscoverOptions{RunsRoot: "/r"},
			live: []site.Live{{Name: "gpu", Up: true, NodeList: "g1", CPUsPerNode: 2, Features: []string{"a100", "ib"},
				AllowedAccounts: []string{"physics", "science"}, AllowedQoS: []string{"high"}}},
			partitions: []string{"gpu"}, defaultPart: "gpu", timeWarning: 5 * time.Minute,
			contains: []string{"    # Its nodes' features: a100, ib. To run only on nodes with some:\n    # constraint: a100\n",
				"    # It takes jobs of accounts physics, science only:\n    # account: physics\n",
				"    # It takes jobs of QoS high only:\n    # qos: high\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := site.Discover(tc.live, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			s, err := site.Parse("discovered.yaml", out)
			if err != nil {
				t.Fatalf("Discover wrote a file Parse refuses: %v\n%s", err, out)
			}
			for _, m := range site.Check(s, tc.live) {
				if m.Key != "state" {
					t.Errorf("Check after Discover: %v", m)
				}
			}
			var names []string
			for _, p := range s.Partitions {
				names = append(names, p.Name)
			}
			if !reflect.DeepEqual(names, tc.partitions) || s.DefaultPartition != tc.defaultPart || s.TimeWarning != tc.timeWarning {
				t.Errorf("partitions %q, default %q, time_warning %v; want %q, %q, %v",
					names, s.DefaultPartition, s.TimeWarning, tc.partitions, tc.defaultPart, tc.timeWarning)
			}
			for _, c := range tc.contains {
				if !strings.Contains(string(out), c) {
					t.Errorf("the file does not contain %q:\n%s", c, out)
				}
			}
		})
	}
}

func TestDiscoverErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		live    []site.Live
		opts    site.DiscoverOptions
		want    string
		invalid bool // bad input rather than a cluster it cannot describe
	}{
		{"no runs root", []site.Live{localLive()}, site.DiscoverOptions{}, "site: discover: a runs root is needed", true},
		{"other cluster", []site.Live{localLive()}, site.DiscoverOptions{RunsRoot: "/r", Cluster: "prod"},
			`site: discover: the cluster is "dps", not "prod"`, true},
		{"nothing to describe", []site.Live{{Name: "empty", Up: true}}, site.DiscoverOptions{RunsRoot: "/r"},
			"site: discover: the cluster reports no partition with nodes and CPUs (1 partitions)", false},
		{"no partitions", nil, site.DiscoverOptions{RunsRoot: "/r"},
			"site: discover: the cluster reports no partition with nodes and CPUs (0 partitions)", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := site.Discover(tc.live, tc.opts)
			if err == nil {
				t.Fatalf("Discover wrote\n%s\nwant an error", out)
			}
			if err.Error() != tc.want || errors.Is(err, conf.ErrInvalid) != tc.invalid {
				t.Errorf("Discover: %v (bad input: %v); want %s (bad input: %v)", err, errors.Is(err, conf.ErrInvalid), tc.want, tc.invalid)
			}
		})
	}
}

// The partition settings Discover writes as comments are keys of the
// partition once uncommented, and match the cluster.
func TestDiscoverSettingsUncommented(t *testing.T) {
	live := []site.Live{{Name: "gpu", Up: true, NodeList: "g1", CPUsPerNode: 2, Features: []string{"a100", "ib"},
		AllowedAccounts: []string{"physics"}, AllowedQoS: []string{"high"}}}
	out, err := site.Discover(live, site.DiscoverOptions{RunsRoot: "/r"})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("    # constraint: ", "    constraint: ", "    # account: ", "    account: ", "    # qos: ", "    qos: ").Replace(string(out))
	s, err := site.Parse("discovered.yaml", []byte(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if ps := s.Settings("gpu"); ps.Constraint != "a100" || ps.Account != "physics" || ps.QoS != "high" {
		t.Errorf("settings %+v", ps)
	}
	if ms := site.Check(s, live); len(ms) != 0 {
		t.Errorf("mismatches %v", ms)
	}
}
