package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/input/inputtest"
	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/site"
	"github.com/dpsbatch/dpsbatch/state"
)

// growEnv is newEnv on a site that grows time twofold and memory by half.
func growEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, 6)
	s, err := site.Parse(filepath.Join(filepath.Dir(e.root), "site.yaml"),
		fmt.Appendf(nil, siteYAML+"scheduler:\n  grow: {time: 2, memory: 1.5}\n", e.root))
	if err != nil {
		t.Fatal(err)
	}
	e.site = s
	return e
}

// growRun submits run1 with growth on for two more jobs, asking 20
// minutes, and leaves its job 1001 running, v001 done.
func growRun(t *testing.T, e *env) string {
	t.Helper()
	o := e.opts("run1")
	o.Grow, o.AutoResume, o.Request.Time = true, 2, 20*time.Minute
	sub, err := Submit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	withState(t, sub.Dir, func(st *state.Store) { runtest.VisitAs(t, st, "1001", "v001", state.Done) })
	e.fake.set("1001", "RUNNING")
	return sub.Dir
}

// autoResume is what the job script of job of the run in dir runs at its
// end, after rank 0 recorded end and reason.
func (e *env) autoResume(t *testing.T, dir, job string, end state.JobEnd, reason string) *ResumeResult {
	t.Helper()
	withState(t, dir, func(st *state.Store) {
		if err := st.JobEnded(job, end, 0, reason, runtest.FixedNow()); err != nil {
			t.Fatal(err)
		}
	})
	o := e.resumeOpts(dir)
	o.Auto, o.Job = true, job
	res, err := Resume(context.Background(), o)
	if err != nil {
		t.Fatalf("resume --auto at the end of job %s: %v", job, err)
	}
	return res
}

// With growth on, no follow-on is chained: the job script submits the
// next itself at its end, and a job that stopped because its time limit
// was near gets a successor with twice its time, up to the partition's
// max_time; once the jobs may submit no more, resume --auto submits
// nothing.
func TestGrowthTime(t *testing.T) {
	e := growEnv(t)
	dir := growRun(t, e)
	l := rundir.Layout{Dir: dir}
	if _, _, n := e.fake.calls(); n != 1 {
		t.Fatalf("%d submissions; want the first job alone, no chain", n)
	}
	script := readAll(t, l.Script(1))
	if !bytes.Contains(script, []byte("resume --auto "+dir)) || !bytes.Contains(script, []byte("--time=00:20:00")) {
		t.Fatalf("attempt 1's script does not submit the next job at its end:\n%s", script)
	}

	res := e.autoResume(t, dir, "1001", state.EndStopped, rundir.TimeLimitNear+": SIGUSR1 from Slurm")
	if len(res.Jobs) != 1 || res.Plan.Time != 40*time.Minute || !strings.Contains(res.Grown, "time 00:20:00 -> 00:40:00") {
		t.Fatalf("first successor: jobs %v, time %s, grown %q; want one job of 40 minutes", res.Jobs, res.Plan.Time, res.Grown)
	}
	set := settingsOf(t, dir)
	if set.AutoGrow != 1 || set.Request.Time != 40*time.Minute || !strings.Contains(set.Grown, "job 1001 stopped with visits left") {
		t.Errorf("settings after the first growth: %+v", set)
	}
	rs, err := Status(context.Background(), e.fake, []string{dir})
	if err != nil || rs[0].Request.Grown != set.Grown || rs[0].Request.GrowLeft != 1 {
		t.Errorf("status request %+v, %v; want the growth shown", rs[0].Request, err)
	}

	e.fake.forget("1001", "COMPLETED")
	e.fake.set("1002", "RUNNING")
	res = e.autoResume(t, dir, "1002", state.EndStopped, rundir.TimeLimitNear+": 1m left")
	if len(res.Jobs) != 1 || res.Plan.Time != time.Hour || !strings.Contains(res.Grown, "time 00:40:00 -> 01:00:00") {
		t.Fatalf("second successor: time %s, grown %q; want the partition's hour", res.Plan.Time, res.Grown)
	}
	if bytes.Contains(readAll(t, l.Script(3)), []byte("resume --auto")) {
		t.Errorf("the last job allowed still submits another")
	}

	e.fake.forget("1002", "COMPLETED")
	e.fake.set("1003", "RUNNING")
	res = e.autoResume(t, dir, "1003", state.EndStopped, rundir.TimeLimitNear+": 1m left")
	if len(res.Jobs) != 0 || res.Skipped == "" {
		t.Errorf("resume --auto with no job left to submit: %+v", res)
	}
	if _, _, n := e.fake.calls(); n != 3 {
		t.Errorf("%d submissions; want 3", n)
	}
}

// A job whose step slurmstepd killed for memory gets a successor with
// half as much memory again per slice (from a CPU's share of a node when
// the run asked for none); a job that ended short of nothing gets one as
// it was; another live job of the run still refuses.
func TestGrowthMemory(t *testing.T) {
	e := growEnv(t)
	dir := growRun(t, e)
	l := rundir.Layout{Dir: dir}
	log := "dpsbatch: 2026-12-06T21:43:50+0000 job 1001 starts on n1, SLURM_RESTART_COUNT=unset (first start)\n" +
		"slurmstepd-n1: error: StepId=1001.0 exceeded memory limit (265289728 > 104857600), being killed\n"
	if err := os.WriteFile(l.SlurmLog("1001"), []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	withState(t, dir, func(st *state.Store) {
		if err := st.AddJob(state.Job{ID: "1009", Attempt: 9, State: "SUBMITTED"}); err != nil {
			t.Fatal(err)
		}
	})
	e.fake.set("1009", "PENDING")
	o := e.resumeOpts(dir)
	o.Auto, o.Job = true, "1001"
	if _, err := Resume(context.Background(), o); !errors.Is(err, ErrRunLive) || !strings.Contains(err.Error(), "1009") ||
		strings.Contains(err.Error(), "1001") {
		t.Fatalf("resume --auto beside another live job: %v; want ErrRunLive naming 1009 alone", err)
	}
	e.fake.forget("1009", "CANCELLED")

	res := e.autoResume(t, dir, "1001", state.EndFailed, "")
	if res.Plan.MemPerCPUMB != 750 || !strings.Contains(res.Grown, "memory per slice 500M -> 750M") ||
		!strings.Contains(res.Grown, "StepId=1001.0 exceeded memory limit") {
		t.Fatalf("memory: %d MB per CPU, grown %q; want 750", res.Plan.MemPerCPUMB, res.Grown)
	}
	e.fake.forget("1001", "FAILED")
	e.fake.set("1002", "RUNNING")
	res = e.autoResume(t, dir, "1002", state.EndVisitsFailed, "1 visits failed")
	if res.Plan.MemPerCPUMB != 750 || res.Grown != "" || len(res.Jobs) != 1 {
		t.Errorf("after a job short of nothing: %d MB, grown %q, jobs %v; want the same request", res.Plan.MemPerCPUMB, res.Grown, res.Jobs)
	}
}

// Growth on a site without scheduler.grow, or without a number of jobs,
// is bad input.
func TestGrowthNeedsSiteAndCount(t *testing.T) {
	e := newEnv(t, 2)
	o := e.opts("run1")
	o.Grow, o.AutoResume = true, 2
	if _, err := Submit(context.Background(), o); !errors.Is(err, conf.ErrInvalid) || !strings.Contains(err.Error(), "scheduler.grow") {
		t.Errorf("submit --grow on a site without scheduler.grow: %v", err)
	}
	e = growEnv(t)
	o = e.opts("run1")
	o.Grow = true
	if _, err := Submit(context.Background(), o); !errors.Is(err, conf.ErrInvalid) || !strings.Contains(err.Error(), "--auto-resume") {
		t.Errorf("submit --grow without --auto-resume: %v", err)
	}
	if _, _, n := e.fake.calls(); n != 0 {
		t.Errorf("%d submissions; want none", n)
	}
}

// A job Slurm ended TIMEOUT ran no command at its end: resume --grow by
// hand grows from it, and turns growth on for the jobs after.
func TestGrowthByHandAfterTimeout(t *testing.T) {
	e := growEnv(t)
	dir := growRun(t, e)
	e.fake.forget("1001", "TIMEOUT")
	o := e.resumeOpts(dir)
	o.Grow, o.AutoResume = true, 3
	res, err := Resume(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Plan.Time != 40*time.Minute || !strings.Contains(res.Grown, "job 1001 ran out of time (Slurm: TIMEOUT)") || len(res.Jobs) != 1 {
		t.Errorf("resume --grow after a TIMEOUT: time %s, grown %q, jobs %v", res.Plan.Time, res.Grown, res.Jobs)
	}
	if set := settingsOf(t, dir); set.AutoGrow != 3 {
		t.Errorf("growth left %d; want 3", set.AutoGrow)
	}

	// A resume without --grow turns growth off: no command at the end.
	e.fake.forget("1002", "TIMEOUT")
	if _, err := Resume(context.Background(), e.resumeOpts(dir)); err != nil {
		t.Fatal(err)
	}
	if set := settingsOf(t, dir); set.AutoGrow != 0 || bytes.Contains(readAll(t, rundir.Layout{Dir: dir}.Script(3)), []byte("resume --auto")) {
		t.Errorf("growth still on after a resume without --grow: %+v", set)
	}
}

// Growth stops at the partition's limits and says why it cannot grow.
func TestGrowLimits(t *testing.T) {
	p := site.Partition{Name: "debug", CPUsPerNode: 4, MemoryMB: 2000, MaxTime: time.Hour}
	for _, c := range []struct {
		cur, max time.Duration
		factor   float64
		want     time.Duration
		what     string
	}{
		{20 * time.Minute, time.Hour, 2, 40 * time.Minute, "time 00:20:00 -> 00:40:00"},
		{40 * time.Minute, time.Hour, 2, time.Hour, "time 00:40:00 -> 01:00:00"},
		{time.Hour, time.Hour, 2, 0, "already the partition's max_time 01:00:00"},
		{time.Hour, 0, 1.5, 90 * time.Minute, "time 01:00:00 -> 01:30:00"},
		{time.Hour, 0, 0, 0, "no time factor"},
	} {
		if got, what := growTime(c.cur, c.max, c.factor); got != c.want || !strings.Contains(what, c.what) {
			t.Errorf("growTime(%s, %s, %v) = %s, %q; want %s, %q", c.cur, c.max, c.factor, got, what, c.want, c.what)
		}
	}
	for _, c := range []struct {
		memPerCPU, cpus int
		p               site.Partition
		factor          float64
		want            int
		what            string
	}{
		{0, 1, p, 1.5, 750, "memory per slice 500M -> 750M"},
		{600, 2, p, 2, 2000, "memory per slice 1200M -> 2000M"},
		{1000, 2, p, 2, 0, "already a node's 2000M"},
		{0, 1, site.Partition{CPUsPerNode: 4}, 2, 0, "gives the partition no memory"},
		{300, 1, p, 0, 0, "no memory factor"},
	} {
		plan := scheduler.Plan{MemPerCPUMB: c.memPerCPU, CPUsPerTask: c.cpus}
		if got, what := growMemory(plan, c.p, c.factor); got != c.want || !strings.Contains(what, c.what) {
			t.Errorf("growMemory(%d x %d, %v) = %d, %q; want %d, %q", c.memPerCPU, c.cpus, c.factor, got, what, c.want, c.what)
		}
	}
}

// A policy's grow factors replace the site's (here, a site with none).
func TestGrowthPolicyFactors(t *testing.T) {
	e := newEnv(t, 6)
	e.policy = e.write("pipeline.yaml", inputtest.TinyPolicy+"grow: {memory: 3}\n")
	dir := growRun(t, e)
	l := rundir.Layout{Dir: dir}
	log := "slurmstepd-n1: error: StepId=1001.0 exceeded memory limit (265289728 > 104857600), being killed\n"
	if err := os.WriteFile(l.SlurmLog("1001"), []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	res := e.autoResume(t, dir, "1001", state.EndFailed, "")
	if res.Plan.MemPerCPUMB != 1500 || !strings.Contains(res.Grown, "memory per slice 500M -> 1500M") {
		t.Errorf("memory %d MB per CPU, grown %q; want the policy's factor 3", res.Plan.MemPerCPUMB, res.Grown)
	}
}
