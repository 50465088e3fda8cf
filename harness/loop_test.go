package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
)

// Test stages. They report what they saw to the package-level sink, which
// each test resets; tests in this file do not run in parallel.

type sinkT struct {
	mu       sync.Mutex
	seen     map[string][]string // by visit: what slices saw, one entry per clipboard
	gathered map[string]any      // by visit: what Postprocess found gathered
	outcomes map[string]int      // by visit: len(Outcomes) in Postprocess
	hook     func(cx *Context, cb *Clipboard) error
	inits    atomic.Int32
	shuts    atomic.Int32
}

var sink sinkT

func resetSink() {
	sink.mu.Lock()
	defer sink.mu.Unlock()
	sink.seen, sink.gathered, sink.outcomes, sink.hook = map[string][]string{}, map[string]any{}, map[string]int{}, nil
	sink.inits.Store(0)
	sink.shuts.Store(0)
}

func (s *sinkT) add(visit, what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[visit] = append(s.seen[visit], what)
}

func (s *sinkT) sorted(visit string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]string(nil), s.seen[visit]...)
	sort.Strings(out)
	return out
}

// shareStage puts a shared threshold on the Pipeline, checks it on every
// slice, and sends one shared item back per clipboard.
type shareStage struct{}

func (shareStage) Preprocess(cx *Context, cb *Clipboard) error {
	cb.PutShared("threshold", 7)
	return nil
}

func (shareStage) Process(cx *Context, cb *Clipboard) error {
	th, ok := cb.Get("threshold")
	if !ok || th != 7 {
		return fmt.Errorf("threshold is %v (%v), want 7", th, ok)
	}
	cb.PutShared("seen", fmt.Sprintf("%s@%d", cx.DataID(), cx.Slice()))
	return nil
}

func (shareStage) Postprocess(cx *Context, cb *Clipboard) error {
	v, _ := cb.Get("seen")
	sink.mu.Lock()
	sink.gathered[cx.Visit()] = v
	sink.outcomes[cx.Visit()] = len(cx.Outcomes())
	sink.mu.Unlock()
	return nil
}

// splitStage emits n clipboards per input, numbered by "part".
type splitStage struct{ n int }

func (s splitStage) Process(cx *Context, cb *Clipboard) error {
	for i := 0; i < s.n; i++ {
		c := cb.Clone()
		c.Put("part", i)
		cx.Emit(c)
	}
	return nil
}

// recordStage notes, per clipboard, the data ID, the keys named in its
// "keys" setting and its slice.
type recordStage struct{ keys []string }

func (s recordStage) Process(cx *Context, cb *Clipboard) error {
	parts := []string{cx.DataID().String()}
	for _, k := range s.keys {
		v, ok := cb.Get(k)
		if !ok {
			v = "<none>"
		}
		parts = append(parts, fmt.Sprintf("%s=%v", k, v))
	}
	sink.add(cx.Visit(), strings.Join(parts, " "))
	return nil
}

// failStage fails (error or panic) the clipboards of one visit and data ID.
type failStage struct{ visit, dataID, mode string }

func (s failStage) Process(cx *Context, cb *Clipboard) error {
	if cx.Visit() != s.visit || (s.dataID != "*" && cx.DataID().String() != s.dataID) {
		return nil
	}
	if s.mode == "panic" {
		panic("deliberate panic in " + cx.DataID().String())
	}
	return errors.New("deliberate failure in " + cx.DataID().String())
}

// preFailStage fails the Preprocess of one visit.
type preFailStage struct{ visit string }

func (s preFailStage) Preprocess(cx *Context, cb *Clipboard) error {
	if cx.Visit() == s.visit {
		return errors.New("preprocess says no")
	}
	return nil
}

// hookStage calls sink.hook in Postprocess.
type hookStage struct{}

func (hookStage) Postprocess(cx *Context, cb *Clipboard) error {
	if sink.hook != nil {
		return sink.hook(cx, cb)
	}
	return nil
}

// lifeStage counts Initialize and Shutdown calls.
type lifeStage struct{}

func (lifeStage) Initialize(*Context) error          { sink.inits.Add(1); return nil }
func (lifeStage) Shutdown(*Context) error            { sink.shuts.Add(1); return nil }
func (lifeStage) Process(*Context, *Clipboard) error { return nil }

// logStage logs from both parts.
type logStage struct{}

func (logStage) Preprocess(cx *Context, cb *Clipboard) error {
	cx.Logger().Info("from preprocess")
	return nil
}
func (logStage) Process(cx *Context, cb *Clipboard) error {
	cx.Logger().Info("from process")
	return nil
}

func init() {
	RegisterStage(Type{Name: "test-share", Needs: nil, Produces: []string{"threshold", "seen"},
		New: func(Settings) (Stage, error) { return shareStage{}, nil }})
	RegisterStage(Type{Name: "test-split", Settings: []Setting{{Key: "n", Kind: Int, Default: 2}}, Produces: []string{"part"},
		New: func(s Settings) (Stage, error) { return splitStage{s.Int("n")}, nil }})
	RegisterStage(Type{Name: "test-record", Settings: []Setting{{Key: "keys", Kind: Strings}},
		New: func(s Settings) (Stage, error) { return recordStage{s.Strings("keys")}, nil }})
	RegisterStage(Type{Name: "test-fail", Settings: []Setting{
		{Key: "visit", Kind: String, Required: true}, {Key: "dataId", Kind: String, Default: "*"}, {Key: "mode", Kind: String, Default: "error"}},
		New: func(s Settings) (Stage, error) {
			return failStage{s.String("visit"), s.String("dataId"), s.String("mode")}, nil
		}})
	RegisterStage(Type{Name: "test-prefail", Settings: []Setting{{Key: "visit", Kind: String, Required: true}},
		New: func(s Settings) (Stage, error) { return preFailStage{s.String("visit")}, nil }})
	RegisterStage(Type{Name: "test-hook", New: func(Settings) (Stage, error) { return hookStage{}, nil }})
	RegisterStage(Type{Name: "test-life", New: func(Settings) (Stage, error) { return lifeStage{}, nil }})
	RegisterStage(Type{Name: "test-log", New: func(Settings) (Stage, error) { return logStage{}, nil }})
}

// endings records every VisitEnded in order.
type endings struct {
	quietEvents
	mu      sync.Mutex
	results map[string]VisitResult
	order   []string
	stopped chan string
}

// quietEvents hears no events: test recorders embed it and implement the
// EventRecorder methods they watch.
type quietEvents struct{}

func (quietEvents) EventDropped(topic, why string)        {}
func (quietEvents) EventSkipped(topic, visit, why string) {}
func (quietEvents) EventsUndecodable(n int)               {}
func (quietEvents) Heartbeat(at time.Time, visit string)  {}
func (quietEvents) RunStopped(why string)                 {}

// openGate admits every visit and has time for each: test recorders embed
// it and implement the VisitGate method they watch.
type openGate struct{}

func (openGate) AdmitVisit(string) (bool, string, error) { return true, "", nil }
func (openGate) TimeForVisit(string) string              { return "" }
func (openGate) DoneDataIDs(string) ([]string, error)    { return nil, nil }

func newEndings() *endings {
	return &endings{results: map[string]VisitResult{}, stopped: make(chan string, 1)}
}

func (e *endings) VisitStarted(string, time.Time) error          { return nil }
func (e *endings) StageDone(string, string, time.Duration) error { return nil }
func (e *endings) SliceFailed(SliceFailure) error                { return nil }

// VisitEnded refuses an outcome that is not one of the fixed names, which
// stops the run: every test that records endings checks them.
func (e *endings) VisitEnded(v string, r VisitResult) error {
	if !slices.Contains([]VisitOutcome{VisitDone, VisitFailed, VisitInterrupted}, r.Outcome) {
		return fmt.Errorf("visit %s ended with outcome %q, not one of the visit outcomes", v, r.Outcome)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.results[v] = r
	e.order = append(e.order, v)
	return nil
}
func (e *endings) RunStopped(why string) { e.stopped <- why }

const testHead = `pipeline: t
slices: 3
mapper: {type: range, settings: {key: ccd, from: 1, to: 6}}
`

type runOpt func(*RunOptions)

// runYAML loads the policy text (which must be valid), runs the visits and
// returns the summary, the per-visit endings and Run's error.
func runYAML(t *testing.T, policy string, visits []string, opts ...runOpt) (*Summary, *endings, error) {
	t.Helper()
	return runYAMLCtx(t, context.Background(), policy, visits, opts...)
}

func runYAMLCtx(t *testing.T, parent context.Context, policy string, visits []string, opts ...runOpt) (*Summary, *endings, error) {
	t.Helper()
	resetSink()
	dir := t.TempDir()
	path := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(path, LoadOptions{})
	if err != nil {
		t.Fatalf("policy does not load:\n%v", err)
	}
	if err := p.validate(); err != nil {
		t.Fatalf("policy does not validate:\n%v", err)
	}
	var vs []Visit
	for _, v := range visits {
		vs = append(vs, Visit{ID: v, Props: map[string]any{"filter": "r" + v}})
	}
	end := newEndings()
	lr := RunOptions{Ranks: CommLocal, Policy: p, Visits: vs, RunID: "test-run", RunDir: filepath.Join(dir, "run"), Recorder: end}
	for _, o := range opts {
		o(&lr)
	}
	ctx, cancel := context.WithTimeout(parent, 30*time.Second)
	defer cancel()
	if err := os.MkdirAll(lr.RunDir, 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := Run(ctx, lr)
	if ctx.Err() == context.DeadlineExceeded {
		t.Fatal("run did not end within 30s")
	}
	return sum, end, err
}

func TestSharedItemsTravelBothWays(t *testing.T) {
	sum, _, err := runYAML(t, testHead+`stages:
  - {name: share, type: test-share}
`, []string{"1", "2"})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Done != 2 || sum.Failed != 0 {
		t.Fatalf("done %d failed %d, want 2 and 0", sum.Done, sum.Failed)
	}
	for _, v := range []string{"1", "2"} {
		got := sink.gathered[v]
		// 6 data IDs in blocks of 2 over slices 1..3, by data ID.
		want := map[string]any{"ccd=1": "ccd=1@1", "ccd=2": "ccd=2@1", "ccd=3": "ccd=3@2", "ccd=4": "ccd=4@2", "ccd=5": "ccd=5@3", "ccd=6": "ccd=6@3"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("visit %s: Pipeline gathered %v, want %v", v, got, want)
		}
		if sink.outcomes[v] != 6 {
			t.Errorf("visit %s: %d outcomes, want 6", v, sink.outcomes[v])
		}
	}
}

func TestEmitSeveralClipboards(t *testing.T) {
	sum, _, err := runYAML(t, testHead+`stages:
  - {name: split, type: test-split, settings: {n: 3}}
  - {name: record, type: test-record, settings: {keys: [part, filter]}}
`, []string{"7"})
	if err != nil {
		t.Fatal(err)
	}
	got := sink.sorted("7")
	if len(got) != 18 {
		t.Fatalf("next stage saw %d clipboards, want 6 data IDs x 3 = 18: %v", len(got), got)
	}
	for _, ccd := range []string{"1", "6"} {
		for part := 0; part < 3; part++ {
			want := fmt.Sprintf("ccd=%s part=%d filter=r7", ccd, part)
			found := false
			for _, g := range got {
				found = found || g == want
			}
			if !found {
				t.Errorf("no clipboard %q in %v", want, got)
			}
		}
	}
	if sum.Done != 1 {
		t.Errorf("done = %d, want 1", sum.Done)
	}
}

func TestDataIDAndTriggerPropertiesOnEveryClipboard(t *testing.T) {
	_, _, err := runYAML(t, testHead+`stages:
  - {name: record, type: test-record, settings: {keys: [visitId, ccd, filter, dataId]}}
`, []string{"42"})
	if err != nil {
		t.Fatal(err)
	}
	got := sink.sorted("42")
	want := []string{}
	for i := 1; i <= 6; i++ {
		want = append(want, fmt.Sprintf("ccd=%d visitId=42 ccd=%d filter=r42 dataId=ccd=%d", i, i, i))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("clipboards:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestFailureIsolation(t *testing.T) {
	policy := testHead + `stages:
  - {name: boom, type: test-fail, settings: {visit: "2", dataId: "ccd=3", mode: panic}}
  - {name: oops, type: test-fail, settings: {visit: "2", dataId: "ccd=5"}}
  - {name: record, type: test-record}
`
	sum, end, err := runYAML(t, policy, []string{"1", "2", "3"})
	if !errors.Is(err, ErrVisitsFailed) {
		t.Fatalf("err = %v, want ErrVisitsFailed", err)
	}
	if sum.Done != 2 || sum.Failed != 1 || sum.SliceFailureCount != 2 {
		t.Fatalf("done %d failed %d slice failures %d, want 2, 1, 2", sum.Done, sum.Failed, sum.SliceFailureCount)
	}
	// The other clipboards of visit 2 carried on; later visits too.
	if got := sink.sorted("2"); strings.Join(got, ",") != "ccd=1,ccd=2,ccd=4,ccd=6" {
		t.Errorf("visit 2 reached the last stage with %v, want ccd=1,2,4,6", got)
	}
	if got := len(sink.sorted("3")); got != 6 {
		t.Errorf("visit 3: %d clipboards reached the end, want 6", got)
	}
	byStage := map[string]SliceFailure{}
	for _, f := range sum.SliceFailures {
		byStage[f.Stage] = f
	}
	if f := byStage["boom"]; f.Visit != "2" || f.Slice != 2 || f.DataID != "ccd=3" || !strings.Contains(f.Err, "panicked: deliberate panic in ccd=3") {
		t.Errorf("panic recorded as %+v", f)
	}
	if f := byStage["oops"]; f.Visit != "2" || f.Slice != 3 || f.DataID != "ccd=5" || !strings.Contains(f.Err, "deliberate failure in ccd=5") {
		t.Errorf("error recorded as %+v", f)
	}
	if r := end.results["2"]; r.Outcome != VisitFailed || r.FailedSlices != 2 || !strings.Contains(r.Err, "2 of 6 data IDs failed") {
		t.Errorf("visit 2 result %+v", r)
	}
}

func TestFailureRules(t *testing.T) {
	for _, tc := range []struct {
		rule, failing string
		wantFailed    bool
	}{
		{"any-slice", "ccd=1", true},
		{"all-slices", "ccd=1", false},
		{"all-slices", "*", true},
		{"never", "*", false},
	} {
		t.Run(tc.rule+"/"+tc.failing, func(t *testing.T) {
			policy := testHead + "failure: {visit: " + tc.rule + "}\nstages:\n  - {name: f, type: test-fail, settings: {visit: \"1\", dataId: \"" + tc.failing + "\"}}\n"
			sum, end, err := runYAML(t, policy, []string{"1"})
			if got := end.results["1"].Outcome == VisitFailed; got != tc.wantFailed {
				t.Errorf("visit failed = %v, want %v (%+v)", got, tc.wantFailed, end.results["1"])
			}
			// Whatever the rule, a failed data ID is the run's outcome.
			if !errors.Is(err, ErrVisitsFailed) {
				t.Errorf("err = %v; want ErrVisitsFailed", err)
			}
			if sum.DataIDs[VisitFailed] == 0 || len(sum.FailedDataIDs) != sum.DataIDs[VisitFailed] {
				t.Errorf("failed data IDs: %d counted, %+v listed", sum.DataIDs[VisitFailed], sum.FailedDataIDs)
			}
			if sum.SliceFailureCount == 0 {
				t.Error("slice failures were not recorded")
			}
		})
	}
}

func TestSerialFailureFailsVisitAndSkipsSlices(t *testing.T) {
	policy := testHead + `stages:
  - {name: first, type: test-record}
  - {name: gate, type: test-prefail, settings: {visit: "2"}}
  - {name: last, type: test-record, settings: {keys: [visitId]}}
`
	_, end, err := runYAML(t, policy, []string{"1", "2", "3"})
	if !errors.Is(err, ErrVisitsFailed) {
		t.Fatalf("err = %v", err)
	}
	if r := end.results["2"]; r.Outcome != VisitFailed || !strings.Contains(r.Err, `stage "gate": preprocess: preprocess says no`) {
		t.Errorf("visit 2: %+v", r)
	}
	// Visit 2 ran the first stage (6 records) but not the last.
	if n := len(sink.sorted("2")); n != 6 {
		t.Errorf("visit 2 has %d records, want 6 (first stage only)", n)
	}
	if n := len(sink.sorted("3")); n != 12 {
		t.Errorf("visit 3 has %d records, want 12", n)
	}
}

func TestInitializeAndShutdownOncePerRank(t *testing.T) {
	_, _, err := runYAML(t, testHead+"stages:\n  - {name: life, type: test-life}\n", []string{"1", "2"})
	if err != nil {
		t.Fatal(err)
	}
	if i, s := sink.inits.Load(), sink.shuts.Load(); i != 4 || s != 4 {
		t.Errorf("Initialize %d, Shutdown %d times; want 4 each (Pipeline and 3 slices)", i, s)
	}
}

const waitPolicy = testHead + `events:
  external: [ephem]
stages:
  - {name: first, type: test-record}
  - name: wait
    type: test-record
    settings: {keys: [ra]}
    event: {topic: ephem, timeout: 300ms, properties: [ra]}
`

func TestStageWaitsForEvent(t *testing.T) {
	b := events.NewMemory()
	ctx := context.Background()
	// Published before the run: visit 2's event comes first and must be
	// kept for it; the event of another run is ignored.
	for _, e := range []events.Event{
		{Topic: "ephem", RunID: "test-run", Properties: map[string]any{"visitId": "2", "ra": 20.5}},
		{Topic: "ephem", RunID: "other-run", Properties: map[string]any{"visitId": "1", "ra": 99.0}},
		{Topic: "ephem", RunID: "test-run", Properties: map[string]any{"visitId": "1", "ra": 10.5}},
	} {
		if err := b.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	_, end, err := runYAML(t, waitPolicy, []string{"1", "2", "3"}, func(lr *RunOptions) { lr.Broker = b })
	if !errors.Is(err, ErrVisitsFailed) {
		t.Fatalf("err = %v, want visit 3 to fail", err)
	}
	for v, ra := range map[string]string{"1": "10.5", "2": "20.5"} {
		if end.results[v].Outcome == VisitFailed {
			t.Errorf("visit %s failed: %s", v, end.results[v].Err)
		}
		n := 0
		for _, s := range sink.sorted(v) {
			if strings.HasSuffix(s, " ra="+ra) {
				n++
			}
		}
		if n != 6 {
			t.Errorf("visit %s: %d slice clipboards got ra=%s, want 6: %v", v, n, ra, sink.sorted(v))
		}
	}
	if r := end.results["3"]; r.Outcome != VisitFailed || !strings.Contains(r.Err, `no event on topic "ephem" within 300ms`) {
		t.Errorf("visit 3: %+v", r)
	}
}

func TestOtherRunsAndMalformedTriggersIgnored(t *testing.T) {
	b := events.NewMemory()
	ctx := context.Background()
	for _, e := range []events.Event{
		{Topic: "visits", RunID: "other-run", Properties: map[string]any{"visitId": "x"}},
		{Topic: "visits", RunID: "test-run", Properties: map[string]any{"filter": "r"}}, // no visitId
		{Topic: "visits", RunID: "test-run", Kind: "bogus", Properties: map[string]any{"visitId": "y"}},
	} {
		if err := b.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	sum, end, err := runYAML(t, testHead+"stages:\n  - {name: r, type: test-record}\n", []string{"1"}, func(lr *RunOptions) { lr.Broker = b })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(end.order, ",") != "1" {
		t.Errorf("visits run: %v, want only 1", end.order)
	}
	if sum.Malformed != 2 {
		t.Errorf("malformed = %d, want 2", sum.Malformed)
	}
}

func TestNoMoreDataFinishesInFlightAndEnds(t *testing.T) {
	b := events.NewMemory()
	ctx := context.Background()
	for _, e := range []events.Event{
		Visit{ID: "1"}.Event("visits", "test-run"),
		Visit{ID: "2"}.Event("visits", "test-run"),
		{Topic: "visits", RunID: "test-run", Kind: events.KindNoMoreData},
		Visit{ID: "3"}.Event("visits", "test-run"),
	} {
		if err := b.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	sum, end, err := runYAML(t, testHead+"stages:\n  - {name: r, type: test-record}\n", nil,
		func(lr *RunOptions) { lr.Broker, lr.Feed = b, true })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(end.order, ",") != "1,2" || sum.Done != 2 {
		t.Errorf("visits run: %v (done %d), want 1,2", end.order, sum.Done)
	}
}

func TestShutdownStopsAtVisitBoundary(t *testing.T) {
	b := events.NewMemory()
	var end *endings
	hook := func(cx *Context, cb *Clipboard) error {
		if cx.Visit() != "2" {
			return nil
		}
		err := b.Publish(cx.Context(), events.Event{Topic: events.TopicControl, RunID: "test-run", Kind: events.KindShutdown})
		if err != nil {
			return err
		}
		// Wait until the Pipeline has heard it, so the test does not
		// depend on goroutine timing.
		select {
		case why := <-end.stopped:
			end.stopped <- why
		case <-time.After(5 * time.Second):
			return errors.New("shutdown never arrived")
		}
		return nil
	}
	sum, end2, err := runYAML(t, testHead+"stages:\n  - {name: r, type: test-record}\n  - {name: h, type: test-hook}\n",
		[]string{"1", "2", "3", "4"}, func(lr *RunOptions) {
			lr.Broker = b
			end = lr.Recorder.(*endings)
			sink.hook = hook
		})
	// Visits 3 and 4 were left unrun: the run counts as interrupted.
	if !errors.Is(err, ErrInterrupted) || !strings.Contains(err.Error(), "shutdown event after 2 of 4 visits") {
		t.Fatalf("err = %v, want ErrInterrupted after 2 of 4 visits", err)
	}
	if strings.Join(end2.order, ",") != "1,2" {
		t.Errorf("visits run: %v, want 1,2", end2.order)
	}
	if end2.results["2"].Outcome == VisitFailed {
		t.Errorf("visit 2 failed: %s", end2.results["2"].Err)
	}
	if sum.Stopped != "shutdown event" {
		t.Errorf("Stopped = %q", sum.Stopped)
	}
}

func TestInterruptMidVisit(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sum, end, err := runYAMLCtx(t, ctx, testHead+"stages:\n  - {name: h, type: test-hook}\n  - {name: r, type: test-record}\n",
		[]string{"1", "2", "3"}, func(lr *RunOptions) {
			sink.hook = func(cx *Context, cb *Clipboard) error {
				if cx.Visit() == "2" {
					cancel()
				}
				return nil
			}
		})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("err = %v, want ErrInterrupted", err)
	}
	if strings.Join(end.order, ",") != "1,2" {
		t.Errorf("visits: %v, want 1,2", end.order)
	}
	if r := end.results["2"]; r.Outcome != VisitInterrupted {
		t.Errorf("visit 2: %+v, want interrupted, not failed", r)
	}
	if sum.Done != 1 || sum.Interrupted != 1 {
		t.Errorf("done %d interrupted %d, want 1 and 1", sum.Done, sum.Interrupted)
	}
}

func TestLogRecordsCarryContext(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewJSONHandler(lockedWriter{&buf, &mu}, nil))
	_, _, err := runYAML(t, testHead+"stages:\n  - {name: talk, type: test-log}\n", []string{"5"},
		func(lr *RunOptions) { lr.Logger = log })
	if err != nil {
		t.Fatal(err)
	}
	var pre, proc int
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if rec["run"] != "test-run" {
			t.Errorf("record without run: %s", line)
		}
		switch rec["msg"] {
		case "from preprocess":
			pre++
			if rec["visit"] != "5" || rec["stage"] != "talk" || rec["slice"] != nil || rec["dataId"] != nil {
				t.Errorf("Pipeline record: %s", line)
			}
		case "from process":
			proc++
			if rec["visit"] != "5" || rec["stage"] != "talk" || rec["slice"] == nil || !strings.HasPrefix(fmt.Sprint(rec["dataId"]), "ccd=") {
				t.Errorf("Slice record: %s", line)
			}
		}
	}
	if pre != 1 || proc != 6 {
		t.Errorf("%d Pipeline and %d Slice records, want 1 and 6", pre, proc)
	}
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// A visit ID that arrives by event and could leave the run directory
// through a location, or read as an option, is refused: logged, counted
// as malformed, never run.
func TestUnsafeVisitIDsFromEventsDropped(t *testing.T) {
	b := events.NewMemory()
	ctx := context.Background()
	bad := []string{"../../..", "a/b", "..", "-rf", "v\x00x"}
	for _, id := range bad {
		if err := b.Publish(ctx, events.Event{Topic: "visits", RunID: "test-run", Properties: map[string]any{"visitId": id, "filter": "r"}}); err != nil {
			t.Fatal(err)
		}
	}
	var log bytes.Buffer
	policy := testHead + "locations: {output: \"out/{visit}\"}\nstages:\n  - {name: r, type: test-record}\n"
	sum, end, err := runYAML(t, policy, []string{"1"}, func(lr *RunOptions) {
		lr.Broker = b
		lr.Logger = slog.New(slog.NewTextHandler(&log, nil))
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(end.order, ",") != "1" {
		t.Errorf("visits run: %q, want only 1", end.order)
	}
	if sum.Malformed != len(bad) {
		t.Errorf("malformed = %d, want %d", sum.Malformed, len(bad))
	}
	for _, want := range []string{`visit ID \"../../..\" contains '/'`, `visit ID \"-rf\" starts with '-'`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log does not say %s:\n%s", want, log.String())
		}
	}
}

// A visit whose data IDs failed at a stage and whose Pipeline then failed
// at a later one (a downstream stage missing what they would have made)
// names the data IDs' failure first, not only the later stage's error.
func TestVisitErrorNamesSliceFailuresFirst(t *testing.T) {
	policy := testHead + `stages:
  - {name: measure, type: test-fail, settings: {visit: "2"}}
  - {name: announce, type: test-prefail, settings: {visit: "2"}}
  - {name: record, type: test-record}
`
	_, end, err := runYAML(t, policy, []string{"1", "2"})
	if !errors.Is(err, ErrVisitsFailed) {
		t.Fatalf("err = %v, want ErrVisitsFailed", err)
	}
	r := end.results["2"]
	first, later := strings.Index(r.Err, `6 of 6 data IDs failed`), strings.Index(r.Err, `stage "announce"`)
	if r.Outcome != VisitFailed || first < 0 || later < first || !strings.Contains(r.Err, `stage "measure"`) {
		t.Errorf("visit 2 ended %s with %q; want the 6 data IDs' failure at measure named before announce's", r.Outcome, r.Err)
	}
}
