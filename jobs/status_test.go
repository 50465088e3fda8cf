package jobs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

// status is Status of one run, failing the test on an error.
func status(t *testing.T, e *env, dir string) RunStatus {
	t.Helper()
	rs, err := Status(context.Background(), e.fake, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 {
		t.Fatalf("Status gave %d runs; want 1", len(rs))
	}
	return rs[0]
}

// Status merges what Slurm says (squeue, then sacct, then nothing) with
// what rank 0 recorded.
func TestStatusSettle(t *testing.T) {
	for _, tc := range []struct {
		name string
		// visits v001..v004 as recorded; the rest stay pending
		visits   []state.VisitState
		recorded state.JobEnd // what rank 0 recorded as the job's end; "" none
		slurm    func(f *fakeBackend)
		outcome  Outcome
		live     bool
		jobState string
		source   string
		died     bool
	}{
		{name: "pending", slurm: func(f *fakeBackend) {}, outcome: "pending", live: true, jobState: "PENDING", source: "squeue"},
		{name: "running", visits: []state.VisitState{state.Done, state.Running},
			slurm:   func(f *fakeBackend) { f.set("1001", "RUNNING") },
			outcome: "running", live: true, jobState: "RUNNING", source: "squeue"},
		// The state file decides the outcome: Slurm still ending the job
		// (live) changes nothing of it.
		{name: "completing after rank 0 recorded its end", visits: all(4, state.Done), recorded: "COMPLETED",
			slurm:   func(f *fakeBackend) { f.set("1001", "COMPLETING") },
			outcome: "done", live: true, jobState: "COMPLETING", source: "squeue"},
		{name: "completing after rank 0 recorded its end, visits left", visits: all(3, state.Done), recorded: "STOPPED",
			slurm:   func(f *fakeBackend) { f.set("1001", "COMPLETING") },
			outcome: "running", live: true, jobState: "COMPLETING", source: "squeue"},
		{name: "completed", visits: all(4, state.Done), recorded: "COMPLETED",
			slurm:   func(f *fakeBackend) { f.set("1001", "COMPLETED") },
			outcome: "done", jobState: "COMPLETED", source: "squeue"},
		{name: "visits failed", visits: []state.VisitState{state.Done, state.Failed, state.Done, state.Failed}, recorded: "VISITS_FAILED",
			slurm:   func(f *fakeBackend) { f.forget("1001", "FAILED") },
			outcome: "failed", jobState: "FAILED", source: "sacct"},
		{name: "forgotten, in accounting, died", visits: []state.VisitState{state.Done, state.Running},
			slurm:   func(f *fakeBackend) { f.forget("1001", "OUT_OF_MEMORY") },
			outcome: "unfinished", jobState: "OUT_OF_MEMORY", source: "sacct", died: true},
		{name: "cancelled before it started", slurm: func(f *fakeBackend) { f.forget("1001", "CANCELLED") },
			outcome: "unfinished", jobState: "CANCELLED", source: "sacct", died: true},
		{name: "stopped at the time limit", visits: []state.VisitState{state.Done, state.Done}, recorded: "STOPPED",
			slurm:   func(f *fakeBackend) { f.forget("1001", "COMPLETED") },
			outcome: "unfinished", jobState: "COMPLETED", source: "sacct"},
		{name: "unknown to Slurm, no accounting", visits: all(4, state.Done), recorded: "COMPLETED",
			slurm:   func(f *fakeBackend) { f.forget("1001", ""); f.noAccounting = true },
			outcome: "done", jobState: "COMPLETED", source: "state"},
		{name: "unknown to Slurm and to accounting", visits: []state.VisitState{state.Running},
			slurm:   func(f *fakeBackend) { f.forget("1001", "") },
			outcome: "unfinished", jobState: "SUBMITTED", source: "state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 4)
			dir := e.submit("run1")
			withState(t, dir, func(st *state.Store) {
				for i, s := range tc.visits {
					runtest.VisitAs(t, st, "1001", visitIDs(4)[i], s)
				}
				if tc.recorded != "" {
					if err := st.JobEnded("1001", tc.recorded, 0, "", runtest.FixedNow()); err != nil {
						t.Fatal(err)
					}
				}
			})
			tc.slurm(e.fake)
			rs := status(t, e, dir)
			if rs.Outcome != tc.outcome || rs.Live != tc.live {
				t.Errorf("outcome %q live %v; want %q %v", rs.Outcome, rs.Live, tc.outcome, tc.live)
			}
			if len(rs.Jobs) != 1 {
				t.Fatalf("jobs %+v; want 1", rs.Jobs)
			}
			j := rs.Jobs[0]
			if j.State != tc.jobState || j.Source != tc.source || j.Died != tc.died || j.Live != tc.live {
				t.Errorf("job %+v; want state %s source %s died %v live %v", j, tc.jobState, tc.source, tc.died, tc.live)
			}
			want := tc.recorded.String()
			if want == "" {
				want = "SUBMITTED"
			}
			if j.Recorded != want {
				t.Errorf("Recorded %q; want %q", j.Recorded, want)
			}
			if rs.Visits != 4 || rs.Run != "run1" || rs.Dir != dir || rs.Partition != "debug" || rs.Journal == "" {
				t.Errorf("run status %+v", rs)
			}
			n := 0
			for _, v := range rs.Counts {
				n += v
			}
			if n != 4 {
				t.Errorf("counts %v add up to %d; want 4", rs.Counts, n)
			}
		})
	}
}

func all(n int, s state.VisitState) []state.VisitState {
	out := make([]state.VisitState, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// However many runs, Status asks squeue once, and sacct once about the
// jobs squeue has forgotten (not at all when squeue knows them all).
func TestStatusAsksSlurmOnce(t *testing.T) {
	e := newEnv(t, 3)
	var dirs []string
	for _, name := range []string{"a", "b", "c", "d"} {
		o := e.opts(name)
		o.AutoResume = 1
		sub, err := Submit(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, sub.Dir)
	}
	// a: 1001 1002, b: 1003 1004, c: 1005 1006, d: 1007 1008.
	e.fake.forget("1001", "COMPLETED")
	e.fake.forget("1003", "TIMEOUT")
	e.fake.set("1005", "RUNNING")
	rs, err := Status(context.Background(), e.fake, dirs)
	if err != nil {
		t.Fatal(err)
	}
	if e.fake.jobsCalls != 1 || e.fake.histCalls != 1 {
		t.Fatalf("%d squeue and %d sacct calls; want 1 and 1", e.fake.jobsCalls, e.fake.histCalls)
	}
	if got := e.fake.askedJobs[0]; len(got) != 8 {
		t.Errorf("squeue asked about %v; want the 8 jobs", got)
	}
	if got := e.fake.askedHist[0]; !slices.Equal(got, []string{"1001", "1003"}) {
		t.Errorf("sacct asked about %v; want 1001 1003", got)
	}
	want := []Outcome{OutcomePending, OutcomePending, OutcomeRunning, OutcomePending}
	for i, r := range rs {
		if r.Run != []string{"a", "b", "c", "d"}[i] || r.Outcome != want[i] {
			t.Errorf("run %d: %s %s; want %s", i, r.Run, r.Outcome, want[i])
		}
	}
	if rs[0].Jobs[0].Source != "sacct" || rs[0].Jobs[0].State != "COMPLETED" || rs[0].Jobs[1].State != "PENDING" {
		t.Errorf("run a's jobs %+v", rs[0].Jobs)
	}

	// Every job known to squeue: no sacct call.
	f := newFake()
	for _, id := range []string{"1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008"} {
		f.set(id, "PENDING")
	}
	if _, err := Status(context.Background(), f, dirs); err != nil {
		t.Fatal(err)
	}
	if f.jobsCalls != 1 || f.histCalls != 0 {
		t.Errorf("%d squeue and %d sacct calls; want 1 and 0", f.jobsCalls, f.histCalls)
	}
	// No backend: the state files only.
	rs, err = Status(context.Background(), nil, dirs)
	if err != nil || rs[0].Jobs[0].Source != "state" || rs[0].Live {
		t.Errorf("without a backend: %+v, %v", rs, err)
	}
	// Runs lists them in name order, through one squeue call.
	f.jobsCalls = 0
	list, err := Runs(context.Background(), e.site, f)
	if err != nil || len(list) != 4 || list[0].Run != "a" || list[3].Run != "d" || f.jobsCalls != 1 {
		t.Errorf("Runs: %d runs, %v, %d squeue calls", len(list), err, f.jobsCalls)
	}
}

// A run of a runs root that does not exist yet lists nothing.
func TestRunsEmptyRoot(t *testing.T) {
	e := newEnv(t, 1)
	list, err := Runs(context.Background(), e.site, e.fake)
	if err != nil || len(list) != 0 {
		t.Errorf("Runs = %v, %v; want none", list, err)
	}
}

// Cancel cancels the live jobs, the last follow-on first.
func TestCancel(t *testing.T) {
	e := newEnv(t, 3)
	o := e.opts("run1")
	o.AutoResume = 2
	sub, err := Submit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	e.fake.set("1001", "RUNNING")
	got, err := Cancel(context.Background(), e.fake, sub.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"1003", "1002", "1001"}; !slices.Equal(got, want) || !slices.Equal(e.fake.cancels, want) {
		t.Errorf("cancelled %v (backend %v); want %v", got, e.fake.cancels, want)
	}
	// Nothing live: nothing cancelled.
	for _, id := range sub.Jobs {
		e.fake.forget(id, "CANCELLED")
	}
	e.fake.cancels = nil
	if got, err := Cancel(context.Background(), e.fake, sub.Dir); err != nil || len(got) != 0 || len(e.fake.cancels) != 0 {
		t.Errorf("second Cancel: %v, %v; want nothing", got, err)
	}
}

// waitOpts are fast polls for tests.
var waitOpts = WaitOptions{Every: time.Millisecond, SlurmEvery: 20 * time.Millisecond}

// Wait polls the state file often and Slurm seldom (backing off while
// nothing changes), and says how the run ended.
func TestWait(t *testing.T) {
	for _, tc := range []struct {
		name    string
		visits  []state.VisitState
		err     error
		outcome Outcome
	}{
		{"done", all(4, state.Done), nil, "done"},
		{"visits failed", []state.VisitState{state.Done, state.Failed, state.Done, state.Done}, harness.ErrVisitsFailed, "failed"},
		{"unfinished", []state.VisitState{state.Done, state.Interrupted}, ErrIncomplete, "unfinished"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 4)
			dir := e.submit("run1")
			withState(t, dir, func(st *state.Store) {
				for i, s := range tc.visits {
					runtest.VisitAs(t, st, "1001", visitIDs(4)[i], s)
				}
			})
			// Running for three squeue calls, then gone from squeue.
			e.fake.onJobs = func(call int, f *fakeBackend) {
				j := f.queue["1001"]
				j.State = "RUNNING"
				if call >= 4 {
					j.State = "COMPLETED"
				}
				f.queue["1001"] = j
			}
			var heard []Outcome
			o := waitOpts
			o.Progress = func(rs RunStatus) { heard = append(heard, rs.Outcome) }
			start := time.Now()
			rs, err := Wait(context.Background(), e.fake, dir, o)
			took := time.Since(start)
			if tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("Wait: %v; want %v", err, tc.err)
			}
			if err != nil && !strings.Contains(err.Error(), "run1") {
				t.Errorf("error %q does not name the run", err)
			}
			if rs.Live || rs.Jobs[0].State != "COMPLETED" {
				t.Errorf("last status %+v", rs)
			}
			jobs, hist, _ := e.fake.calls()
			// Slurm asked at 0, 20ms, 60ms, 140ms (backing off), while the
			// state file was read every millisecond.
			if jobs != 4 || hist != 0 {
				t.Errorf("%d squeue and %d sacct calls; want 4 and 0", jobs, hist)
			}
			if took < 120*time.Millisecond {
				t.Errorf("Wait took %s; backing off from 20ms should take at least 140ms", took)
			}
			if want := []Outcome{OutcomeRunning, OutcomeRunning, OutcomeRunning, tc.outcome}; !slices.Equal(heard, want) {
				t.Errorf("progress heard %v; want %v, once per squeue call", heard, want)
			}
		})
	}
}

// Once the state file says the job ended with visits left, Wait asks
// Slurm at once, not at its next slow poll: a requeued start or a
// follow-on job could still run them.
func TestWaitAsksWhenTheStateFileSaysTheJobEnded(t *testing.T) {
	e := newEnv(t, 2)
	dir := e.submit("run1")
	e.fake.set("1001", "RUNNING")
	var ended atomic.Bool
	e.fake.onJobs = func(call int, f *fakeBackend) {
		if ended.Load() {
			delete(f.queue, "1001")
			f.history["1001"] = scheduler.Job{ID: "1001", State: "TIMEOUT", Source: "sacct"}
		}
	}
	endJob(t, dir, visitIDs(1), state.EndStopped, &ended) // v002 left pending
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	rs, err := Wait(ctx, e.fake, dir, WaitOptions{Every: 2 * time.Millisecond, SlurmEvery: time.Hour})
	if !errors.Is(err, ErrIncomplete) || rs.Outcome != OutcomeUnfinished {
		t.Fatalf("Wait: %s, %v; want unfinished", rs.Outcome, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Wait took %s with an hour between Slurm polls; want it to ask once the job recorded its end", took)
	}
	if jobs, _, _ := e.fake.calls(); jobs < 2 || jobs > 50 {
		t.Errorf("%d squeue calls; want a few (the first, then after the recorded end)", jobs)
	}
}

// Once the state file alone decides the outcome (the job recorded its
// end, every visit done or failed), Wait returns at once, while Slurm
// still lists the job as completing, and asks Slurm no more.
func TestWaitReturnsWhenTheStateFileDecides(t *testing.T) {
	for _, tc := range []struct {
		name    string
		failed  bool
		outcome Outcome
	}{{"done", false, OutcomeDone}, {"failed", true, OutcomeFailed}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 2)
			dir := e.submit("run1")
			e.fake.set("1001", "COMPLETING") // for ever: Slurm never lets it go
			var ended atomic.Bool
			if tc.failed {
				withState(t, dir, func(st *state.Store) { runtest.VisitAs(t, st, "1001", "v002", state.Failed) })
			}
			endJob(t, dir, visitIDs(map[bool]int{true: 1, false: 2}[tc.failed]), map[bool]state.JobEnd{true: state.EndVisitsFailed, false: state.EndCompleted}[tc.failed], &ended)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rs, err := Wait(ctx, e.fake, dir, WaitOptions{Every: time.Hour, SlurmEvery: time.Hour})
			if rs.Outcome != tc.outcome || (err != nil) != tc.failed || ctx.Err() != nil {
				t.Fatalf("Wait: %s, %v (context: %v); want %s at once, Slurm still completing the job", rs.Outcome, err, ctx.Err(), tc.outcome)
			}
			if jobs, _, _ := e.fake.calls(); jobs > 1 {
				t.Errorf("%d squeue calls; want at most the first", jobs)
			}
		})
	}
}

// endJob plays job 1001's rank 0 after 50 ms: visits ids done, then the
// job's end recorded, then ended set.
func endJob(t *testing.T, dir string, ids []string, end state.JobEnd, ended *atomic.Bool) {
	go func() {
		time.Sleep(50 * time.Millisecond)
		st, err := state.Open(rundir.Layout{Dir: dir}.State())
		if err != nil {
			t.Error(err)
			return
		}
		defer st.Close()
		for _, id := range ids {
			st.VisitStarted(id, "1001", runtest.FixedNow())
			st.VisitEnded(id, state.Done, "", runtest.FixedNow())
		}
		st.JobEnded("1001", end, 0, "", runtest.FixedNow())
		ended.Store(true)
	}()
}

// Wait ends with its context. (The status it returns then is the state
// file's last read, not settled with what Slurm said: Live false and no
// Outcome while the job runs. Reported, not asserted.)
func TestWaitContext(t *testing.T) {
	e := newEnv(t, 2)
	dir := e.submit("run1")
	e.fake.set("1001", "RUNNING")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	rs, err := Wait(ctx, e.fake, dir, waitOpts)
	if !errors.Is(err, context.DeadlineExceeded) || rs.Run != "run1" {
		t.Errorf("Wait: %q, %v; want run1 and the deadline", rs.Run, err)
	}
}

// Watch shows a change to the state file at once, not at Slurm's next
// poll (an hour away here), and ends once Slurm says no job is live.
func TestWatchShowsChangesAtOnce(t *testing.T) {
	e := newEnv(t, 2)
	dir := e.submit("run1")
	e.fake.set("1001", "RUNNING")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	shown := make(chan RunStatus, 100)
	errc := make(chan error, 1)
	go func() {
		errc <- Watch(ctx, e.fake, []string{dir}, time.Hour, func(rs []RunStatus) error { shown <- rs[0]; return nil })
	}()
	if first := <-shown; first.Counts[state.Done] != 0 || first.Outcome != OutcomeRunning {
		t.Fatalf("first: %d done, %s; want 0 and running", first.Counts[state.Done], first.Outcome)
	}
	wrote := time.Now()
	withState(t, dir, func(st *state.Store) { runtest.VisitAs(t, st, "1001", "v001", state.Done) })
	for {
		select {
		case rs := <-shown:
			if rs.Counts[state.Done] != 1 {
				continue
			}
			if took := time.Since(wrote); took > 5*time.Second {
				t.Errorf("the change was shown after %s", took)
			}
			if rs.Outcome != OutcomeRunning {
				t.Errorf("outcome %s between Slurm's answers; want its last (running)", rs.Outcome)
			}
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Errorf("Watch: %v; want it to run until cancelled while the job is live", err)
			}
			return
		case err := <-errc:
			t.Fatalf("Watch ended: %v", err)
		case <-ctx.Done():
			t.Fatal("the change was not shown within 20s (Slurm is asked hourly)")
		}
	}
}
