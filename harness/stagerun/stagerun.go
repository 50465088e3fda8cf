// Package stagerun runs a short list of stages over one visit in this
// process, on given clipboards: the real stage loop (harness.Run with
// every rank a goroutine, an in-memory broker, a policy written for the
// case) with a stage of its own before the case's stages that puts the
// case's items on each data ID's clipboard and the Pipeline's, and one
// after them that keeps those clipboards. It is what the stage tester
// (harness/stagetest, inside `go test`) and `dpsbatch replay` (package
// replay, on a freeze-dried stage call) both run.
//
// Its init registers the two stage types, stagerun-seed and
// stagerun-keep, which only Run's policies name. It never uses Slurm,
// MPI, a network broker or a state file: the progress goes to the run's
// Summary only.
package stagerun

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness"
)

// Case is what Run runs: the stages, where, on what.
type Case struct {
	// Name is the pipeline's name ({pipeline}; "" means stagerun), and
	// RunID the run's ({run}; "" means one of Run's own, stagerun-N).
	Name, RunID string
	// Stages is the policy's stages list in YAML, as in a policy file:
	//	- {name: scale, type: scale, settings: {factor: 2}}
	Stages string
	// Slices is the number of Slices (0 means 1).
	Slices int
	// DataIDs are the data IDs, split over the Slices as the list mapper
	// does; nil means one, {id: 1}. Mapper, when set, is the policy's
	// mapper section instead (type and settings), and DataIDs is unused.
	DataIDs []map[string]any
	Mapper  map[string]any
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
	// mapper.DataID.String names it ("ccd=3"), put after them; Pipeline
	// those of the Pipeline's clipboard. Items whose keys Shared names
	// are put as shared items. Values are not copied.
	Clipboard    map[string]any
	ClipboardFor map[string]map[string]any
	Pipeline     map[string]any
	Shared       []string
	// RunDir is the run directory, which must exist.
	RunDir string
	// PipelineDir is what {pipelinedir} names ("" means a folder of
	// Run's own, gone when it returns).
	PipelineDir string
	// Timeout bounds the run (0 means no bound but the context's).
	Timeout time.Duration
	// NoValidate runs the stages without checking what spans them (the
	// keys each needs, the topics it waits for): for stages cut from a
	// policy that was valid whole, as replay runs them.
	NoValidate bool
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
	// RunID and Broker are the run's ID and its in-memory broker: a
	// caller subscribes to a topic of RunID there for what the stages
	// published (the first subscription gets every event published
	// before it).
	RunID  string
	Broker events.Broker
}

// ErrTimeout: the run did not end within Case.Timeout.
var ErrTimeout = errors.New("stagerun: the run did not end within its timeout")

// Run runs c's stages over one visit and returns what they left, with
// the run's log on log (nil discards it). Its error is for a case that
// cannot run (its policy does not load: the error quotes it) or a run
// that did not end within c.Timeout; a failing stage is in the Result.
func Run(ctx context.Context, c Case, log *slog.Logger) (*Result, error) {
	policyDir, err := os.MkdirTemp("", "stagerun-")
	if err != nil {
		return nil, fmt.Errorf("stagerun: %w", err)
	}
	defer os.RemoveAll(policyDir)
	p, err := loadPolicy(policyDir, c)
	if err != nil {
		return nil, fmt.Errorf("stagerun: %w", err)
	}
	id := cmp.Or(c.RunID, fmt.Sprintf("stagerun-%d", caseCount.Add(1)))
	cs := &caseState{c: c, clipboards: map[string]*harness.Clipboard{}}
	if _, running := cases.LoadOrStore(id, cs); running {
		return nil, fmt.Errorf("stagerun: a case of run %q is running already", id)
	}
	defer cases.Delete(id)
	res := &Result{RunDir: c.RunDir, RunID: id, Broker: events.NewMemory()}
	if res.Summary, res.Err = run(ctx, c, p, res, log); errors.Is(res.Err, ErrTimeout) {
		return res, res.Err
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	res.Clipboards, res.Pipeline = cs.clipboards, cs.pipeline
	if res.Summary != nil {
		res.Failures = res.Summary.SliceFailures
	}
	return res, nil
}

var (
	caseCount atomic.Int64
	cases     sync.Map // run ID -> *caseState
)

// caseState is one running case, as its seed and keep stages see it.
type caseState struct {
	c          Case
	mu         sync.Mutex
	clipboards map[string]*harness.Clipboard
	pipeline   *harness.Clipboard
}

// run runs the loaded policy p on every rank as goroutines.
func run(ctx context.Context, c Case, p *harness.Policy, res *Result, log *slog.Logger) (*harness.Summary, error) {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	visit := harness.Visit{ID: c.Visit, Props: c.Event}
	if visit.ID == "" {
		visit.ID = "1"
	}
	sum, err := harness.Run(ctx, harness.RunOptions{
		Ranks: harness.CommLocal, Policy: p, Visits: []harness.Visit{visit},
		RunID: res.RunID, RunDir: res.RunDir, Slices: sliceCount(c), Broker: res.Broker,
		Recorder: publisher{b: res.Broker, runID: res.RunID, events: c.Events},
		Logger:   log,
	})
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return sum, fmt.Errorf("%w (%s): %v", ErrTimeout, c.Timeout, err)
	}
	return sum, err
}

func sliceCount(c Case) int {
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
			return fmt.Errorf("stagerun: publish on %q: %w", topic, err)
		}
	}
	return nil
}

func (publisher) StageDone(string, string, time.Duration) error { return nil }
func (publisher) SliceFailed(harness.SliceFailure) error        { return nil }
func (publisher) VisitEnded(string, harness.VisitResult) error  { return nil }
