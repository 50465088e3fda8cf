package jobs

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/injob"
	"github.com/dpsbatch/dpsbatch/internal/testenv"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/state"
)

// A job reads its end from Slurm when it starts and the run's latest
// visit times from the state file; the Pipeline's question before each
// visit is answered from them and from the visits this job times.
func TestInJobBudget(t *testing.T) {
	_, dir := inJobRun(t) // v001 done in 1 s
	l := rundir.Layout{Dir: dir}
	c := &fakeClock{t: runtest.FixedNow()}
	end := &endAt{end: runtest.FixedNow().Add(injob.StopMargin + 2*time.Second)}
	serveRun(t, l.State(), "1002", 0)
	j := &injob.InJob{StatePath: l.State(), JobID: "1002", Now: c.now, Deadline: end.read}
	dr := &harness.RunOptions{RunID: "run1", RunDir: dir}
	if err := j.Hook(loadRunPolicy(t, dir), dr); err != nil {
		t.Fatal(err)
	}
	defer j.End(nil, nil)
	b, ok := dr.Recorder.(harness.VisitGate)
	if !ok {
		t.Fatal("the job's recorder is no harness.VisitGate")
	}
	if end.calls != 1 {
		t.Errorf("the end was read %d times at the start; want once", end.calls)
	}
	// 12 s left, v001 took 1 s: time for a visit, until a visit of 3 s.
	if why := b.TimeForVisit("v002"); why != "" {
		t.Fatalf("12s left, visits of 1s: %q", why)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(dr.Recorder.VisitStarted("v002", c.now()))
	must(dr.Recorder.VisitEnded("v002", harness.VisitResult{Outcome: harness.VisitDone, Took: 3 * time.Second}))
	if why := b.TimeForVisit("v004"); !strings.HasPrefix(why, "time limit near: 12s left") {
		t.Errorf("12s left, a visit of 3s: %q; want a stop", why)
	}
}

// A job given less time than one visit takes runs none, says so, and
// records why it stopped; the visits stay pending for the next job.
func TestInJobTooShortForAVisit(t *testing.T) {
	_, dir := inJobRun(t)
	l := rundir.Layout{Dir: dir}
	var logs testenv.SyncBuffer
	serveRun(t, l.State(), "1002", 0)
	j := &injob.InJob{StatePath: l.State(), JobID: "1002", Logger: newTextLogger(&logs),
		Deadline: func(context.Context) (time.Time, error) { return time.Now().Add(injob.StopMargin + 5*time.Second), nil }}
	dr := harness.RunOptions{PolicyPath: l.Policy(), RunID: "run1", RunDir: dir, Rank0: j.Hook}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// 15 s left, and v001 took 1 s: time enough.
	dr.Ranks, dr.Size = harness.CommLocal, 3
	sum, err := harness.Run(ctx, dr)
	if endErr := j.End(sum, err); endErr != nil {
		t.Fatal(endErr)
	}
	if err != nil || sum.Visits != 4 {
		t.Fatalf("15s left, visits of 1s: %v, %+v; want the 4 visits left run", err, sum)
	}

	// The same with a visit that took a minute.
	_, dir = inJobRun(t)
	l = rundir.Layout{Dir: dir}
	withState(t, dir, func(st *state.Store) {
		if err := st.VisitStarted("v004", "1001", runtest.FixedNow()); err != nil {
			t.Fatal(err)
		}
		if err := st.VisitEnded("v004", state.Done, "", runtest.FixedNow().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	})
	logs = testenv.SyncBuffer{}
	serveRun(t, l.State(), "1002", 0)
	j = &injob.InJob{StatePath: l.State(), JobID: "1002", Logger: newTextLogger(&logs),
		Deadline: func(context.Context) (time.Time, error) { return time.Now().Add(injob.StopMargin + 5*time.Second), nil }}
	dr = harness.RunOptions{PolicyPath: l.Policy(), RunID: "run1", RunDir: dir, Rank0: j.Hook}
	dr.Ranks, dr.Size = harness.CommLocal, 3
	sum, err = harness.Run(ctx, dr)
	if endErr := j.End(sum, err); endErr != nil {
		t.Fatal(endErr)
	}
	if err != nil || sum.Visits != 0 {
		t.Errorf("15s left, visits of up to a minute: %v, %d visits run; want none", err, sum.Visits)
	}
	if !strings.Contains(logs.String(), "less time than one visit") {
		t.Errorf("the log does not say the job runs no visit:\n%s", logs.String())
	}
	got := runtest.JobsOf(t, dir)[1]
	if got.State != "STOPPED" || !strings.HasPrefix(got.Reason, "time limit near: ") {
		t.Errorf("job recorded %+v; want STOPPED, time limit near", got)
	}
	if c := counts(t, dir); c[state.Pending]+c[state.Interrupted] != 3 {
		t.Errorf("counts %v; want v002, v005, v006 left to run", c)
	}
}

// Slurm's warning signal (the stop file) makes the job read its end
// again: with time for more visits it goes on; once the time left is
// short, or when the end cannot be read, it stops.
func TestInJobStopFileRechecks(t *testing.T) {
	for _, tc := range []struct {
		name string
		left time.Duration
		err  error
		stop bool
	}{
		{"early warning: time for more visits", 10 * time.Minute, nil, false},
		{"the limit was shortened", injob.StopMargin, nil, true},
		{"Slurm does not answer", 10 * time.Minute, errors.New("squeue: timed out"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, dir := inJobRun(t)
			l := rundir.Layout{Dir: dir}
			end := &endAt{end: time.Now().Add(time.Hour)}
			serveRun(t, l.State(), "1002", 0)
			j := &injob.InJob{StatePath: l.State(), JobID: "1002", StopFile: l.StopFile(2), Every: 2 * time.Millisecond, Deadline: end.read}
			dr := &harness.RunOptions{RunID: "run1", RunDir: dir}
			if err := j.Hook(loadRunPolicy(t, dir), dr); err != nil {
				t.Fatal(err)
			}
			end.mu.Lock()
			end.end, end.err = time.Now().Add(tc.left), tc.err
			end.mu.Unlock()
			if err := os.WriteFile(l.StopFile(2), []byte("time limit near: SIGUSR1 from Slurm\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			select {
			case <-dr.Stop:
				if !tc.stop {
					t.Error("the warning stopped the run with 10 minutes left")
				}
			case <-time.After(time.Second):
				if tc.stop {
					t.Error("the warning did not stop the run")
				}
			}
			end.mu.Lock()
			calls := end.calls
			end.mu.Unlock()
			if calls != 2 {
				t.Errorf("the end was read %d times; want twice (at the start, at the warning)", calls)
			}
			if err := j.End(&harness.Summary{}, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func newTextLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// fakeClock is a settable time for the budget's now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// endAt is a Deadline that reads *end (a zero time: no limit), counting
// its calls.
type endAt struct {
	mu    sync.Mutex
	end   time.Time
	err   error
	calls int
}

func (e *endAt) read(context.Context) (time.Time, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls++
	return e.end, e.err
}

func (e *endAt) setEnd(t time.Time) { e.mu.Lock(); e.end = t; e.mu.Unlock() }
