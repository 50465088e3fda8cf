package jobs

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/input/inputtest"
	"github.com/dpsbatch/dpsbatch/site"
)

// gpuEnv is newEnv with partition gpu of four nodes, two of which have
// two GPUs each.
func gpuEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, 2)
	gpu := `  - name: gpu
    cpus_per_node: 4
    node_list: g[1-4]
    max_time: infinite
    gpus_per_node: 2
    gpu_nodes: g[3-4]
launcher:`
	text := strings.Replace(fmt.Sprintf(siteYAML, e.root), "launcher:", gpu, 1)
	s, err := site.Parse(filepath.Join(e.dir, "site.yaml"), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	e.site = s
	return e
}

// GPUs per slice, from the request or else the policy, become the job's
// --gpus-per-task and each srun rank's; the plan fits the tasks on the
// GPU nodes.
func TestSubmitGPUs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		request int
		policy  string
		want    string
		nodes   string // two tasks: the Pipeline's and the slice's
	}{
		{"asked", 1, "", "1", "1"},
		{"the policy's", 0, "gpus_per_slice: 2\n", "2", "2"},
		{"asked, over the policy's", 1, "gpus_per_slice: 2\n", "1", "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := gpuEnv(t)
			o := e.opts("run1")
			o.Request.Partition, o.Request.GPUsPerSlice = "gpu", tc.request
			o.Request.Slices = 1
			o.Policy = e.write("gpus.yaml", strings.Replace(inputtest.TinyPolicy, "stages:", tc.policy+"stages:", 1))
			sub, err := Submit(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			script := string(readAll(t, sub.Script))
			for _, want := range []string{"#SBATCH --gpus-per-task=" + tc.want + "\n", "#SBATCH --nodes=" + tc.nodes + "\n",
				"srun '--mpi=none' '--gpus-per-task=" + tc.want + "' '--kill-on-bad-exit=1' "} {
				if !strings.Contains(script, want) {
					t.Errorf("script lacks %q:\n%s", want, script)
				}
			}
		})
	}
}

// A partition without GPUs asked for some is bad input naming where the
// GPUs were asked: nothing is created or submitted.
func TestSubmitGPUsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name      string
		partition string
		request   int
		policy    string
		says      []string
	}{
		{"asked of a partition without", "debug", 1, "",
			[]string{"1 GPUs per slice (--gpus-per-slice)", "partition debug: a slice needs 1 GPUs, the partition has none (the site file gives it no gpus_per_node)"}},
		{"the policy's, of a partition without", "debug", 0, "gpus_per_slice: 1\n",
			[]string{"gpus.yaml: gpus_per_slice)", "the partition has none"}},
		{"more than the GPU nodes hold", "gpu", 2, "",
			[]string{"2 GPUs per slice (--gpus-per-slice)", "the partition has 2 GPU nodes (gpu_nodes g[3-4])"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := gpuEnv(t)
			o := e.opts("run1")
			o.Request.Partition, o.Request.GPUsPerSlice = tc.partition, tc.request
			o.Policy = e.write("gpus.yaml", strings.Replace(inputtest.TinyPolicy, "stages:", tc.policy+"stages:", 1))
			sub, err := Submit(context.Background(), o)
			if sub != nil {
				t.Errorf("Submitted = %+v; want nil", sub)
			}
			for _, s := range tc.says {
				inputtest.WantInvalid(t, tc.name, err, s)
			}
			if got := e.rootEntries(); len(got) != 0 {
				t.Errorf("runs root holds %v; want it empty", got)
			}
			if _, _, n := e.fake.calls(); n != 0 {
				t.Errorf("%d submissions; want none", n)
			}
		})
	}
}
