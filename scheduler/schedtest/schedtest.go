// Package schedtest is the test suite every scheduler.Backend passes
// against a real Slurm cluster (scripts/cluster.sh: partition debug of
// four nodes n1..n4, 4 CPUs and 2000 MB each, with accounting), plus the
// helpers its tests and others' use to wait for jobs. The waits poll, and
// belong in tests only: library code never waits for a job.
package schedtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/site"
)

// Partition is the cluster's partition the suite submits to.
const Partition = "debug"

// Poll is the interval of every wait of this package.
const Poll = 200 * time.Millisecond

// Options says what the suite may expect of a backend.
type Options struct {
	// NoAccounting says the backend has no job accounting: History must
	// then return scheduler.ErrNoAccounting.
	NoAccounting bool
	// NoStepSignal says the backend cannot signal a job's steps alone:
	// Cancel with a signal must then return scheduler.ErrNoStepSignal
	// and leave the job alone.
	NoStepSignal bool
}

// Run runs the suite against b. The caller has checked that the cluster
// is there (testenv.NeedCluster). The subtests run in parallel: each
// submits one or two small jobs of one CPU.
func Run(t *testing.T, b scheduler.Backend, o Options) {
	t.Run("Complete", func(t *testing.T) { t.Parallel(); testComplete(t, b, o) })
	t.Run("Fail", func(t *testing.T) { t.Parallel(); testFail(t, b, o) })
	t.Run("Cancel", func(t *testing.T) { t.Parallel(); testCancel(t, b) })
	t.Run("Signal", func(t *testing.T) { t.Parallel(); testSignal(t, b, o) })
	t.Run("Dependency", func(t *testing.T) { t.Parallel(); testDependency(t, b) })
	t.Run("Unknown", func(t *testing.T) { t.Parallel(); testUnknown(t, b, o) })
	t.Run("Partitions", func(t *testing.T) { t.Parallel(); testPartitions(t, b) })
	t.Run("Named", func(t *testing.T) { t.Parallel(); testNamed(t, b) })
}

// Dir returns a new folder for a test's jobs, visible to the nodes (they
// share this host) and writable by every user (slurmrestd's jobs run as
// its own user), removed when the test ends.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dpsbatch-schedtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Script returns a job script named schedtest-name on the suite's
// partition: one task, five minutes, output to name-JOBID.out in the job's
// working directory, then body.
func Script(name, body string) []byte {
	return fmt.Appendf(nil, "#!/bin/bash\n#SBATCH --partition=%s\n#SBATCH --job-name=schedtest-%s\n"+
		"#SBATCH --ntasks=1\n#SBATCH --time=00:05:00\n#SBATCH --output=%s-%%j.out\n%s\n", Partition, name, name, body)
}

// Submit submits script in dir and fails the test on an error.
func Submit(t testing.TB, b scheduler.Backend, dir string, script []byte, dependency string) string {
	t.Helper()
	id, err := b.Submit(context.Background(), scheduler.Submission{Script: script, Dir: dir, Dependency: dependency})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if id == "" {
		t.Fatal("Submit returned an empty job ID")
	}
	return id
}

// WaitFor polls b.Jobs every Poll until job id satisfies cond, and returns
// it; it fails the test after timeout, showing the job as last seen.
func WaitFor(t testing.TB, b scheduler.Backend, id string, timeout time.Duration, what string, cond func(scheduler.Job) bool) scheduler.Job {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last scheduler.Job
	seen := false
	for {
		jobs, err := b.Jobs(context.Background(), []string{id})
		if err != nil {
			t.Fatalf("Jobs(%s): %v", id, err)
		}
		if j, ok := jobs[id]; ok {
			last, seen = j, true
			if cond(j) {
				return j
			}
		}
		if time.Now().After(deadline) {
			if !seen {
				t.Fatalf("job %s: not %s after %v: Jobs never listed it", id, what, timeout)
			}
			t.Fatalf("job %s: not %s after %v; last seen %+v", id, what, timeout, last)
		}
		time.Sleep(Poll)
	}
}

// WaitEnded waits until job id is no longer live and returns it.
func WaitEnded(t testing.TB, b scheduler.Backend, id string, timeout time.Duration) scheduler.Job {
	t.Helper()
	return WaitFor(t, b, id, timeout, "ended", func(j scheduler.Job) bool { return !j.Live() })
}

// WaitFile waits until path exists and returns its content.
func WaitFile(t testing.TB, path string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(path); err == nil {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %v", path, timeout)
		}
		time.Sleep(Poll)
	}
}

// ended is how long a small job may take to end on a shared cluster.
const ended = 2 * time.Minute

// logOutput shows the jobs' output files when the test failed.
func logOutput(t *testing.T, dir string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		outs, _ := filepath.Glob(filepath.Join(dir, "*.out"))
		for _, out := range outs {
			b, _ := os.ReadFile(out)
			t.Logf("%s:\n%s", out, b)
		}
	})
}

func testComplete(t *testing.T, b scheduler.Backend, o Options) {
	dir := Dir(t)
	logOutput(t, dir)
	before := time.Now().Add(-time.Second).Truncate(time.Second)
	id := Submit(t, b, dir, Script("complete", "echo done > complete.txt"), "")

	jobs, err := b.Jobs(context.Background(), []string{id})
	if err != nil {
		t.Fatalf("Jobs: %v", err)
	}
	j, ok := jobs[id]
	switch {
	case !ok:
		t.Fatalf("Jobs(%s) right after Submit: no entry in %v", id, jobs)
	case j.ID != id || j.Name != "schedtest-complete" || j.Partition != Partition || j.Source == "" || j.State == "":
		t.Errorf("Jobs(%s) = %+v: want its ID, name schedtest-complete, partition %s, a state and a source", id, j, Partition)
	case j.Submitted.Before(before) || j.Submitted.After(time.Now().Add(time.Second)):
		t.Errorf("job submitted at %v, want about now", j.Submitted)
	}

	j = WaitEnded(t, b, id, ended)
	if j.State != "COMPLETED" || j.ExitCode != 0 || j.Signal != 0 {
		t.Errorf("job ended %+v, want COMPLETED with exit code 0", j)
	}
	if j.Started.IsZero() || j.Ended.Before(j.Started) || j.Nodes == "" {
		t.Errorf("job ended %+v, want start and end times in order and its nodes", j)
	}
	if got := WaitFile(t, filepath.Join(dir, "complete.txt"), 10*time.Second); got != "done\n" {
		t.Errorf("the job wrote %q in its working directory, want \"done\\n\"", got)
	}
	checkHistory(t, b, o, id, "COMPLETED", 0)
}

func testFail(t *testing.T, b scheduler.Backend, o Options) {
	dir := Dir(t)
	logOutput(t, dir)
	id := Submit(t, b, dir, Script("fail", "echo failing\nexit 3"), "")
	j := WaitEnded(t, b, id, ended)
	if j.State != "FAILED" || j.ExitCode != 3 {
		t.Errorf("job ended %+v, want FAILED with exit code 3", j)
	}
	checkHistory(t, b, o, id, "FAILED", 3)
}

// checkHistory waits until accounting knows job id ended in state with
// exit code. Accounting lags the controller by a few seconds, and may
// first hold the job's end without its start record (seen on Slurm 22.05:
// name "allocation", no partition): the state and exit code must be right
// at once, the rest within the same minute.
func checkHistory(t *testing.T, b scheduler.Backend, o Options, id, state string, code int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	checked := false
	for {
		jobs, err := b.History(context.Background(), []string{id})
		if o.NoAccounting {
			if !errors.Is(err, scheduler.ErrNoAccounting) {
				t.Errorf("History without accounting = %v, %v; want ErrNoAccounting", jobs, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("History(%s): %v", id, err)
		}
		j, ok := jobs[id]
		if ok && !j.Live() {
			if !checked && (j.ID != id || j.State != state || j.ExitCode != code || j.Source == "" || j.Ended.IsZero()) {
				t.Errorf("History(%s) = %+v, want %s with exit code %d, an end time and a source", id, j, state, code)
			}
			checked = true
			if j.Partition == Partition && strings.HasPrefix(j.Name, "schedtest-") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("History(%s) after a minute: %+v, want an ended job with its name and partition %s", id, jobs, Partition)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func testCancel(t *testing.T, b scheduler.Backend) {
	dir := Dir(t)
	logOutput(t, dir)
	id := Submit(t, b, dir, Script("cancel", "sleep 300"), "")
	j := WaitFor(t, b, id, ended, "running", func(j scheduler.Job) bool { return j.State == "RUNNING" || !j.Live() })
	if j.State != "RUNNING" || !j.Live() {
		t.Fatalf("job %+v, want RUNNING and live", j)
	}
	if err := b.Cancel(context.Background(), id, ""); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	j = WaitEnded(t, b, id, ended)
	if j.State != "CANCELLED" {
		t.Errorf("job ended %+v, want CANCELLED", j)
	}
}

func testSignal(t *testing.T, b scheduler.Backend, o Options) {
	dir := Dir(t)
	logOutput(t, dir)
	// The step traps USR1, writes a file and ends well; the batch script
	// then ends too.
	body := `srun --ntasks=1 bash -c 'trap "echo usr1 > usr1.txt; exit 0" USR1; touch ready.txt; while :; do sleep 0.2; done'`
	id := Submit(t, b, dir, Script("signal", body), "")
	WaitFile(t, filepath.Join(dir, "ready.txt"), ended)
	if o.NoStepSignal {
		testNoStepSignal(t, b, dir, id)
		return
	}
	if err := b.Cancel(context.Background(), id, "USR1"); err != nil {
		t.Fatalf("Cancel(%s, USR1): %v", id, err)
	}
	if got := WaitFile(t, filepath.Join(dir, "usr1.txt"), 30*time.Second); got != "usr1\n" {
		t.Errorf("the trap wrote %q, want \"usr1\\n\"", got)
	}
	if j := WaitEnded(t, b, id, ended); j.State != "COMPLETED" || j.ExitCode != 0 {
		t.Errorf("job ended %+v, want COMPLETED with exit code 0 (the step's trap exits 0)", j)
	}
}

func testDependency(t *testing.T, b scheduler.Backend) {
	dir := Dir(t)
	logOutput(t, dir)
	first := Submit(t, b, dir, Script("first", "sleep 4\ntouch first.done"), "")
	second := Submit(t, b, dir, Script("second", "if [ -e first.done ]; then echo after; else echo before; fi > second.txt"),
		"afterany:"+first)

	jobs, err := b.Jobs(context.Background(), []string{first, second})
	if err != nil {
		t.Fatalf("Jobs: %v", err)
	}
	if f, s := jobs[first], jobs[second]; f.Live() && (s.State != "PENDING" || s.Reason != "Dependency") {
		t.Errorf("while the first job is %s, the second is %+v; want PENDING for Dependency", f.State, s)
	}
	f := WaitEnded(t, b, first, ended)
	s := WaitEnded(t, b, second, ended)
	if f.State != "COMPLETED" || s.State != "COMPLETED" {
		t.Errorf("jobs ended %+v and %+v, want both COMPLETED", f, s)
	}
	if got := WaitFile(t, filepath.Join(dir, "second.txt"), 10*time.Second); got != "after\n" {
		t.Errorf("the second job ran %q the first ended, want after", strings.TrimSpace(got))
	}
	if s.Started.Before(f.Ended) {
		t.Errorf("the second job started at %v, before the first ended at %v", s.Started, f.Ended)
	}
}

func testUnknown(t *testing.T, b scheduler.Backend, o Options) {
	ctx := context.Background()
	const unknown = "999999999"
	jobs, err := b.Jobs(ctx, []string{unknown})
	if err != nil || len(jobs) != 0 {
		t.Errorf("Jobs(%s) = %v, %v; want no entry and no error", unknown, jobs, err)
	}
	jobs, err = b.Jobs(ctx, nil)
	if err != nil || len(jobs) != 0 {
		t.Errorf("Jobs(nil) = %v, %v; want no entry and no error", jobs, err)
	}
	dir := Dir(t)
	id := Submit(t, b, dir, Script("known", "true"), "")
	jobs, err = b.Jobs(ctx, []string{unknown, id})
	if _, ok := jobs[id]; err != nil || len(jobs) != 1 || !ok {
		t.Errorf("Jobs(%s, %s) = %v, %v; want the known job only", unknown, id, jobs, err)
	}
	WaitEnded(t, b, id, ended)
	jobs, err = b.History(ctx, []string{unknown})
	switch {
	case o.NoAccounting && !errors.Is(err, scheduler.ErrNoAccounting):
		t.Errorf("History without accounting = %v, %v; want ErrNoAccounting", jobs, err)
	case !o.NoAccounting && (err != nil || len(jobs) != 0):
		t.Errorf("History(%s) = %v, %v; want no entry and no error", unknown, jobs, err)
	}
}

// testNamed: a job submitted under a name (Submission.Name, over the
// script's own) is found by it while it runs and after it ended; a name
// no job has finds nothing.
func testNamed(t *testing.T, b scheduler.Backend) {
	ctx := context.Background()
	since := time.Now()
	name := fmt.Sprintf("schedtest-named:%d", since.UnixNano())
	id, err := b.Submit(ctx, scheduler.Submission{Script: Script("named", "sleep 2"), Dir: Dir(t), Name: name})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	check := func(when string) {
		t.Helper()
		jobs, err := b.Named(ctx, name, since)
		if err != nil || len(jobs) != 1 || jobs[0].ID != id || jobs[0].Name != name {
			t.Errorf("Named(%s) %s = %+v, %v; want job %s alone", name, when, jobs, err, id)
		}
	}
	check("once submitted")
	WaitEnded(t, b, id, ended)
	check("once ended")
	if jobs, err := b.Named(ctx, name+"-none", since); err != nil || len(jobs) != 0 {
		t.Errorf("Named of a name no job has = %+v, %v; want none", jobs, err)
	}
}

func testPartitions(t *testing.T, b scheduler.Backend) {
	lives, err := b.Partitions(context.Background())
	if err != nil {
		t.Fatalf("Partitions: %v", err)
	}
	i := slices.IndexFunc(lives, func(l site.Live) bool { return l.Name == Partition })
	if i < 0 {
		t.Fatalf("Partitions = %+v: no %s", lives, Partition)
	}
	l := lives[i]
	if !l.Up || !slices.Equal(l.Nodes, []string{"n1", "n2", "n3", "n4"}) || l.CPUsPerNode != 4 || l.MemoryMB != 2000 ||
		l.NodeList != "n[1-4]" || !l.Default {
		t.Errorf("partition %s = %+v; want up, default, nodes n[1-4] = n1..n4 of 4 CPUs and 2000 MB", Partition, l)
	}
}

// testNoStepSignal: a backend that cannot signal the steps alone refuses
// to, and the job runs on untouched until cancelled.
func testNoStepSignal(t *testing.T, b scheduler.Backend, dir, id string) {
	ctx := context.Background()
	if err := b.Cancel(ctx, id, "USR1"); !errors.Is(err, scheduler.ErrNoStepSignal) {
		t.Errorf("Cancel(%s, USR1) = %v, want ErrNoStepSignal", id, err)
	}
	time.Sleep(2 * time.Second)
	if _, err := os.Stat(filepath.Join(dir, "usr1.txt")); err == nil {
		t.Error("the step got USR1 after all")
	}
	if j := WaitFor(t, b, id, ended, "running", func(j scheduler.Job) bool { return true }); j.State != "RUNNING" {
		t.Errorf("job %+v after the refused signal, want RUNNING", j)
	}
	if err := b.Cancel(ctx, id, ""); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	WaitEnded(t, b, id, ended)
}
