package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/jobs"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

// usageStatus is status --json of one run with its usage.
type usageStatus struct {
	Jobs []struct {
		ID    string         `json:"id"`
		Live  bool           `json:"live"`
		Usage *jobs.JobUsage `json:"usage"`
	} `json:"jobs"`
	Usage     *jobs.RunUsage `json:"usage"`
	UsageNote string         `json:"usageNote"`
}

// usageOf polls status --json until the run's job has its usage from
// accounting (which hears of a job's end a few seconds after it).
func (e *batchEnv) usageOf(run string, timeout time.Duration) usageStatus {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var all []usageStatus
		out := e.must(0, time.Minute, "status", "--json", run)
		if err := json.Unmarshal([]byte(out), &all); err != nil || len(all) != 1 {
			e.t.Fatalf("status --json: %v\n%s", err, out)
		}
		if all[0].UsageNote != "" {
			e.t.Fatalf("status --json: usage note %q", all[0].UsageNote)
		}
		if all[0].Usage != nil || time.Now().After(deadline) {
			return all[0]
		}
		time.Sleep(2 * time.Second)
	}
}

// TestBatchUsage: once a run's job has ended, status asks Slurm's
// accounting what it used, shows it (the job's steps, the run's totals,
// the peak memory of one task against the 300 MB each slice asked for)
// and stores it in the state file; the next status reads it from there,
// and the report draws it.
// Both backends, Slurm's tools and slurmrestd, give the same usage of the
// job.
func TestBatchUsage(t *testing.T) {
	e := newBatchEnv(t)
	// Each slice's stage runs a program that holds 60 MiB for 6 s:
	// Slurm samples the tasks every 5 s (scripts/cluster.sh) and at the
	// step's end.
	policy, vf := e.twoSlicePipeline("usage", `  - name: hold
    type: exec
    settings:
      command: [python3, -c, "import time; a = bytearray(60 << 20); a[::4096] = b'x' * len(a[::4096]); time.sleep(6)"]
      timeout: 60s
`, "v001")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "usage-1", "--mem-per-slice", "300M")
	e.cancelAtEnd("usage-1")
	e.must(0, 3*time.Minute, "wait", "--interval", "1s", "usage-1")

	st := e.usageOf("usage-1", 90*time.Second)
	if st.Usage == nil || len(st.Jobs) != 1 || st.Jobs[0].Usage == nil {
		t.Fatalf("no usage 90 s after the run ended: %+v", st)
	}
	u, ju := st.Usage, st.Jobs[0].Usage
	if u.Jobs != 1 || u.MemPerSliceMB != 300 || u.MaxRSSJob != st.Jobs[0].ID || u.MaxRSSBytes < 60<<20 || u.MaxRSSBytes > 300<<20 ||
		u.ElapsedSeconds < 6 || u.CPUSeconds <= 0 {
		t.Errorf("run's usage %+v: want 1 job, 300 MB asked per slice, a task's peak between 60 MiB and 300 MB, 6 s or more", u)
	}
	if ju.MaxRSSStep != "0" || ju.MaxRSSNode == "" || ju.CPUs < 3 || ju.State != "COMPLETED" || len(ju.Steps) < 2 {
		t.Errorf("job's usage %+v: want the peak in step 0 (the srun of the ranks), 3 CPUs or more, the batch step too", ju)
	}

	dir := filepath.Join(e.root, "usage-1")
	stored := storedUsage(t, dir)
	if len(stored) != 1 || stored[0].Job != st.Jobs[0].ID || stored[0].Peak().MaxRSS != ju.MaxRSSBytes {
		t.Fatalf("the state file holds %+v, want the job's usage as status showed it", stored)
	}
	text := e.must(0, time.Minute, "status", "usage-1")
	if !strings.Contains(text, "usage (1 job, from accounting)") || !strings.Contains(text, "of the 300.0 MiB each slice asked for") {
		t.Errorf("status does not show the usage against what the slices asked for:\n%s", text)
	}

	page := e.must(0, time.Minute, "report", "usage-1", "-o", "-")
	if _, chart, _ := strings.Cut(page, `<svg id="usage-memory-chart"`); !strings.Contains(chart, `data-job="`+st.Jobs[0].ID+`"`) {
		t.Errorf("the report draws no memory bar of job %s", st.Jobs[0].ID)
	}

	byTools, byREST := bothBackendsUsage(e, st.Jobs[0].ID)
	if !reflect.DeepEqual(byTools, byREST) {
		t.Errorf("usage of job %s through Slurm's tools\n%+v\nthrough slurmrestd\n%+v", st.Jobs[0].ID, byTools, byREST)
	}
	if want := stored[0]; byTools.Elapsed != want.Elapsed || byTools.CPU() != want.CPU() || len(byTools.Steps) != len(want.Steps) {
		t.Errorf("usage through the tools %+v, stored %+v", byTools, want)
	}
}

// storedUsage reads the usage the run's state file holds.
func storedUsage(t *testing.T, dir string) []state.JobUsage {
	t.Helper()
	st, err := state.OpenReadOnly(filepath.Join(dir, jobs.StateFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	us, err := st.Usage()
	if err != nil {
		t.Fatal(err)
	}
	return us
}

// bothBackendsUsage asks Slurm's tools and slurmrestd (JWT) what job id
// used.
func bothBackendsUsage(e *batchEnv, id string) (scheduler.Usage, scheduler.Usage) {
	t := e.t
	t.Helper()
	_, token := e.restSite()
	t.Setenv("DPSBATCH_TEST_USAGE_JWT", token)
	rest, err := scheduler.NewREST(scheduler.RESTOptions{URL: restJWTURL, TokenEnv: "DPSBATCH_TEST_USAGE_JWT", User: "root"})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := scheduler.NewCLI(scheduler.CLIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var got []scheduler.Usage
	for _, b := range []scheduler.UsageReader{cli, rest} {
		us, err := b.Usage(ctx, []string{id})
		if err != nil {
			t.Fatalf("%T: %v", b, err)
		}
		got = append(got, us[id])
	}
	return got[0], got[1]
}
