// Package runtest makes run directories for tests as submit leaves them,
// without Slurm or a submit (New), and reads them back: the fixed time of
// the tests, visits recorded as ended, the jobs, the run, and the events of
// a job's broker. Only _test.go files import it; it decides nothing.
package runtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/state"
)

func FixedNow() time.Time { return time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC) }

// VisitAs records visit id of job as having ended in s (Done, Failed or
// Interrupted), or as started only (Running).
func VisitAs(t testing.TB, st *state.Store, job, id string, s state.VisitState) {
	t.Helper()
	at := FixedNow()
	if err := st.VisitStarted(id, job, at); err != nil {
		t.Fatal(err)
	}
	if s == state.Running {
		return
	}
	if err := st.VisitEnded(id, s, map[bool]string{true: "", false: "boom"}[s == state.Done], at.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
}

// JobsOf reads a run's recorded jobs.
func JobsOf(t testing.TB, dir string) []state.Job {
	t.Helper()
	st, err := state.OpenReadOnly(rundir.Layout{Dir: dir}.State())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	js, err := st.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// DialJob connects to the broker job recorded in the run in dir, with the
// run's token, as the relay commands do (dialJobBroker); it does not wait
// for the job to record one. With subscriber "" it is an outside reader
// (no durable subscriptions: it takes nothing from the Pipeline's).
func DialJob(t testing.TB, dir, job, subscriber string) *events.NATS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := rundir.DialJobBroker(ctx, rundir.Layout{Dir: dir}, job, 0, "test reader", subscriber, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("dialing job %s's broker: %v", job, err)
	}
	t.Cleanup(func() { n.Close() })
	return n.NATS
}

// Next reads one event from sub, failing the test if none comes within
// 10 s.
func Next(t testing.TB, sub events.Subscription) events.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := sub.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return e
}

// RunOf reads the run's record (InputClosed) from the state file.
func RunOf(t testing.TB, dir string) state.Run {
	t.Helper()
	st, err := state.OpenReadOnly(rundir.Layout{Dir: dir}.State())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := st.Run()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// VisitOf is the visit ID an event names, "" if none.
func VisitOf(e events.Event) string {
	id, _ := e.Visit()
	return id
}

// New writes a run directory in a new temporary folder as submit leaves
// it: the state file of the run called name, with settings set, visits
// v001... pending, and job 1001 recorded as its first attempt.
func New(t testing.TB, name string, set rundir.Settings, visits int) rundir.Layout {
	t.Helper()
	l := rundir.Layout{Dir: filepath.Join(t.TempDir(), name)}
	if err := os.MkdirAll(l.Dir, rundir.DirMode); err != nil {
		t.Fatal(err)
	}
	raw, err := rundir.EncodeSettings(set)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Create(l.State(), state.Run{ID: name, Name: name, Dir: l.Dir, Created: FixedNow(), Settings: raw})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ids := make([]string, visits)
	for i := range ids {
		ids[i] = fmt.Sprintf("v%03d", i+1)
	}
	if err := st.AddVisits(ids); err != nil {
		t.Fatal(err)
	}
	if err := st.AddJob(state.Job{ID: "1001", Attempt: 1, Submitted: FixedNow()}); err != nil {
		t.Fatal(err)
	}
	return l
}

// Recorded reads the events the run recorded in its state file.
func Recorded(t testing.TB, dir string, q state.EventQuery) []state.EventRecord {
	t.Helper()
	st, err := state.OpenReadOnly(rundir.Layout{Dir: dir}.State())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.Events(q)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// Quiet checks that sub gives nothing for d: Next blocks until its
// context ends.
func Quiet(t testing.TB, sub events.Subscription, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if e, err := sub.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next gave %+v, %v; want nothing for %s", e, err, d)
	}
}
