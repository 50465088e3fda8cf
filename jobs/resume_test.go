package jobs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/input/inputtest"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

func (e *env) resumeOpts(dir string) ResumeOptions {
	return ResumeOptions{Site: e.site, Backend: e.fake, Dir: dir, Now: runtest.FixedNow}
}

// visitStates reads every visit's state and attempts, in order.
func visitStates(t *testing.T, dir string) []state.Visit {
	t.Helper()
	st, err := state.OpenReadOnly(rundir.Layout{Dir: dir}.State())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	vs, err := st.Visits("", 0)
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// deadRun is a run of six visits whose job 1001 died: v001 done, v002
// running (left so), v003 failed, v004 interrupted, v005 and v006
// pending.
func deadRun(t *testing.T, e *env) string {
	t.Helper()
	dir := e.submit("run1")
	withState(t, dir, func(st *state.Store) {
		runtest.VisitAs(t, st, "1001", "v001", state.Done)
		runtest.VisitAs(t, st, "1001", "v002", state.Running)
		runtest.VisitAs(t, st, "1001", "v003", state.Failed)
		runtest.VisitAs(t, st, "1001", "v004", state.Interrupted)
	})
	e.fake.forget("1001", "NODE_FAIL")
	return dir
}

// While a job of the run is live, resume refuses and changes nothing.
func TestResumeRefusesLiveRun(t *testing.T) {
	for _, st := range []string{"RUNNING", "PENDING", "COMPLETING"} {
		t.Run(st, func(t *testing.T) {
			e := newEnv(t, 6)
			dir := deadRun(t, e)
			e.fake.set("1001", st)
			before := visitStates(t, dir)
			_, err := Resume(context.Background(), e.resumeOpts(dir))
			if !errors.Is(err, ErrRunLive) || !strings.Contains(err.Error(), "1001 "+strings.ToLower(st)) ||
				!strings.Contains(err.Error(), "dpsbatch cancel run1") {
				t.Fatalf("Resume: %v; want ErrRunLive naming job 1001", err)
			}
			if after := visitStates(t, dir); !slices.Equal(before, after) {
				t.Errorf("visits changed:\n%+v\n%+v", before, after)
			}
			if _, _, n := e.fake.calls(); n != 1 {
				t.Errorf("%d submissions; want only the first job's", n)
			}
			if _, err := os.Stat(rundir.Layout{Dir: dir}.Script(2)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("attempt-2 script: %v; want none", err)
			}
		})
	}
}

// After a dead job: the visits it left running are interrupted, failed
// and interrupted ones run again, with the pending ones, under attempt 2.
func TestResumeAfterDeadJob(t *testing.T) {
	e := newEnv(t, 6)
	dir := deadRun(t, e)
	res, err := Resume(context.Background(), e.resumeOpts(dir))
	if err != nil {
		t.Fatal(err)
	}
	l := rundir.Layout{Dir: dir}
	if res.Complete || res.Attempt != 2 || res.Visits != 5 || res.Retried != 3 || len(res.Exhausted) != 0 {
		t.Errorf("ResumeResult = %+v; want attempt 2, 5 visits, 3 retried", res)
	}
	if !slices.Equal(res.Jobs, []string{"1002"}) || res.Script != l.Script(2) {
		t.Errorf("jobs %v script %s; want 1002, attempt-2.sbatch", res.Jobs, res.Script)
	}
	script := readAll(t, l.Script(2))
	if s := e.fake.submits[1]; !bytes.Equal(s.Script, script) || s.Dir != dir || s.Dependency != "" {
		t.Errorf("submission: dir %q dependency %q, script is attempt-2.sbatch: %v", s.Dir, s.Dependency, bytes.Equal(s.Script, script))
	}
	if !bytes.Contains(script, []byte("DPSBATCH_ATTEMPT=2")) || !bytes.Contains(script, []byte(l.StopFile(2))) {
		t.Errorf("attempt-2.sbatch is not attempt 2's:\n%s", script)
	}
	want := map[string]state.VisitState{"v001": state.Done, "v002": state.Pending, "v003": state.Pending,
		"v004": state.Pending, "v005": state.Pending, "v006": state.Pending}
	for _, v := range visitStates(t, dir) {
		if v.State != want[v.ID] {
			t.Errorf("visit %s is %s; want %s", v.ID, v.State, want[v.ID])
		}
	}
	js := runtest.JobsOf(t, dir)
	if len(js) != 2 || js[1].ID != "1002" || js[1].Attempt != 2 {
		t.Errorf("jobs %+v; want 1002 as attempt 2", js)
	}

	// The next resume is attempt 3, with its follow-ons chained.
	e.fake.forget("1002", "TIMEOUT")
	o := e.resumeOpts(dir)
	o.AutoResume = 1
	res, err = Resume(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempt != 3 || !slices.Equal(res.Jobs, []string{"1003", "1004"}) || e.fake.submits[3].Dependency != "afterany:1003" {
		t.Errorf("second resume: %+v, dependency %q", res, e.fake.submits[3].Dependency)
	}
	for _, a := range []int{3, 4} {
		if _, err := os.Stat(l.Script(a)); err != nil {
			t.Errorf("attempt-%d script: %v", a, err)
		}
	}
}

// --max-attempts leaves out visits tried that often, and says which.
func TestResumeMaxAttempts(t *testing.T) {
	e := newEnv(t, 6)
	dir := deadRun(t, e)
	o := e.resumeOpts(dir)
	o.MaxAttempts = 1
	res, err := Resume(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Exhausted, []string{"v002", "v003", "v004"}) || res.Retried != 0 || res.Visits != 2 {
		t.Errorf("ResumeResult = %+v; want v002..v004 exhausted, 2 visits", res)
	}
	c := counts(t, dir)
	if c[state.Failed] != 3 || c[state.Pending] != 2 || c[state.Done] != 1 {
		t.Errorf("counts %v; want 3 failed, 2 pending, 1 done", c)
	}
	// Nothing left that may run: complete, nothing submitted.
	withState(t, dir, func(st *state.Store) {
		runtest.VisitAs(t, st, "1002", "v005", state.Done)
		runtest.VisitAs(t, st, "1002", "v006", state.Done)
	})
	e.fake.forget("1002", "COMPLETED")
	res, err = Resume(context.Background(), o)
	if err != nil || !res.Complete || len(res.Jobs) != 0 || len(res.Exhausted) != 3 {
		t.Errorf("Resume: %+v, %v; want complete with 3 exhausted", res, err)
	}
	if _, _, n := e.fake.calls(); n != 2 {
		t.Errorf("%d submissions; want 2", n)
	}
}

// A run whose every visit is done needs nothing.
func TestResumeComplete(t *testing.T) {
	e := newEnv(t, 3)
	dir := e.submit("run1")
	withState(t, dir, func(st *state.Store) {
		for _, id := range visitIDs(3) {
			runtest.VisitAs(t, st, "1001", id, state.Done)
		}
	})
	e.fake.forget("1001", "COMPLETED")
	res, err := Resume(context.Background(), e.resumeOpts(dir))
	if err != nil || !res.Complete || res.Visits != 0 || len(res.Jobs) != 0 {
		t.Fatalf("Resume: %+v, %v; want complete", res, err)
	}
	if _, _, n := e.fake.calls(); n != 1 {
		t.Errorf("%d submissions; want only the first job's", n)
	}
	if _, err := os.Stat(rundir.Layout{Dir: dir}.Script(2)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("attempt-2 script: %v; want none written", err)
	}
}

// A job whose rank 0 recorded its end, which Slurm still lists as
// completing a moment (wait returns before Slurm lets go of it), is
// waited for, not called live.
func TestResumeWaitsForAnEndingJob(t *testing.T) {
	e := newEnv(t, 3)
	dir := e.submit("run1")
	withState(t, dir, func(st *state.Store) {
		for _, id := range visitIDs(3) {
			runtest.VisitAs(t, st, "1001", id, state.Done)
		}
		if err := st.JobEnded("1001", state.EndCompleted, 0, "", runtest.FixedNow()); err != nil {
			t.Fatal(err)
		}
	})
	e.fake.set("1001", "COMPLETING")
	e.fake.onJobs = func(call int, f *fakeBackend) {
		if call >= 3 {
			delete(f.queue, "1001")
			f.history["1001"] = scheduler.Job{ID: "1001", State: "COMPLETED", Source: "sacct"}
		}
	}
	res, err := Resume(context.Background(), e.resumeOpts(dir))
	if err != nil || !res.Complete {
		t.Fatalf("Resume: %+v, %v; want it to wait for the ending job, then find the run complete", res, err)
	}
}

// A dry resume changes nothing and says what would run.
func TestResumeDryRun(t *testing.T) {
	e := newEnv(t, 6)
	dir := deadRun(t, e)
	before := visitStates(t, dir)
	var out bytes.Buffer
	o := e.resumeOpts(dir)
	o.DryRun, o.Out = true, &out
	res, err := Resume(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !res.DryRun || res.Visits != 5 || res.Attempt != 2 || len(res.Jobs) != 0 {
		t.Errorf("ResumeResult = %+v; want a dry attempt 2 of 5 visits", res)
	}
	if !strings.Contains(out.String(), "# ---- attempt-2.sbatch ----") {
		t.Errorf("dry output:\n%s", out.String())
	}
	if after := visitStates(t, dir); !slices.Equal(before, after) {
		t.Errorf("visits changed:\n%+v\n%+v", before, after)
	}
	if _, _, n := e.fake.calls(); n != 1 {
		t.Errorf("%d submissions; want only the first job's", n)
	}
	// For --json: nothing printed, the scripts carried in the result,
	// even with --max-attempts (whose note is printed otherwise).
	o.Out, o.MaxAttempts = nil, 3
	res, err = Resume(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Scripts) != 1 || !strings.HasSuffix(res.Scripts[0].File, "attempt-2.sbatch") || !strings.Contains(res.Scripts[0].Text, "#SBATCH") {
		t.Errorf("dry resume's scripts %+v; want attempt 2's", res.Scripts)
	}
}

func TestResumeBadInput(t *testing.T) {
	e := newEnv(t, 2)
	dir := e.submit("run1")
	e.fake.forget("1001", "COMPLETED")
	o := e.resumeOpts(dir)
	o.MaxAttempts = -1
	_, err := Resume(context.Background(), o)
	inputtest.WantInvalid(t, "negative --max-attempts", err, "--max-attempts")
	// A policy edited since the submission is not the run's any more.
	if err := os.WriteFile(rundir.Layout{Dir: dir}.Policy(), []byte("pipeline: tiny\nslices: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Resume(context.Background(), e.resumeOpts(dir))
	inputtest.WantInvalid(t, "broken policy copy", err, "pipeline.yaml")
	if _, _, n := e.fake.calls(); n != 1 {
		t.Errorf("%d submissions; want only the first job's", n)
	}
}

// The run's copy of the policy edited since the submission: rank 0 of
// the new job would refuse it (InJob.Hook compares checksums), so resume
// must refuse it before submitting a job bound to fail.
func TestResumePolicyChanged(t *testing.T) {
	e := newEnv(t, 3)
	dir := e.submit("run1")
	e.fake.forget("1001", "TIMEOUT")
	if err := os.WriteFile(rundir.Layout{Dir: dir}.Policy(), []byte(inputtest.TinyPolicy+"# edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Resume(context.Background(), e.resumeOpts(dir))
	inputtest.WantInvalid(t, "edited policy", err, "changed since the run was submitted")
	if res != nil {
		t.Errorf("ResumeResult = %+v; want nil", res)
	}
	if _, _, n := e.fake.calls(); n != 1 {
		t.Errorf("%d submissions; want only the first job's", n)
	}
}
