package monitor

import (
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/jobs"
	"github.com/dpsbatch/dpsbatch/state"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// running is a snapshot at t0 of a run of n visits whose job 7 runs,
// started a minute before, heartbeating every 10 s.
func running(n int) Snapshot {
	return Snapshot{At: t0, Status: jobs.RunStatus{
		Run: "r1", Dir: "/runs/r1", Visits: n, Heartbeat: 10 * time.Second, Live: true, Outcome: jobs.OutcomeRunning,
		Counts: map[state.VisitState]int{state.Pending: n},
		Jobs: []jobs.JobStatus{{ID: "7", Attempt: 1, State: "RUNNING", Live: true, Recorded: "RUNNING",
			Started: t0.Add(-time.Minute), Heartbeat: t0.Add(-5 * time.Second)}},
	}, Visits: map[string][]state.Visit{}}
}

// visit is a visit of job 7 that ended ago before t0 in st.
func visit(id string, st state.VisitState, ago time.Duration, msg string) state.Visit {
	return state.Visit{ID: id, State: st, Job: "7", Started: t0.Add(-ago - time.Second), Ended: t0.Add(-ago), Err: msg}
}

func only(t *testing.T, conds []Condition, rule string) Condition {
	t.Helper()
	if len(conds) != 1 || conds[0].Rule != rule {
		t.Fatalf("conditions %+v; want one %s", conds, rule)
	}
	return conds[0]
}

func TestHeartbeatRule(t *testing.T) {
	s := running(3)
	if c := Evaluate(Default(), s); len(c) != 0 {
		t.Fatalf("a job that heartbeat 5 s ago: %+v; want nothing", c)
	}
	s.Status.Jobs[0].Heartbeat, s.Status.Jobs[0].HeartbeatVisit = t0.Add(-95*time.Second), "v2"
	s.Status.Heartbeat = 30 * time.Second
	c := only(t, Evaluate(Default(), s), RuleHeartbeat)
	if c.Job != "7" || c.Evidence != "no heartbeat for 1m35s (interval 30s, alert after 3 missed); visit v2 was in flight" {
		t.Errorf("%+v", c)
	}
	// Not while pending, nor once the Pipeline recorded its end.
	s.Status.Jobs[0].Recorded = "STOPPED"
	if c := Evaluate(Default(), s); len(c) != 0 {
		t.Errorf("a job that recorded its end: %+v; want nothing", c)
	}
	// None yet: judged from the start, with a grace.
	s = running(3)
	s.Status.Jobs[0].Heartbeat = time.Time{}
	if c := Evaluate(Default(), s); len(c) != 0 {
		t.Errorf("a job started a minute ago, no heartbeat yet: %+v; want nothing", c)
	}
	s.Status.Jobs[0].Started = t0.Add(-2 * time.Minute)
	if c := only(t, Evaluate(Default(), s), RuleHeartbeat); !strings.HasPrefix(c.Evidence, "no heartbeat since the job started, 2m0s") {
		t.Errorf("%+v", c)
	}
}

func TestSliceLostRule(t *testing.T) {
	s := running(3)
	s.Visits[""] = []state.Visit{visit("v1", state.Done, time.Second, ""),
		visit("v2", state.Interrupted, 0, "interrupted: comm: aborted: comm: tcp: rank 2 on host n1 lost: read: EOF"),
		visit("v3", state.Interrupted, 0, "interrupted by a stop signal: ccd=1")}
	c := only(t, Evaluate(Default(), s), RuleSliceLost)
	if c.Job != "7" || !strings.HasPrefix(c.Evidence, "visit v2: interrupted: comm: aborted") || !strings.Contains(c.Evidence, "rank 2 on host n1 lost") {
		t.Errorf("%+v", c)
	}
	// Or from the end the job recorded, once.
	s.Status.Jobs[0].Reason = "comm: aborted: comm: tcp: rank 2 on host n1 lost"
	only(t, Evaluate(Default(), s), RuleSliceLost)
	s.Visits[""] = nil
	if c := only(t, Evaluate(Default(), s), RuleSliceLost); !strings.HasPrefix(c.Evidence, "job 7 ended") {
		t.Errorf("%+v", c)
	}
}

func TestFailureRateRule(t *testing.T) {
	r := Default()
	r.FailureRate = FailureRateRule{Visits: 4, Above: 0.5}
	s := running(10)
	s.Visits[""] = []state.Visit{
		visit("v1", state.Failed, 9*time.Second, "old"),
		visit("v2", state.Failed, 8*time.Second, "old"),
		visit("v3", state.Failed, 7*time.Second, "old"),
		visit("v4", state.Done, 6*time.Second, ""),
		visit("v5", state.Done, 5*time.Second, ""),
		visit("v6", state.Failed, 4*time.Second, "boom"),
		visit("v7", state.Running, 0, ""),
	}
	// The last 4 ended: v3 v4 v5 v6, 2 failed: not above half.
	if c := Evaluate(r, s); len(c) != 0 {
		t.Fatalf("2 of the last 4 failed: %+v; want nothing", c)
	}
	s.Visits[""] = append(s.Visits[""], visit("v9", state.Failed, 2*time.Second, "bang"), visit("v8", state.Failed, 3*time.Second, "bong"))
	c := only(t, Evaluate(r, s), RuleFailureRate)
	if c.Evidence != "3 of the last 4 visits failed (alert above 50%); latest: visit v9: bang" {
		t.Errorf("%+v", c)
	}
	// Fewer visits than the window: judged once all have ended.
	s = running(2)
	s.Visits[""] = []state.Visit{visit("v1", state.Failed, 2*time.Second, "x")}
	if c := Evaluate(r, s); len(c) != 0 {
		t.Errorf("1 of 2 ended: %+v; want nothing", c)
	}
	s.Visits[""] = append(s.Visits[""], visit("v2", state.Failed, time.Second, "y"))
	if c := only(t, Evaluate(r, s), RuleFailureRate); !strings.HasPrefix(c.Evidence, "2 of the last 2 visits failed") {
		t.Errorf("%+v", c)
	}
}

func TestNoProgressRule(t *testing.T) {
	r := Default()
	r.NoProgress.Window = 30 * time.Second
	s := running(3)
	s.Status.Counts = map[state.VisitState]int{state.Done: 1, state.Running: 1, state.Pending: 1}
	s.Visits[""] = []state.Visit{visit("v1", state.Done, 20*time.Second, ""), {ID: "v2", State: state.Running, Job: "7", Started: t0.Add(-19 * time.Second)}}
	if c := Evaluate(r, s); len(c) != 0 {
		t.Fatalf("a visit ended 20 s ago: %+v; want nothing", c)
	}
	s.At = t0.Add(20 * time.Second)
	c := only(t, Evaluate(r, s), RuleNoProgress)
	if c.Job != "7" || c.Evidence != "no visit ended for 40s (since visit v1 ended; window 30s); in flight: visit v2 (for 39s)" {
		t.Errorf("%+v", c)
	}
	// A listening run with nothing to do is waiting, not stuck.
	s.Status.Counts = map[state.VisitState]int{state.Done: 2}
	if c := Evaluate(r, s); len(c) != 0 {
		t.Errorf("nothing left to run: %+v; want nothing", c)
	}
}

func TestEndedEarlyRule(t *testing.T) {
	s := running(5)
	s.Status.Live, s.Status.Outcome = false, jobs.OutcomeUnfinished
	s.Status.Counts = map[state.VisitState]int{state.Done: 2, state.Pending: 2, state.Interrupted: 1}
	s.Status.Jobs[0].Live, s.Status.Jobs[0].State, s.Status.Jobs[0].Reason = false, "CANCELLED", "None; shutdown: SIGTERM"
	c := only(t, Evaluate(Default(), s), RuleEndedEarly)
	if c.Evidence != "job 7 ended CANCELLED with 3 of 5 visits left (2 pending, 1 interrupted): None; shutdown: SIGTERM" {
		t.Errorf("%+v", c)
	}
	for _, o := range []jobs.Outcome{jobs.OutcomeDone, jobs.OutcomeFailed, jobs.OutcomePending} {
		s.Status.Outcome = o
		if c := Evaluate(Default(), s); len(c) != 0 {
			t.Errorf("outcome %s: %+v; want nothing", o, c)
		}
	}
}

// A production's pipelines are judged each on its own, and say which.
func TestRulesPerPipeline(t *testing.T) {
	a, b := running(2).Status, running(2).Status
	a.Pipeline, b.Pipeline = "a", "b"
	b.Jobs[0].Heartbeat = t0.Add(-time.Hour)
	s := Snapshot{At: t0, Status: jobs.RunStatus{Run: "p", Live: true, Pipelines: []jobs.RunStatus{a, b}}}
	if c := only(t, Evaluate(Default(), s), RuleHeartbeat); c.Pipeline != "b" {
		t.Errorf("%+v; want pipeline b's", c)
	}
}

func TestRulesOff(t *testing.T) {
	s := running(3)
	s.Status.Jobs[0].Heartbeat = t0.Add(-time.Hour)
	r := Default()
	r.Heartbeat.Off = true
	if c := Evaluate(r, s); len(c) != 0 {
		t.Errorf("heartbeat off: %+v", c)
	}
}
