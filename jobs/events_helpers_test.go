package jobs

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/state"
)

// Helpers of events_test.go: runs that listen for trigger events, rank 0
// played by the test (InJob.Hook, which starts the run's real embedded
// NATS broker), and readers of what a broker holds. Only Slurm is fake.

// eventPolicy is tinyPolicy with a stage that waits for an event on the
// topic ephem: the run's Pipeline reads visits, dpsbatch.control and
// ephem.
const eventPolicy = `pipeline: tiny
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
events: {trigger: {topic: visits}, external: [ephem]}
stages:
  - {name: work, type: noop}
  - {name: wait, type: noop, event: {topic: ephem, timeout: 5s}}
`

// eventRun submits run name of eventPolicy through the fake backend (its
// job is 1001, PENDING): listening for trigger events or not, with the
// env's visit list or (listening only) none.
func (e *env) eventRun(name string, listen, withVisits bool) string {
	e.t.Helper()
	e.policy = e.write("pipeline.yaml", eventPolicy)
	o := e.opts(name)
	o.Listen = listen
	if !withVisits {
		o.Visits = ""
	}
	sub, err := Submit(context.Background(), o)
	if err != nil {
		e.t.Fatalf("Submit %s: %v", name, err)
	}
	return sub.Dir
}

// rank0 plays rank 0 of job in the run in dir (named run1, as every run
// of these tests is), as `dpsbatch run --state` does: InJob.Hook opens the state file, starts the run's embedded broker
// (holding its store) and records its address. End runs at cleanup.
func rank0(t *testing.T, dir, job string) (*InJob, *harness.RunOptions) {
	t.Helper()
	serveRun(t, Layout{Dir: dir}.State(), job, 0)
	j := &InJob{StatePath: Layout{Dir: dir}.State(), JobID: job}
	dr := &harness.RunOptions{RunID: "run1", RunDir: dir}
	if err := j.Hook(loadRunPolicy(t, dir), dr); err != nil {
		j.End(nil, err)
		t.Fatalf("Hook: %v", err)
	}
	t.Cleanup(func() { j.End(nil, nil) })
	return j, dr
}

// brokerOfJob is the broker address job recorded in the state file.
func brokerOfJob(t *testing.T, dir, job string) string {
	t.Helper()
	for _, j := range jobsOf(t, dir) {
		if j.ID == job {
			if j.Broker == "" {
				t.Fatalf("job %s recorded no broker", job)
			}
			return j.Broker
		}
	}
	t.Fatalf("no job %s in the state file", job)
	return ""
}

// dialJob connects to the broker job recorded in the run in dir, with the
// run's token, as the relay commands do (dialJobBroker); it does not wait
// for the job to record one. With subscriber "" it is an outside reader
// (no durable subscriptions: it takes nothing from the Pipeline's).
func dialJob(t *testing.T, dir, job, subscriber string) *events.NATS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := dialJobBroker(ctx, Layout{Dir: dir}, job, 0, "test reader", subscriber, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("dialing job %s's broker: %v", job, err)
	}
	t.Cleanup(func() { n.Close() })
	return n.NATS
}

// readAllOn reads every event b holds for run run1 on topic, from the first
// stored, until none comes for idle.
func readAllOn(t *testing.T, b events.Broker, topic string, idle time.Duration) []events.Event {
	t.Helper()
	sub, err := b.Subscribe(context.Background(), topic, "run1")
	if err != nil {
		t.Fatalf("subscribing to %s: %v", topic, err)
	}
	defer sub.Close()
	var out []events.Event
	for {
		ctx, cancel := context.WithTimeout(context.Background(), idle)
		e, err := sub.Next(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatalf("reading %s after %d events: %v", topic, len(out), err)
		}
		out = append(out, e)
	}
}

// storedOn reads what the run's broker store holds on topic while no job
// serves it: the store is opened here for a moment, as Relay does.
func storedOn(t *testing.T, dir, topic string) []events.Event {
	t.Helper()
	s, err := serve(context.Background(), Layout{Dir: dir}, brokerSettings{}, "127.0.0.1", 5*time.Second, "test reader", "",
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("opening the run's broker store: %v", err)
	}
	defer s.Close()
	return readAllOn(t, s, topic, 500*time.Millisecond)
}

// next reads one event from sub, failing the test if none comes within
// 10 s.
func next(t *testing.T, sub events.Subscription) events.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := sub.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return e
}

// quiet checks that sub gives nothing for d: Next blocks until its
// context ends.
func quiet(t *testing.T, sub events.Subscription, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if e, err := sub.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next gave %+v, %v; want nothing for %s", e, err, d)
	}
}

// recorded reads the events the run recorded in its state file.
func recorded(t *testing.T, dir string, q state.EventQuery) []state.EventRecord {
	t.Helper()
	recs, err := Events(dir, q)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// runOf reads the run's record (InputClosed) from the state file.
func runOf(t *testing.T, dir string) state.Run {
	t.Helper()
	st, err := state.OpenReadOnly(Layout{Dir: dir}.State())
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

// visitOf is the visit ID an event names, "" if none.
func visitOf(e events.Event) string {
	id, _ := e.Visit()
	return id
}

// relay is Relay of e to the run in dir through the env's fake backend.
func (e *env) relay(dir string, ev events.Event, when int, wait time.Duration) (*Relayed, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Relay(ctx, RelayOptions{Backend: e.fake, Dir: dir, Event: ev, When: when, Wait: wait})
}

// serveRun serves the broker of the run whose state file is statePath for
// job's restart-th start, as the job script does (dpsbatch broker), until
// the returned stop is called or the test ends; it does not wait for the
// broker to serve (the job's Pipeline waits for it).
func serveRun(t *testing.T, statePath, job string, restart int) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ServeBroker(ctx, filepath.Dir(statePath), job, restart, nil, nil) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-served // its error, if any, is the Pipeline's too: it finds no broker
		})
	}
	t.Cleanup(stop)
	return stop
}
