package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBatchRunsRootWithPercent runs a job whose runs root holds a space,
// a % and a %j: Slurm expands % patterns in the --output path, so each
// literal % must reach it as %%, and the log must land in the run's own
// logs folder.
func TestBatchRunsRootWithPercent(t *testing.T) {
	e := newBatchEnv(t)
	root := filepath.Join(filepath.Dir(e.dir), "runs 100% of %j x")
	writeFile(t, e.site, fmt.Sprintf(`runs_root: %q
partitions:
  - {name: debug, default: true, cpus_per_node: 4, memory: 2000M, node_list: "n[1-4]", max_time: infinite}
launcher: {kind: srun, flags: [--mpi=none], comm: tcp}
time_warning: 50s
`, root))
	policy, vf := e.slowPipeline("pct", 2, "0.1")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "pct-1", "--time", "5")
	e.must(0, 3*time.Minute, "wait", "pct-1", "--interval", "1s")
	st := e.status("pct-1")
	if st.Dir != filepath.Join(root, "pct-1") || st.Counts["done"] != 2 || len(st.Jobs) != 1 {
		t.Fatalf("status: %+v", st)
	}
	log := filepath.Join(st.Dir, "logs", "slurm-"+st.Jobs[0].ID+".out")
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatalf("the job's log is not in the run directory: %v", err)
	}
	if !strings.Contains(string(data), "launching") {
		t.Errorf("%s:\n%s", log, data)
	}
}
