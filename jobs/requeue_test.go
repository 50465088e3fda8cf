package jobs

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/injob"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

// requeuedRun is a run of four visits whose job 1001 started, did v001
// and v002, gave a heartbeat, and recorded the stop that Slurm's SIGTERM
// of a requeue looks like; Slurm then queued it again, pending until its
// begin time (the fake says so).
func requeuedRun(t *testing.T) (*env, string, time.Time) {
	t.Helper()
	e := newEnv(t, 4)
	dir := e.submit("run1")
	withState(t, dir, func(st *state.Store) {
		must(t, st.JobStarted("1001", "n1", runtest.FixedNow().Add(-time.Second)))
		runtest.VisitAs(t, st, "1001", "v001", state.Done)
		runtest.VisitAs(t, st, "1001", "v002", state.Done)
		must(t, st.Heartbeat("1001", runtest.FixedNow().Add(2*time.Second), "v003"))
		must(t, st.JobEnded("1001", "STOPPED", 0, "stop requested: terminated", runtest.FixedNow().Add(3*time.Second)))
	})
	begin := runtest.FixedNow().Add(3 * time.Minute)
	e.fake.queue["1001"] = scheduler.Job{ID: "1001", State: "PENDING", Reason: "BeginTime", Expected: begin, Source: "squeue"}
	return e, dir, begin
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A job Slurm requeued reads as requeued while it waits, with Slurm's
// reason and its earliest start: not stopped, no heartbeat of its earlier
// start, no time left.
func TestStatusRequeued(t *testing.T) {
	e, dir, begin := requeuedRun(t)
	e.fake.starts = map[string][]scheduler.Job{"1001": {
		{ID: "1001", State: "NODE_FAIL", Source: "sacct"},
		{ID: "1001", State: "PENDING", Source: "sacct"},
	}}
	rs := status(t, e, dir)
	j := rs.Jobs[0]
	if j.Requeued == nil {
		t.Fatalf("job %+v; want it requeued", j)
	}
	q := *j.Requeued
	if q.SlurmState != "NODE_FAIL" || !strings.Contains(q.Why, "node failure") || !q.Earliest.Equal(begin) ||
		q.Waiting != "BeginTime" || q.Starts != 1 {
		t.Errorf("requeue %+v; want NODE_FAIL (node failure), earliest %v, waiting BeginTime, 1 start", q, begin)
	}
	if !j.Live || j.State != "PENDING" || j.Died || j.Silent || !j.Heartbeat.IsZero() || j.Reason != "" || j.Recorded != state.Requeued {
		t.Errorf("job %+v; want live, pending, without the earlier start's heartbeat or stop", j)
	}
	if rs.Outcome != "pending" || rs.ETA != 0 || !rs.Live {
		t.Errorf("run %s, live %v, %s left; want pending, live, no time left while no job runs", rs.Outcome, rs.Live, rs.ETA)
	}

	// Without accounting, the reason is what the start recorded.
	e.fake.noAccounting = true
	j = status(t, e, dir).Jobs[0]
	if j.Requeued == nil || j.Requeued.SlurmState != "" || !strings.Contains(j.Requeued.Why, "requeued") ||
		!strings.Contains(j.Requeued.Why, "stop requested: terminated") {
		t.Errorf("without accounting: %+v; want requeued, with the recorded stop as its reason", j.Requeued)
	}
}

// Wait keeps waiting through a requeue at its usual pace: the recorded
// end is the earlier start's, not the job's.
func TestWaitThroughRequeue(t *testing.T) {
	e, dir, _ := requeuedRun(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Wait(ctx, e.fake, dir, WaitOptions{Every: time.Millisecond, SlurmEvery: 50 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait: %v; want it still waiting at its deadline", err)
	}
	// Asked at 0, 50ms, 150ms (backing off), not once a millisecond.
	if jobs, _, _ := e.fake.calls(); jobs > 6 {
		t.Errorf("%d squeue calls in 300ms; want about 3, as for any pending job", jobs)
	}
}

// Started again, the job's record is its new start's: its earlier start
// is in its history, and the silent check applies to the new one, also
// before its Pipeline reports.
func TestStatusAfterRequeue(t *testing.T) {
	defer func(c func() time.Time) { clock = c }(clock)
	e, dir, _ := requeuedRun(t)
	restart := runtest.FixedNow().Add(10 * time.Minute)
	clock = func() time.Time { return restart.Add(time.Hour) }

	// Slurm runs it again; its Pipeline has not reported in an hour.
	e.fake.queue["1001"] = scheduler.Job{ID: "1001", State: "RUNNING", Started: restart, Nodes: "n2", Source: "squeue"}
	j := status(t, e, dir).Jobs[0]
	if !j.Silent || j.Recorded != state.Requeued || !j.Started.Equal(restart) {
		t.Errorf("running again, never reported: %+v; want silent, the earlier start's end set aside", j)
	}
	// Ended so, before its Pipeline reported: it died.
	e.fake.queue["1001"] = scheduler.Job{ID: "1001", State: "FAILED", Started: restart, Ended: restart.Add(time.Second), Nodes: "n2", Source: "squeue"}
	if j := status(t, e, dir).Jobs[0]; !j.Died || j.Reason == "stop requested: terminated" {
		t.Errorf("restarted, then ended before reporting: %+v; want died, not the earlier start's stop", j)
	}
	e.fake.queue["1001"] = scheduler.Job{ID: "1001", State: "RUNNING", Started: restart, Nodes: "n2", Source: "squeue"}

	withState(t, dir, func(st *state.Store) {
		must(t, st.StartJob("1001", 1, "n2", restart))
		must(t, st.Heartbeat("1001", restart.Add(time.Hour-5*time.Second), "v003"))
	})
	rs := status(t, e, dir)
	j = rs.Jobs[0]
	if j.Silent || j.Requeued != nil || j.Recorded != "SUBMITTED" || j.Reason != "" || rs.Outcome != "running" {
		t.Errorf("running again, beating: %+v (%s); want running, its start's record only", j, rs.Outcome)
	}
	if len(j.Starts) != 2 || j.Starts[0].State != state.Requeued || j.Starts[0].Host != "n1" ||
		j.Starts[1].Restart != 1 || j.Starts[1].Host != "n2" || !j.Starts[1].Ended.IsZero() {
		t.Errorf("starts %+v; want the requeued one on n1, then the running one on n2", j.Starts)
	}
}

// A requeued job cancelled while it waits did not start again: Slurm
// gives it a start and an end at the cancel, on no node. What its start
// recorded stays its record; it did not die.
func TestStatusRequeuedThenCancelled(t *testing.T) {
	e, dir, _ := requeuedRun(t)
	cancelled := runtest.FixedNow().Add(time.Minute)
	e.fake.queue["1001"] = scheduler.Job{ID: "1001", State: "CANCELLED", Started: cancelled, Ended: cancelled, Source: "squeue"}
	rs := status(t, e, dir)
	j := rs.Jobs[0]
	if j.Died || j.Live || j.Requeued != nil || j.Recorded != "STOPPED" || !strings.Contains(j.Reason, "stop requested: terminated") {
		t.Errorf("cancelled while requeued: %+v; want ended, not died, its start's stop still its record", j)
	}
	if rs.Outcome != OutcomeUnfinished {
		t.Errorf("run %s; want unfinished", rs.Outcome)
	}
}

// The rate counts the time a job ran, not the wait of a requeue.
func TestRunningRate(t *testing.T) {
	t0 := runtest.FixedNow()
	starts := []state.JobStart{
		{Job: "1", Started: t0, Ended: t0.Add(10 * time.Second)},
		{Job: "1", Restart: 1, Started: t0.Add(1000 * time.Second)}, // running
	}
	// 20 visits: the first at t0, the last done at 1010 s.
	if got := runningRate(20, t0, t0.Add(1010*time.Second), starts); math.Abs(got-1) > 1e-9 {
		t.Errorf("rate %g; want 1 visit/s over the 20 s the job ran", got)
	}
	// Overlapping starts (two jobs of a production's pipelines) count once.
	over := append(starts, state.JobStart{Job: "2", Started: t0.Add(5 * time.Second), Ended: t0.Add(15 * time.Second)})
	if got := runningRate(25, t0, t0.Add(1010*time.Second), over); math.Abs(got-1) > 1e-9 {
		t.Errorf("rate %g; want 1 visit/s over 25 s running", got)
	}
	if got := runningRate(10, t0, t0.Add(10*time.Second), nil); math.Abs(got-1) > 1e-9 {
		t.Errorf("rate without starts %g; want 1 over the whole span", got)
	}
}

// A restarted job's rank 0 records its new start on its own, and Slurm's
// word for how the earlier one ended.
func TestInJobRestart(t *testing.T) {
	e, dir, _ := requeuedRun(t)
	e.fake.starts = map[string][]scheduler.Job{"1001": {
		{ID: "1001", State: "REQUEUED", Ended: runtest.FixedNow().Add(4 * time.Second), Source: "sacct"},
		{ID: "1001", State: "RUNNING", Source: "sacct"},
	}}
	p := loadRunPolicy(t, dir)
	serveRun(t, rundir.Layout{Dir: dir}.State(), "1001", 1)
	j := &injob.InJob{StatePath: rundir.Layout{Dir: dir}.State(), JobID: "1001", Restart: 1, Slurm: e.fake,
		Now: func() time.Time { return runtest.FixedNow().Add(time.Hour) }}
	dr := &harness.RunOptions{RunID: "run1", RunDir: dir}
	must(t, j.Hook(p, dr))
	defer j.End(nil, nil)
	js := runtest.JobsOf(t, dir)
	if !js[0].Started.Equal(runtest.FixedNow().Add(time.Hour)) || !js[0].Ended.IsZero() || js[0].State != "SUBMITTED" || js[0].Reason != "" {
		t.Errorf("job after its restart %+v; want its new start only", js[0])
	}
	st, err := state.OpenReadOnly(rundir.Layout{Dir: dir}.State())
	must(t, err)
	defer st.Close()
	starts, err := st.JobStarts()
	must(t, err)
	if len(starts) != 2 || starts[0].State != "REQUEUED" || !strings.Contains(starts[0].Reason, "stop requested: terminated") ||
		!starts[0].Ended.Equal(runtest.FixedNow().Add(4*time.Second)) || starts[1].Restart != 1 {
		t.Errorf("starts %+v; want the first ended by Slurm's requeue, the second started", starts)
	}
}

// A run's rate is over the time its job ran: the wait between a requeued
// job's starts does not count.
func TestStatusRateOverRunningTime(t *testing.T) {
	e := newEnv(t, 4)
	dir := e.submit("run1")
	t0 := runtest.FixedNow()
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	withState(t, dir, func(st *state.Store) {
		must(t, st.JobStarted("1001", "n1", sec(0)))
		for i, v := range []string{"v001", "v002"} {
			must(t, st.VisitStarted(v, "1001", sec(i)))
			must(t, st.VisitEnded(v, state.Done, "", sec(i+1)))
		}
		must(t, st.JobEnded("1001", "STOPPED", 0, "stop requested", sec(2)))
		must(t, st.StartJob("1001", 1, "n2", sec(1000)))
		for i, v := range []string{"v003", "v004"} {
			must(t, st.VisitStarted(v, "1001", sec(1000+i)))
			must(t, st.VisitEnded(v, state.Done, "", sec(1001+i)))
		}
		must(t, st.JobEnded("1001", "COMPLETED", 0, "", sec(1002)))
	})
	e.fake.forget("1001", "COMPLETED")
	if rs := status(t, e, dir); math.Abs(rs.Rate-1) > 1e-9 {
		t.Errorf("rate %g visits/s; want 1 (4 visits in the 4 s the job ran, not over the 1002 s since the first)", rs.Rate)
	}
}
