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
	"github.com/dpsbatch/dpsbatch/rundir"
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

// usageOf polls status --json (through dps) until the run's job has its
// usage from accounting (which hears of a job's end a few seconds after
// it).
func usageOf(t *testing.T, dps func(args ...string) string, run string, timeout time.Duration) usageStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var all []usageStatus
		out := dps("status", "--json", run)
		if err := json.Unmarshal([]byte(out), &all); err != nil || len(all) != 1 {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		if all[0].UsageNote != "" {
			t.Fatalf("status --json: usage note %q", all[0].UsageNote)
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
// and the report draws it. One run goes through Slurm's tools, one
// through slurmrestd; both backends give the same usage of a job.
func TestBatchUsage(t *testing.T) {
	e := newBatchEnv(t)
	restSite, token := e.restSite()
	tools := func(args ...string) string { return e.must(0, 3*time.Minute, args...) }
	rest := func(args ...string) string { return restRunner{e, restSite}.must(0, args...) }
	// Each slice's stage runs a program that holds 60 MiB for 6 s:
	// Slurm samples the tasks every 5 s (scripts/cluster.sh) and at the
	// step's end.
	policy, vf := e.twoSlicePipeline("usage", `  - name: hold
    type: exec
    settings:
      command: [python3, -c, "import time; a = bytearray(60 << 20); a[::4096] = b'x' * len(a[::4096]); time.sleep(6)"]
      timeout: 60s
`, "v001")
	runs := []struct {
		name string
		dps  func(args ...string) string
	}{{"usage-tools", tools}, {"usage-rest", rest}}
	for _, r := range runs {
		r.dps("submit", policy, "--visits", vf, "--name", r.name, "--mem-per-slice", "300M")
		e.cancelAtEnd(r.name)
	}
	var ids []string
	for _, r := range runs {
		r.dps("wait", "--interval", "1s", r.name)
		st := usageOf(t, r.dps, r.name, 90*time.Second)
		checkUsage(t, r.name, st)
		stored := storedUsage(t, filepath.Join(e.root, r.name))
		if len(stored) != 1 || stored[0].Job != st.Jobs[0].ID || stored[0].Peak().MaxRSS != st.Jobs[0].Usage.MaxRSSBytes {
			t.Fatalf("%s: the state file holds %+v, want the job's usage as status showed it", r.name, stored)
		}
		text := r.dps("status", r.name)
		if !strings.Contains(text, "usage (1 job, from accounting)") || !strings.Contains(text, "of the 300.0 MiB each slice asked for") {
			t.Errorf("%s: status does not show the usage against what the slices asked for:\n%s", r.name, text)
		}
		page := r.dps("report", r.name, "-o", "-")
		if _, chart, _ := strings.Cut(page, `<svg id="usage-memory-chart"`); !strings.Contains(chart, `data-job="`+st.Jobs[0].ID+`"`) {
			t.Errorf("%s: the report draws no memory bar of job %s", r.name, st.Jobs[0].ID)
		}
		ids = append(ids, st.Jobs[0].ID)
	}

	byTools, byREST := bothBackendsUsage(t, token, ids)
	if !reflect.DeepEqual(byTools, byREST) {
		t.Errorf("usage through Slurm's tools\n%+v\nthrough slurmrestd\n%+v", byTools, byREST)
	}
}

// checkUsage checks the usage status showed of a run of one job of two
// slices that each held 60 MiB and asked for 300 MB.
func checkUsage(t *testing.T, run string, st usageStatus) {
	t.Helper()
	if st.Usage == nil || len(st.Jobs) != 1 || st.Jobs[0].Usage == nil {
		t.Fatalf("%s: no usage 90 s after the run ended: %+v", run, st)
	}
	u, ju := st.Usage, st.Jobs[0].Usage
	if u.Jobs != 1 || u.MemPerSliceMB != 300 || u.MaxRSSJob != st.Jobs[0].ID || u.MaxRSSBytes < 60<<20 || u.MaxRSSBytes > 300<<20 ||
		u.ElapsedSeconds < 6 || u.CPUSeconds <= 0 {
		t.Errorf("%s: run's usage %+v: want 1 job, 300 MB asked per slice, a task's peak between 60 MiB and 300 MB, 6 s or more", run, u)
	}
	if ju.MaxRSSStep != "0" || ju.MaxRSSNode == "" || ju.CPUs < 3 || ju.State != "COMPLETED" || len(ju.Steps) < 2 {
		t.Errorf("%s: job's usage %+v: want the peak in step 0 (the srun of the ranks), 3 CPUs or more, the batch step too", run, ju)
	}
}

// storedUsage reads the usage the run's state file holds.
func storedUsage(t *testing.T, dir string) []state.JobUsage {
	t.Helper()
	st, err := state.OpenReadOnly(filepath.Join(dir, rundir.StateFile))
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

// bothBackendsUsage asks Slurm's tools and slurmrestd (JWT, with token)
// what the jobs ids used.
func bothBackendsUsage(t *testing.T, token string, ids []string) (byTools, byREST map[string]scheduler.Usage) {
	t.Helper()
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
	var got []map[string]scheduler.Usage
	for _, b := range []scheduler.UsageReader{cli, rest} {
		us, err := b.Usage(ctx, ids)
		if err != nil || len(us) != len(ids) {
			t.Fatalf("%T: %+v, %v; want the usage of %v", b, us, err, ids)
		}
		got = append(got, us)
	}
	return got[0], got[1]
}
