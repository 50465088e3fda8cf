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
	"github.com/dpsbatch/dpsbatch/injob"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
)

// Helpers of events_test.go: runs that listen for trigger events, rank 0
// played by the test (InJob.Hook, which starts the run's real embedded
// NATS broker), and readers of what a broker holds. Only Slurm is fake.

// eventPolicy is inputtest.TinyPolicy with a stage that waits for an event on the
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
func rank0(t *testing.T, dir, job string) (*injob.InJob, *harness.RunOptions) {
	t.Helper()
	serveRun(t, rundir.Layout{Dir: dir}.State(), job, 0)
	j := &injob.InJob{StatePath: rundir.Layout{Dir: dir}.State(), JobID: job}
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
	for _, j := range runtest.JobsOf(t, dir) {
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
	s, err := rundir.Serve(context.Background(), rundir.Layout{Dir: dir}, rundir.BrokerSettings{}, "127.0.0.1", 5*time.Second, "test reader", "",
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("opening the run's broker store: %v", err)
	}
	defer s.Close()
	return readAllOn(t, s, topic, 500*time.Millisecond)
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
	go func() { served <- injob.ServeBroker(ctx, filepath.Dir(statePath), job, restart, nil, nil) }()
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
