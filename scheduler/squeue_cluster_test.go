package scheduler

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/testenv"
)

// These tests run squeue on the local cluster (scripts/cluster.sh). The
// shared suite (TestCLIBackend) covers Jobs through the Backend; these
// compare it with squeue --json, and time both.

// sbatchWrap submits a one-line job named name with sbatch directly (a
// name with a newline cannot go in a #SBATCH line), held when hold, and
// cancels it when the test ends.
func sbatchWrap(t testing.TB, name, wrap string, hold bool) string {
	t.Helper()
	args := []string{"--parsable", "--partition=debug", "--time=1", "--output=/dev/null", "--chdir=/tmp",
		"--job-name=" + name, "--wrap=" + wrap}
	if hold {
		args = append(args, "--hold")
	}
	out, err := exec.Command("sbatch", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("sbatch %q: %v: %s", args, err, out)
	}
	id, err := parseSbatch(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("scancel", id).Run() })
	return id
}

// jsonJobs is Jobs as it was before squeue's text output: squeue --json,
// every remembered job, filtered here. It also returns the size of
// squeue's output and the number of jobs in it.
func jsonJobs(ctx context.Context, c *CLI, ids []string) (map[string]Job, int, int, error) {
	out, err := c.run(ctx, nil, nil, "squeue", "--json")
	if err != nil {
		return nil, 0, 0, err
	}
	all, err := parseSqueue(out)
	if err != nil {
		return nil, 0, 0, err
	}
	got := map[string]Job{}
	for _, j := range all {
		for _, id := range ids {
			if j.ID == id {
				got[id] = j
			}
		}
	}
	return got, len(out), len(all), nil
}

// TestJobsOnCluster checks that Jobs gives the Job values squeue --json
// gives, for ended and held jobs of hostile names, and leaves forgotten
// jobs out without an error whether asked alone, together or with known
// ones.
func TestJobsOnCluster(t *testing.T) {
	testenv.NeedCluster(t, 1, "sbatch", "squeue", "scancel")
	c, err := NewCLI(CLIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ok := sbatchWrap(t, "squeue-ok", "true", false)
	fail := sbatchWrap(t, "squeue|fail x", "exit 3", false)
	forged := sbatchWrap(t, "held\n1|1|COMPLETED|None|0\n2~X~COMPLETED", "true", true)
	odd := sbatchWrap(t, "ünï %j,:0~ \t", "true", true)
	ids := []string{ok, fail, forged, odd}

	deadline := time.Now().Add(2 * time.Minute)
	for {
		jobs, err := c.Jobs(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) == 4 && !jobs[ok].Live() && !jobs[fail].Live() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs %s and %s not ended after 2 minutes: %+v", ok, fail, jobs)
		}
		time.Sleep(200 * time.Millisecond)
	}

	const forgotten, forgotten2 = "999999999", "999999998"
	got, err := c.Jobs(ctx, append(ids, forgotten))
	if err != nil {
		t.Fatal(err)
	}
	want, _, _, err := jsonJobs(ctx, c, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || len(want) != 4 {
		t.Fatalf("Jobs = %+v; squeue --json %+v; want the 4 jobs in both", got, want)
	}
	for _, id := range ids {
		if got[id] != want[id] {
			t.Errorf("job %s\n     Jobs %+v\n   --json %+v", id, got[id], want[id])
		}
	}
	if j := got[fail]; j.State != "FAILED" || j.ExitCode != 3 || j.Name != "squeue|fail x" {
		t.Errorf("job %s %+v, want FAILED with exit code 3", fail, j)
	}
	if j := got[forged]; j.State != "PENDING" || j.Reason != "JobHeldUser" || !strings.HasPrefix(j.Name, "held\n1|") {
		t.Errorf("job %s %+v, want PENDING for JobHeldUser with its whole name", forged, j)
	}

	for _, tc := range []struct {
		ids  []string
		want int // 1 when odd is among ids
	}{
		{[]string{forgotten}, 0},
		{[]string{forgotten, forgotten2}, 0},
		{[]string{forgotten, odd, forgotten2}, 1},
		{[]string{odd}, 1},
	} {
		jobs, err := c.Jobs(ctx, tc.ids)
		if _, known := jobs[odd]; err != nil || len(jobs) != tc.want || known != (tc.want == 1) {
			t.Errorf("Jobs(%v) = %v, %v; want job %s only if asked, and no error", tc.ids, jobs, err, odd)
		}
	}
}

// BenchmarkJobs times one Jobs call about four jobs and one forgotten
// against the old way (squeue --json, filtered) on the local cluster, as
// it is: the time of both grows with the jobs slurmctld remembers, the
// JSON's much faster. It reports squeue's output bytes per call and the
// number of remembered jobs.
func BenchmarkJobs(b *testing.B) {
	testenv.NeedCluster(b, 1, "sbatch", "squeue", "scancel")
	c, err := NewCLI(CLIOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var ids []string
	for i := range 4 {
		ids = append(ids, sbatchWrap(b, "bench-"+string(rune('a'+i)), "true", true))
	}
	ids = append(ids, "999999999")
	_, jsonBytes, remembered, err := jsonJobs(ctx, c, ids)
	if err != nil {
		b.Fatal(err)
	}
	sep := squeueSeparator()
	text, err := c.run(ctx, nil, c.environ("SLURM_TIME_FORMAT=%s"), "squeue", "--noheader", "--states=all",
		"--jobs="+strings.Join(ids, ","), "--Format="+squeueFormat(sep))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			if jobs, _, _, err := jsonJobs(ctx, c, ids); err != nil || len(jobs) != 4 {
				b.Fatalf("%v, %v", jobs, err)
			}
		}
		b.ReportMetric(float64(jsonBytes), "B/call")
		b.ReportMetric(float64(remembered), "remembered")
	})
	b.Run("text", func(b *testing.B) {
		for b.Loop() {
			if jobs, err := c.Jobs(ctx, ids); err != nil || len(jobs) != 4 {
				b.Fatalf("%v, %v", jobs, err)
			}
		}
		b.ReportMetric(float64(len(text)), "B/call")
		b.ReportMetric(float64(remembered), "remembered")
	})
}
