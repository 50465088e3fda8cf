package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/state"
)

// slurmTimes asks Slurm when job id started and ended.
func slurmTimes(t *testing.T, id string) (start, end time.Time, st string) {
	t.Helper()
	cmd := exec.Command("squeue", "-h", "-t", "all", "-j", id, "--Format=StartTime:0|,EndTime:0|,State:0|")
	cmd.Env = append(os.Environ(), "SLURM_TIME_FORMAT=%s")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("squeue -j %s: %v", id, err)
	}
	f := strings.Split(strings.TrimSpace(string(out)), "|")
	if len(f) < 3 {
		t.Fatalf("squeue -j %s: %q", id, out)
	}
	s, err1 := strconv.ParseInt(f[0], 10, 64)
	e, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("squeue -j %s: times %q", id, out)
	}
	return time.Unix(s, 0), time.Unix(e, 0), f[2]
}

// A run longer than its one-minute jobs, chained by --auto-resume: each
// job runs visits until the time left would not cover one more (and a
// margin), whenever Slurm's warning signal comes. The run finishes within
// its attempts, and every job but the last spends most of its wall time
// running visits.
func TestBatchTimeBudget(t *testing.T) {
	e := newBatchEnv(t)
	const visits = 100
	policy, vf := e.slowPipeline("budget", visits, "1")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "budget-1", "--time", "1", "--auto-resume", "3")
	e.cancelAtEnd("budget-1")
	e.must(0, 8*time.Minute, "wait", "budget-1", "--interval", "2s")
	st := e.status("budget-1")
	if st.Counts["done"] != visits {
		t.Fatalf("after the chain: %+v", st)
	}
	for k, n := range visitLogs(t, st.Dir, visits) {
		if n != 1 {
			t.Errorf("%s ran %d times, want once", k, n)
		}
	}

	db, err := state.OpenReadOnly(filepath.Join(st.Dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	vs, err := db.Visits(state.Done, 0)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	busy := map[string]time.Duration{}
	count := map[string]int{}
	for _, v := range vs {
		busy[v.Job] += v.Ended.Sub(v.Started)
		count[v.Job]++
	}
	var worked []string // the jobs that ran visits, in order
	for _, j := range st.Jobs {
		if count[j.ID] > 0 {
			worked = append(worked, j.ID)
		}
	}
	if len(worked) < 2 {
		t.Fatalf("jobs %+v: %d ran visits; want the run to need several one-minute jobs", st.Jobs, len(worked))
	}
	first, _, _ := slurmTimes(t, worked[0])
	_, last, _ := slurmTimes(t, worked[len(worked)-1])
	if took := last.Sub(first); took > time.Duration(len(worked))*time.Minute {
		t.Errorf("the run took %v over %d jobs of one minute", took, len(worked))
	}
	for i, id := range worked {
		start, end, state := slurmTimes(t, id)
		wall := end.Sub(start)
		share := float64(busy[id]) / float64(wall)
		t.Logf("job %s: %s, %d visits, %v of visits in %v of wall time (%.0f%%)", id, state, count[id], busy[id].Round(time.Second), wall, 100*share)
		if state != "COMPLETED" {
			t.Errorf("job %s ended %s; want COMPLETED, before its time limit", id, state)
		}
		if i < len(worked)-1 && share < 0.70 {
			t.Errorf("job %s spent %.0f%% of its %v running visits; want at least 70%%", id, 100*share, wall)
		}
	}
}
