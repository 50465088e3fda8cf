package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/testenv"
)

// gpuKeys are the debug partition's GPU keys as scripts/cluster.sh sets
// the cluster up: two simulated GPUs (GRES gpu) on each of n3 and n4.
const gpuKeys = "    gpus_per_node: 2\n    gpu_nodes: n[3-4]\n"

// needGPUs skips (fails in CI) unless the cluster's n3 and n4 have GPUs.
func needGPUs(t *testing.T) {
	t.Helper()
	out, err := exec.Command("sinfo", "-h", "-N", "-o", "%N %G").Output()
	if err != nil || !strings.Contains(string(out), "n3 gpu:2") || !strings.Contains(string(out), "n4 gpu:2") {
		testenv.SkipOrFail(t, "the cluster's n3 and n4 have no GPUs (GRES gpu:2; run scripts/cluster.sh start): %v\n%s", err, out)
	}
}

// gpuPipeline writes a pipeline of two slices whose data ID holds the
// slice's rank and, from its host info (the rank mapper's gpu_key), its
// GPU IDs; its stage writes them, with the CUDA_VISIBLE_DEVICES and the
// node it runs with, to a file per slice.
func (e *batchEnv) gpuPipeline() (policy, visits string) {
	e.t.Helper()
	dir := filepath.Join(e.dir, "gpus")
	policy, visits = filepath.Join(dir, "pipeline.yaml"), filepath.Join(dir, "visits.csv")
	writeFile(e.t, policy, `pipeline: gpus
slices: 2
mapper: {type: rank, settings: {gpu_key: gpu}}
locations: {output: "output/{visit}"}
events: {trigger: {topic: visits}}
stages:
  - name: record
    type: exec
    settings:
      command: [sh, -c, 'mkdir -p "$1" && echo "$3 $CUDA_VISIBLE_DEVICES $SLURMD_NODENAME" > "$1/slice$2"', sh, "{output}", "{rank}", "{gpu}"]
`)
	writeFile(e.t, visits, "visitId\nv001\n")
	return policy, visits
}

// TestSiteGPUsLive: site discover fills in the debug partition's GPUs,
// site check finds the file that declares them matching, and one that
// declares other GPUs not.
func TestSiteGPUsLive(t *testing.T) {
	e := newBatchEnv(t)
	needGPUs(t)
	disc := e.must(0, time.Minute, "site", "discover", "--runs-root", e.root)
	for _, want := range []string{"\n    gpus_per_node: 2  #", "\n    gpu_nodes: n[3-4]  #"} {
		if !strings.Contains(disc, want) {
			t.Errorf("site discover wrote no %q:\n%s", want, disc)
		}
	}
	wrong := e.partitionSite("gpus-wrong", "", "    gpus_per_node: 4\n")
	e.site = e.partitionSite("gpus", "", gpuKeys)
	if out := e.must(0, time.Minute, "site", "check"); !strings.Contains(out, "matches the cluster") {
		t.Errorf("site check with the GPUs:\n%s", out)
	}
	out, errOut, code := runCmd(t, time.Minute, cleanEnv(), e.bin, "site", "check", "--site", wrong)
	for _, want := range []string{"partition debug: gpus_per_node: site file says 4, the cluster has 2",
		"partition debug: gpu_nodes: site file says every node, the cluster has n[3-4]"} {
		if code != exitBadInput || !strings.Contains(out, want) {
			t.Errorf("site check of other GPUs: exit %d, want %d and %q:\n%s%s", code, exitBadInput, want, out, errOut)
		}
	}
}

// TestBatchGPUs: a run asking one GPU per slice lands on the GPU nodes,
// and each slice's GPU ID reaches its host info (so the mapper's data
// ID) and is the one Slurm gave the task; one asking GPUs of a partition
// the site file gives none is bad input, with nothing submitted.
func TestBatchGPUs(t *testing.T) {
	e := newBatchEnv(t)
	needGPUs(t)
	policy, visits := e.gpuPipeline()

	out, errOut, code := e.dps(time.Minute, "submit", policy, "--visits", visits, "--name", "nogpus", "--gpus-per-slice", "1")
	if code != exitBadInput || !strings.Contains(errOut, "1 GPUs per slice (--gpus-per-slice)") || !strings.Contains(errOut, "gpus_per_node") {
		t.Errorf("submit asking GPUs of a partition without: exit %d, want %d naming --gpus-per-slice and gpus_per_node:\n%s%s",
			code, exitBadInput, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(e.root, "nogpus")); err == nil {
		t.Errorf("a refused submission left its run directory")
	}
	if q, _ := exec.Command("squeue", "-h", "-o", "%j").Output(); strings.Contains(string(q), "nogpus") {
		t.Errorf("a refused submission reached Slurm:\n%s", q)
	}

	e.site = e.partitionSite("gpus", "", gpuKeys)
	e.checkGPURun("gpus-1", policy, visits)
}

// TestBatchGPUsThroughREST: through slurmrestd, site check finds the
// GPUs the site file declares, and a GPU run lands on the GPU nodes with
// a GPU for each slice, as through Slurm's tools.
func TestBatchGPUsThroughREST(t *testing.T) {
	e := newBatchEnv(t)
	needGPUs(t)
	policy, visits := e.gpuPipeline()
	e.site = e.partitionSite("gpus", "", gpuKeys)
	e.site, _ = e.restSite()
	if out := e.must(0, time.Minute, "site", "check"); !strings.Contains(out, "matches the cluster") {
		t.Errorf("site check through slurmrestd with the GPUs:\n%s", out)
	}
	e.checkGPURun("gpus-rest", policy, visits)
}

// checkGPURun runs the GPU pipeline as run with one GPU per slice and
// checks that each slice ran on n3 or n4 with a GPU of its own, whose ID
// its host info (through the mapper's data ID) and its environment agree
// on.
func (e *batchEnv) checkGPURun(run, policy, visits string) {
	t := e.t
	t.Helper()
	e.must(0, time.Minute, "submit", policy, "--visits", visits, "--name", run, "--gpus-per-slice", "1")
	e.cancelAtEnd(run)
	e.must(0, 3*time.Minute, "wait", run, "--interval", "1s")
	st := e.status(run)
	if st.Outcome != "done" {
		t.Fatalf("status: %+v", st)
	}
	seen := map[string]bool{}
	for rank := 1; rank <= 2; rank++ {
		got, err := os.ReadFile(filepath.Join(st.Dir, "output", "v001", fmt.Sprintf("slice%d", rank)))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("slice %d recorded: %s", rank, got)
		f := strings.Fields(string(got))
		if len(f) != 3 || f[0] != f[1] || (f[2] != "n3" && f[2] != "n4") || (f[0] != "0" && f[0] != "1") {
			t.Errorf("slice %d recorded %q; want its host info's GPU ID, the same as its CUDA_VISIBLE_DEVICES (0 or 1), on n3 or n4", rank, got)
		}
		if seen[string(got)] {
			t.Errorf("slices share GPU and node %q", got)
		}
		seen[string(got)] = true
	}
}
