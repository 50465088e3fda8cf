package slurmrest

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Job 2563 of the local cluster: a batch script, then a step of two tasks
// that each held about 130 MiB (sacct: MaxRSS 136172K on n1, TotalCPU
// 00:05.621, ElapsedRaw 5; the job 7 s, ReqMem 200M, 2 CPUs). Job 2567 was
// recorded running.
func TestFinishedUsage(t *testing.T) {
	f := newFake(t, map[string]string{
		"GET /slurmdb/v0.0.38/job/2563":      "dbjob-usage.200",
		"GET /slurmdb/v0.0.38/job/2567":      "dbjob-running.200",
		"GET /slurmdb/v0.0.38/job/999999999": "dbjob-unknown.200",
	})
	c := f.start(Options{})
	ctx := context.Background()
	u, err := c.FinishedUsage(ctx, "2563")
	if err != nil {
		t.Fatal(err)
	}
	if u.JobID != "2563" || u.State != "COMPLETED" || u.Elapsed != 7*time.Second || u.CPUs != 2 || u.ReqMemMB != 200 || u.Ended.IsZero() {
		t.Errorf("usage %+v, want 2563 COMPLETED, 7s, 2 CPUs, 200 MB asked", u)
	}
	want := []StepUsage{
		{ID: "batch", Name: "batch", State: "COMPLETED", Elapsed: 7 * time.Second, CPU: 559224 * time.Microsecond, Tasks: 1},
		{ID: "0", Name: "python3", State: "COMPLETED", Elapsed: 5 * time.Second, CPU: 5621401 * time.Microsecond, Tasks: 2,
			MaxRSS: 136172 * 1024, MaxRSSNode: "n1"},
	}
	if len(u.Steps) != len(want) {
		t.Fatalf("steps %+v, want %+v", u.Steps, want)
	}
	for i := range want {
		if u.Steps[i] != want[i] {
			t.Errorf("step %d: %+v, want %+v", i, u.Steps[i], want[i])
		}
	}
	run, err := c.FinishedUsage(ctx, "2567")
	if err != nil || run.State != "RUNNING" || !run.Ended.IsZero() || len(run.Steps) != 2 || run.Steps[1].State != "RUNNING" {
		t.Errorf("running job's usage %+v, %v; want RUNNING, no end, steps running", run, err)
	}
	if _, err := c.FinishedUsage(ctx, "999999999"); !errors.Is(err, ErrNoJob) {
		t.Errorf("usage of an unknown job: %v, want ErrNoJob", err)
	}
}
