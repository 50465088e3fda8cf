package site_test

import (
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/site"
)

// gpuSite describes the local cluster as scripts/cluster.sh sets it up:
// partition debug of n[1-4], of which n3 and n4 have two GPUs each.
const gpuSite = `runs_root: /r
partitions:
  - name: debug
    cpus_per_node: 4
    node_list: n[1-4]
    max_time: infinite
    gpus_per_node: 2
    gpu_nodes: n[3-4]
`

// gpuLive is the live partition gpuSite describes, as AddGPUs fills it in.
func gpuLive() site.Live {
	l := localLive()
	l.GPUs = nil
	l.AddGPUs("n3", 2)
	l.AddGPUs("n4", 2)
	l.AddGPUs("n1", 0) // no GPUs: not recorded
	return l
}

func TestGPUKeys(t *testing.T) {
	s, err := site.Parse("site.yaml", []byte(gpuSite))
	if err != nil {
		t.Fatal(err)
	}
	p := s.Partitions[0]
	if p.GPUsPerNode != 2 || p.GPUNodes != "n[3-4]" || p.GPUNodeCount() != 2 {
		t.Errorf("gpus_per_node %d, gpu_nodes %q, count %d; want 2, n[3-4], 2", p.GPUsPerNode, p.GPUNodes, p.GPUNodeCount())
	}
	all, err := site.Parse("site.yaml", []byte(strings.Replace(gpuSite, "    gpu_nodes: n[3-4]\n", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if n := all.Partitions[0].GPUNodeCount(); n != 4 {
		t.Errorf("without gpu_nodes, %d GPU nodes; want every node, 4", n)
	}
	none, err := site.Parse("site.yaml", []byte(checkSite))
	if err != nil {
		t.Fatal(err)
	}
	if n := none.Partitions[0].GPUNodeCount(); n != 0 {
		t.Errorf("without gpus_per_node, %d GPU nodes; want 0", n)
	}
}

func TestGPUKeyErrors(t *testing.T) {
	for _, tc := range []struct {
		name, old, new string
		want           []string
	}{
		{"zero GPUs", "gpus_per_node: 2", "gpus_per_node: 0", []string{"site.yaml:7: partitions[0].gpus_per_node: must be at least 1, got 0"}},
		{"GPUs not a number", "gpus_per_node: 2", "gpus_per_node: a100", []string{`site.yaml:7: partitions[0].gpus_per_node: expected an integer, got "a100"`}},
		{"gpu_nodes without gpus_per_node", "    gpus_per_node: 2\n", "", []string{"site.yaml:7: partitions[0].gpu_nodes: needs gpus_per_node"}},
		{"gpu_nodes outside node_list", "gpu_nodes: n[3-4]", "gpu_nodes: n[3-5],g1", []string{"site.yaml:8: partitions[0].gpu_nodes: n5,g1: not in node_list n[1-4]"}},
		{"gpu_nodes beyond the node count", "    node_list: n[1-4]\n", "    nodes: 1\n", []string{"site.yaml:8: partitions[0].gpu_nodes: names 2 nodes, more than the partition's 1"}},
		{"gpu_nodes not a host list", "gpu_nodes: n[3-4]", "gpu_nodes: n[3-", []string{"site.yaml:8: partitions[0].gpu_nodes: bad host list", "such as n[1-4]"}},
		{"sbatch --gpus-per-task", "partitions:", "sbatch_options: [--gpus-per-task=1]\npartitions:",
			[]string{"site.yaml:2: sbatch_options[0]: --gpus-per-task is set by dpsbatch itself: GPUs come from the partition's gpus_per_node and the run's GPUs per slice"}},
		{"sbatch --gpus", "partitions:", "sbatch_options: [--gpus=2]\npartitions:",
			[]string{"sbatch_options[0]: --gpus is set by dpsbatch itself"}},
		{"srun --gpus-per-task", "partitions:", "launcher: {flags: [--gpus-per-task=1]}\npartitions:",
			[]string{`launcher.flags[0]: "--gpus-per-task=1": --gpus-per-task is set by dpsbatch itself`}},
		{"srun -G", "partitions:", "launcher: {flags: [-G2]}\npartitions:",
			[]string{`launcher.flags[0]: "-G2": -G is srun's --gpus, which dpsbatch sets itself`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(gpuSite, tc.old) {
				t.Fatalf("test case edits %q, which is not in the site file", tc.old)
			}
			_, err, _ := loadText(t, strings.Replace(gpuSite, tc.old, tc.new, 1))
			wantOneError(t, err, tc.want...)
		})
	}
}

func TestCheckGPUs(t *testing.T) {
	for _, tc := range []struct {
		name string
		site string // gpuSite edited: pairs of old, new
		edit func(l *site.Live)
		want []string
	}{
		{"the same", "", func(*site.Live) {}, nil},
		{"no GPUs in the cluster", "", func(l *site.Live) { l.GPUs = nil },
			[]string{"partition debug: gpus_per_node: site file says 2, the cluster has no GPUs (no node of the partition has GRES gpu: sbatch refuses jobs that ask for GPUs)"}},
		{"fewer GPUs", "", func(l *site.Live) { l.AddGPUs("n4", 1) },
			[]string{"partition debug: gpus_per_node: site file says 2, the cluster has 1 (the fewest GPUs of its GPU nodes (n[3-4]))"}},
		{"other GPU nodes", "", func(l *site.Live) { l.AddGPUs("n2", 2) },
			[]string{"partition debug: gpu_nodes: site file says n[3-4], the cluster has n[2-4]"}},
		{"every node, says the site file", "    gpu_nodes: n[3-4]\n", func(*site.Live) {},
			[]string{"partition debug: gpu_nodes: site file says every node, the cluster has n[3-4]"}},
		{"no GPUs declared: not compared", "    gpus_per_node: 2\n    gpu_nodes: n[3-4]\n", func(*site.Live) {}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := gpuSite
			if tc.site != "" {
				text = strings.Replace(text, tc.site, "", 1)
			}
			s, err := site.Parse("site.yaml", []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			l := gpuLive()
			tc.edit(&l)
			wantMismatches(t, site.Check(s, []site.Live{l}), tc.want)
		})
	}
}

// Discover fills in a partition's GPUs: how many, and on which nodes when
// not on all; Check then finds nothing.
func TestDiscoverGPUs(t *testing.T) {
	some := gpuLive()
	every := site.Live{Name: "gpu", Up: true, NodeList: "g[1-2]", CPUsPerNode: 8}
	every.AddGPUs("g1", 4)
	every.AddGPUs("g2", 4)
	for _, tc := range []struct {
		live site.Live
		want []string
		not  string
	}{
		{some, []string{"    gpus_per_node: 2  #", "    gpu_nodes: n[3-4]  #"}, ""},
		{every, []string{"    gpus_per_node: 4  #"}, "gpu_nodes:"},
	} {
		live := []site.Live{tc.live}
		out, err := site.Discover(live, site.DiscoverOptions{RunsRoot: "/r"})
		if err != nil {
			t.Fatal(err)
		}
		s, err := site.Parse("discovered.yaml", out)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("no %q in\n%s", w, out)
			}
		}
		if tc.not != "" && strings.Contains(string(out), "\n    "+tc.not) {
			t.Errorf("%q in\n%s", tc.not, out)
		}
		if p := s.Partitions[0]; p.GPUsPerNode != slicesMin(tc.live.GPUs) {
			t.Errorf("gpus_per_node %d", p.GPUsPerNode)
		}
		wantMismatches(t, site.Check(s, live), nil)
	}
}

func slicesMin(m map[string]int) int {
	least := 0
	for _, n := range m {
		if least == 0 || n < least {
			least = n
		}
	}
	return least
}
