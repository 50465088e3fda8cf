// Package stagetest runs stages inside an ordinary `go test`, for stage
// authors and for the built-in stages' own tests: one stage or a short
// list of them, on one or several Slices, over given data IDs, with a
// given clipboard, trigger event and events to wait for. It runs the real
// stage loop (harness.Run with every rank a goroutine of the test), so a
// stage's Preprocess and Postprocess run on the Pipeline and its shared
// items travel as in a batch job; Run returns each data ID's clipboard
// after the stages, the Pipeline's clipboard, the slice failures and the
// run's error.
//
// It is a test helper: only _test.go files import it. Its init registers
// two stage types, stagetest-seed and stagetest-capture, which Run puts
// before and after the case's stages to fill and read the clipboards.
// It never uses Slurm, MPI, a network broker or a state file: the ranks
// are goroutines, the broker is in memory, and the progress goes to the
// run's Summary only.
package stagetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness"
)

// Case is what Run runs: the stages, where, on what.
type Case struct {
	// Stages is the policy's stages list in YAML, as in a policy file:
	//	- {name: scale, type: scale, settings: {factor: 2}}
	Stages string
	// Slices is the number of Slices (0 means 1).
	Slices int
	// DataIDs are the data IDs, split over the Slices as the list mapper
	// does; nil means one, {id: 1}.
	DataIDs []map[string]any
	// Locations are the policy's locations (input, output, work, ...);
	// relative ones resolve against the run directory, Result.RunDir.
	Locations map[string]string
	// Failure is the policy's failure rule for a visit (any-slice,
	// all-slices, never); "" means the policy's default.
	Failure string
	// Visit is the visit's ID ("" means "1") and Event its trigger
	// event's properties, which every clipboard gets.
	Visit string
	Event map[string]any
	// Events are published once the visit starts, by topic, for stages
	// with an event section (each stage waits for its topic); their
	// topics are the policy's external ones.
	Events map[string]map[string]any
	// Clipboard holds the items every data ID's clipboard gets before the
	// first stage; ClipboardFor those of one data ID, named as
	// mapper.DataID.String names it ("ccd=3"), put after them. Values are
	// not copied.
	Clipboard    map[string]any
	ClipboardFor map[string]map[string]any
	// RunDir, when set, is the run directory, which must exist: a case
	// that runs where an earlier one ran (a second visit over the first's
	// files). "" means a new temporary one.
	RunDir string
	// Timeout bounds the run (0 means 30s): a stage that hangs fails the
	// test instead of the test binary's deadline.
	Timeout time.Duration
}

// Result is what a case's run left.
type Result struct {
	// Clipboards are the data IDs' clipboards after the last stage, by
	// mapper.DataID.String; a data ID that failed has none. When a stage
	// emitted several clipboards for one data ID, the last one is kept.
	Clipboards map[string]*harness.Clipboard
	// Pipeline is the Pipeline's clipboard after the last stage's
	// Postprocess, with the shared items gathered (nil when the visit
	// failed on the Pipeline).
	Pipeline *harness.Clipboard
	// Failures are the slice clipboards that failed.
	Failures []harness.SliceFailure
	Summary  *harness.Summary
	// Err is harness.Run's error: it wraps harness.ErrVisitsFailed when
	// the visit failed.
	Err    error
	RunDir string
	// RunID and Broker are the run's ID and its in-memory broker: a test
	// subscribes to a topic of RunID there for what the stages published
	// (the first subscription gets every event published before it).
	RunID  string
	Broker events.Broker
}

// Run runs c's stages over one visit and returns what they left. A case
// whose policy does not load, or a run that does not end within the
// timeout, fails the test; a failing stage does not (see Result).
func Run(t testing.TB, c Case) *Result {
	t.Helper()
	id := fmt.Sprintf("stagetest-%d", caseCount.Add(1))
	dir := c.RunDir
	if dir == "" {
		dir = t.TempDir()
	}
	p, err := loadPolicy(t.TempDir(), c)
	if err != nil {
		t.Fatalf("stagetest: %v", err)
	}
	cs := &caseState{c: c, clipboards: map[string]*harness.Clipboard{}}
	cases.Store(id, cs)
	defer cases.Delete(id)
	res := &Result{RunDir: dir, RunID: id, Broker: events.NewMemory()}
	res.Summary, res.Err = run(t, c, p, res)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	res.Clipboards, res.Pipeline = cs.clipboards, cs.pipeline
	if res.Summary != nil {
		res.Failures = res.Summary.SliceFailures
	}
	return res
}

var (
	caseCount atomic.Int64
	cases     sync.Map // run ID -> *caseState
)

// caseState is one running case, as its seed and capture stages see it.
type caseState struct {
	c          Case
	mu         sync.Mutex
	clipboards map[string]*harness.Clipboard
	pipeline   *harness.Clipboard
}

// run runs the loaded policy p on every rank as goroutines.
func run(t testing.TB, c Case, p *harness.Policy, res *Result) (*harness.Summary, error) {
	t.Helper()
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	visit := harness.Visit{ID: c.Visit, Props: c.Event}
	if visit.ID == "" {
		visit.ID = "1"
	}
	sum, err := harness.Run(ctx, harness.RunOptions{
		Ranks: harness.CommLocal, Policy: p, Visits: []harness.Visit{visit},
		RunID: res.RunID, RunDir: res.RunDir, Slices: slices(c), Broker: res.Broker,
		Recorder: publisher{b: res.Broker, runID: res.RunID, events: c.Events},
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("stagetest: the run did not end within %s: %v", timeout, err)
	}
	return sum, err
}

func slices(c Case) int {
	if c.Slices <= 0 {
		return 1
	}
	return c.Slices
}

// publisher is the run's Recorder: when the visit starts (the Pipeline
// has subscribed), it publishes the case's events for it.
type publisher struct {
	b      events.Broker
	runID  string
	events map[string]map[string]any
}

func (p publisher) VisitStarted(visit string, _ time.Time) error {
	for topic, props := range p.events {
		own := map[string]any{events.PropVisit: visit}
		for k, v := range props {
			own[k] = v
		}
		e := events.Event{Topic: topic, RunID: p.runID, Kind: events.KindData, Properties: own}
		if err := p.b.Publish(context.Background(), e); err != nil {
			return fmt.Errorf("stagetest: publish on %q: %w", topic, err)
		}
	}
	return nil
}

func (publisher) StageDone(string, string, time.Duration) error { return nil }
func (publisher) SliceFailed(harness.SliceFailure) error        { return nil }
func (publisher) VisitEnded(string, harness.VisitResult) error  { return nil }

// testWriter sends the run's log to the test's log, shown when it fails
// or with -v.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}

// Get returns key's value on dataID's clipboard after the stages, and
// fails the test when that data ID has no clipboard or no such key.
func (r *Result) Get(t testing.TB, dataID, key string) any {
	t.Helper()
	cb, ok := r.Clipboards[dataID]
	if !ok {
		t.Fatalf("stagetest: no clipboard for data ID %q after the stages (have %v; failures %v; run: %v)", dataID, sortedKeys(r.Clipboards), r.Failures, r.Err)
	}
	v, ok := cb.Get(key)
	if !ok {
		t.Fatalf("stagetest: data ID %q's clipboard has no %q (has %v)", dataID, key, cb.Keys())
	}
	return v
}

// Failure returns the first failure of dataID's clipboard, if it failed.
func (r *Result) Failure(dataID string) (harness.SliceFailure, bool) {
	for _, f := range r.Failures {
		if f.DataID == dataID {
			return f, true
		}
	}
	return harness.SliceFailure{}, false
}
