package scheduler_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/testenv"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/scheduler/schedtest"
)

// cliTools are the tools the CLI backend runs, as NeedCluster checks them.
var cliTools = []string{"sbatch", "squeue", "scontrol", "scancel", "sacct"}

// TestCLIBackend runs the shared backend suite against the local cluster
// through Slurm's command line tools.
func TestCLIBackend(t *testing.T) {
	testenv.NeedCluster(t, 4, cliTools...)
	b, err := scheduler.NewCLI(scheduler.CLIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	schedtest.Run(t, b, schedtest.Options{})
}

// TestPlanOnCluster submits plans' sbatch options to the local cluster and
// checks that Slurm lays the ranks out as Plan.Layout says (rank 0 and the
// next Layout[0]-1 ranks on the first node, and so on) when it is uniform,
// and on Nodes nodes within their CPUs when it is not.
func TestPlanOnCluster(t *testing.T) {
	testenv.NeedCluster(t, 4, cliTools...)
	b, err := scheduler.NewCLI(scheduler.CLIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		n    scheduler.Needs
	}{
		{"pack-uneven", scheduler.Needs{Slices: 4}},
		{"pack-two-cpus", scheduler.Needs{Slices: 3, CPUsPerSlice: 2}},
		{"pack-memory", scheduler.Needs{Slices: 3, MemPerSliceMB: 900}},
		{"spread", scheduler.Needs{Slices: 3, Strategy: scheduler.Spread}},
		{"spread-memory", scheduler.Needs{Slices: 2, MemPerSliceMB: 1200, Strategy: scheduler.Spread, Time: 3 * time.Minute}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := scheduler.PlanAllocation(debug, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			var script strings.Builder
			script.WriteString("#!/bin/bash\n#SBATCH --job-name=plan-" + tc.name + "\n#SBATCH --output=plan-%j.out\n")
			for _, o := range p.SbatchOptions() {
				script.WriteString("#SBATCH " + o + "\n")
			}
			script.WriteString("srun bash -c 'echo $SLURM_PROCID $SLURMD_NODENAME' > ranks.txt\n")
			dir := schedtest.Dir(t)
			id := schedtest.Submit(t, b, dir, []byte(script.String()), "")
			if j := schedtest.WaitEnded(t, b, id, 2*time.Minute); j.State != "COMPLETED" {
				out, _ := os.ReadFile(filepath.Join(dir, "plan-"+id+".out"))
				t.Fatalf("job %+v, want COMPLETED; output:\n%s", j, out)
			}
			data, err := os.ReadFile(filepath.Join(dir, "ranks.txt"))
			if err != nil {
				t.Fatal(err)
			}
			node := map[int]string{}
			for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				var rank int
				var name string
				if _, err := fmt.Sscan(line, &rank, &name); err != nil {
					t.Fatalf("ranks.txt line %q: %v", line, err)
				}
				node[rank] = name
			}
			// Count the ranks of each run of one node, in rank order.
			var layout []int
			for r := range p.Tasks {
				name, ok := node[r]
				switch {
				case !ok:
					t.Fatalf("rank %d did not run: %s", r, data)
				case r > 0 && name == node[r-1]:
					layout[len(layout)-1]++
				default:
					layout = append(layout, 1)
				}
			}
			// A uniform layout is exact; otherwise Slurm keeps the nodes
			// and tasks and places the rest by free CPUs (see Plan).
			fits := len(layout) == p.Nodes && len(node) == p.Tasks
			for _, n := range layout {
				fits = fits && n*p.CPUsPerTask <= debug.CPUsPerNode
			}
			if uniform := slices.Min(p.Layout) == p.TasksPerNode; !fits || uniform && !slices.Equal(layout, p.Layout) {
				t.Errorf("options %v: ranks per node %v (%d ranks), plan says %v", p.SbatchOptions(), layout, len(node), p.Layout)
			}
		})
	}
}
