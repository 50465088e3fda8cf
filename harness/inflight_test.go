package harness

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness/comm"
)

// sleepStage sleeps in Process (until the run is interrupted): a stage
// bound by something other than the CPU, declared concurrent.
type sleepStage struct{ d time.Duration }

func (s sleepStage) Process(cx *Context, cb *Clipboard) error {
	select {
	case <-time.After(s.d):
		return nil
	case <-cx.Context().Done():
		return cx.Context().Err()
	}
}

// overlap counts, per rank, the calls of one stage type that run at
// once, and keeps the most seen.
type overlap struct {
	mu   sync.Mutex
	now  map[int]int
	peak int
}

func (o *overlap) reset() {
	o.mu.Lock()
	o.now, o.peak = map[int]int{}, 0
	o.mu.Unlock()
}

func (o *overlap) most() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.peak
}

// during runs a call of d on rank, counted.
func (o *overlap) during(rank int, d time.Duration) {
	o.mu.Lock()
	o.now[rank]++
	o.peak = max(o.peak, o.now[rank])
	o.mu.Unlock()
	time.Sleep(d)
	o.mu.Lock()
	o.now[rank]--
	o.mu.Unlock()
}

var safeOverlap, unsafeOverlap overlap

// overlapStage takes d in each of its parts and counts the overlap of
// its calls on each rank in o.
type overlapStage struct {
	d time.Duration
	o *overlap
}

func (s overlapStage) Preprocess(cx *Context, cb *Clipboard) error {
	s.o.during(0, s.d)
	return nil
}

func (s overlapStage) Process(cx *Context, cb *Clipboard) error {
	s.o.during(cx.Slice(), s.d)
	return nil
}

func (s overlapStage) Postprocess(cx *Context, cb *Clipboard) error {
	s.o.during(0, s.d)
	return nil
}

func init() {
	RegisterStage(Type{Name: "test-sleep", Concurrent: true, Settings: []Setting{{Key: "for", Kind: Duration, Required: true}},
		New: func(s Settings) (Stage, error) { return sleepStage{s.Duration("for")}, nil }})
	RegisterStage(Type{Name: "test-overlap-safe", Concurrent: true,
		New: func(Settings) (Stage, error) { return overlapStage{50 * time.Millisecond, &safeOverlap}, nil }})
	RegisterStage(Type{Name: "test-overlap-unsafe",
		New: func(Settings) (Stage, error) { return overlapStage{50 * time.Millisecond, &unsafeOverlap}, nil }})
}

func visitIDs(n int) []string {
	var ids []string
	for i := 1; i <= n; i++ {
		ids = append(ids, fmt.Sprint(i))
	}
	return ids
}

// With three visits in flight, a pipeline whose stages wait (sleep) gets
// through the same visits at least 2.5 times as fast as with one: three
// visits' stages run at once on every Slice, whether the visits are all
// there at the start or arrive one by one while others are mid-stage.
// Ratios, not times: the machine is shared.
func TestInFlightThroughput(t *testing.T) {
	for _, gap := range []time.Duration{0, 30 * time.Millisecond} {
		took := func(k int) time.Duration {
			policy := fmt.Sprintf(`pipeline: t
slices: 2
in_flight: %d
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
stages:
  - {name: a, type: test-sleep, settings: {for: 300ms}}
  - {name: b, type: test-sleep, settings: {for: 300ms}}
`, k)
			b := events.NewMemory()
			defer b.Close()
			fed := make(chan error, 1)
			go func() { fed <- feedSpaced(b, 6, gap) }()
			sum, _, err := runYAML(t, policy, nil, func(lr *RunOptions) { lr.Broker, lr.Feed = b, true })
			if err != nil || <-fed != nil {
				t.Fatalf("in_flight %d: %v", k, err)
			}
			if sum.Done != 6 {
				t.Fatalf("in_flight %d: %d visits done, want 6", k, sum.Done)
			}
			return sum.Elapsed
		}
		one, three := took(1), took(3)
		t.Logf("%s apart: %s and %s", gap, one, three)
		if ratio := float64(one) / float64(three); ratio < 2.5 {
			t.Errorf("6 visits, %s apart, took %s with in_flight 1 and %s with in_flight 3: %.2fx, want at least 2.5x", gap, one, three, ratio)
		}
	}
}

// feedSpaced publishes the trigger events of visits 1..n, gap apart, and
// then no-more-data.
func feedSpaced(b events.Broker, n int, gap time.Duration) error {
	for _, v := range visitIDs(n) {
		if err := b.Publish(context.Background(), Visit{ID: v}.Event("visits", "test-run")); err != nil {
			return err
		}
		time.Sleep(gap)
	}
	return b.Publish(context.Background(), events.Event{Topic: "visits", RunID: "test-run", Kind: events.KindNoMoreData})
}

// Visits in flight each wait for their own event mid-way: whatever the
// order the events arrive in (before their visit starts, or while
// several visits wait), each visit gets its own, on the Pipeline and on
// every slice clipboard.
func TestInFlightEventsMatchedByVisit(t *testing.T) {
	const n = 6
	policy := `pipeline: t
slices: 3
in_flight: 3
mapper: {type: range, settings: {key: ccd, from: 1, to: 6}}
events:
  external: [ephem]
stages:
  - {name: first, type: test-sleep, settings: {for: 20ms}}
  - name: wait
    type: test-record
    settings: {keys: [ra]}
    event: {topic: ephem, timeout: 20s, properties: [ra]}
  - {name: check, type: test-hook}
`
	orders := [][]int{{6, 5, 4, 3, 2, 1}, {1, 2, 3, 4, 5, 6}}
	rnd := rand.New(rand.NewSource(17))
	for range 3 {
		orders = append(orders, rnd.Perm(n))
		for i := range orders[len(orders)-1] {
			orders[len(orders)-1][i]++
		}
	}
	for _, order := range orders {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			b := events.NewMemory()
			defer b.Close()
			var pipelineRA sync.Map
			published := make(chan error, 1)
			go func() { published <- publishSpaced(b, order, 30*time.Millisecond) }()
			defer func() {
				if err := <-published; err != nil {
					t.Error(err)
				}
			}()
			sum, end, err := runYAML(t, policy, visitIDs(n), func(lr *RunOptions) {
				lr.Broker = b
				sink.hook = func(cx *Context, cb *Clipboard) error {
					ra, _ := cb.Get("ra")
					pipelineRA.Store(cx.Visit(), ra)
					return nil
				}
			})
			if err != nil || sum.Done != n {
				t.Fatalf("done %d of %d: %v (%v)", sum.Done, n, err, end.results)
			}
			for v := 1; v <= n; v++ {
				id, want := fmt.Sprint(v), raOf(v)
				if got, _ := pipelineRA.Load(id); got != want {
					t.Errorf("visit %s: the Pipeline's clipboard has ra=%v, want %v", id, got, want)
				}
				got := 0
				for _, s := range sink.sorted(id) {
					if strings.HasSuffix(s, fmt.Sprintf(" ra=%v", want)) {
						got++
					}
				}
				if got != 6 {
					t.Errorf("visit %s: %d slice clipboards got ra=%v, want 6: %v", id, got, want, sink.sorted(id))
				}
			}
		})
	}
}

func raOf(visit int) float64 { return float64(visit) + 0.5 }

// publishSpaced publishes the ephem event of each visit in order, every
// gap, starting after a gap.
func publishSpaced(b events.Broker, order []int, gap time.Duration) error {
	for _, v := range order {
		time.Sleep(gap)
		e := events.Event{Topic: "ephem", RunID: "test-run", Properties: map[string]any{"visitId": fmt.Sprint(v), "ra": raOf(v)}}
		if err := b.Publish(context.Background(), e); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	return nil
}

// A Go stage whose type does not declare itself concurrent runs for one
// visit at a time on each rank (Process on a Slice; Preprocess and
// Postprocess on the Pipeline), while visits in flight overlap in a
// declared one.
func TestInFlightSerialisesUndeclaredStage(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		o    *overlap
		most func(int) bool
		want string
	}{
		{"test-overlap-unsafe", &unsafeOverlap, func(n int) bool { return n == 1 }, "1"},
		{"test-overlap-safe", &safeOverlap, func(n int) bool { return n >= 2 }, "at least 2"},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			tc.o.reset()
			policy := fmt.Sprintf(`pipeline: t
slices: 2
in_flight: 3
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
stages:
  - {name: s, type: %s}
`, tc.typ)
			sum, _, err := runYAML(t, policy, visitIDs(6))
			if err != nil || sum.Done != 6 {
				t.Fatalf("done %d of 6: %v", sum.Done, err)
			}
			if n := tc.o.most(); !tc.most(n) {
				t.Errorf("at most %d calls of the stage ran at once on a rank, want %s", n, tc.want)
			}
		})
	}
}

// A shutdown heard while three visits are in flight stops the run at
// the visit boundary: the three finish (done, not interrupted), no
// other starts.
func TestInFlightStopLetsVisitsFinish(t *testing.T) {
	b := events.NewMemory()
	defer b.Close()
	var end *endings
	policy := `pipeline: t
slices: 2
in_flight: 3
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
stages:
  - {name: a, type: test-sleep, settings: {for: 300ms}}
  - {name: h, type: test-hook}
  - {name: c, type: test-sleep, settings: {for: 100ms}}
`
	sum, end2, err := runYAML(t, policy, visitIDs(6), func(lr *RunOptions) {
		lr.Broker = b
		end = lr.Recorder.(*endings)
		sink.hook = func(cx *Context, cb *Clipboard) error {
			if cx.Visit() != "1" {
				return nil
			}
			return shutdownAndWait(cx, b, end)
		}
	})
	if !errors.Is(err, ErrInterrupted) || !strings.Contains(err.Error(), "shutdown event after 3 of 6 visits") {
		t.Fatalf("err = %v, want ErrInterrupted after 3 of 6 visits", err)
	}
	got := slices.Sorted(slices.Values(end2.order))
	if strings.Join(got, ",") != "1,2,3" || sum.Done != 3 {
		t.Errorf("visits ended: %v (done %d), want 1, 2 and 3 done", end2.order, sum.Done)
	}
	for _, v := range got {
		if r := end2.results[v]; r.Outcome != VisitDone {
			t.Errorf("visit %s: %+v, want done", v, r)
		}
	}
}

// shutdownAndWait publishes a shutdown event and waits until the
// Pipeline has heard it, so the test does not depend on goroutine timing.
func shutdownAndWait(cx *Context, b events.Broker, end *endings) error {
	err := b.Publish(cx.Context(), events.Event{Topic: events.TopicControl, RunID: "test-run", Kind: events.KindShutdown})
	if err != nil {
		return err
	}
	select {
	case why := <-end.stopped:
		end.stopped <- why
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("shutdown never arrived")
	}
}

// An interrupt with visits in flight: every visit that started ends
// recorded, none failed, and the run ends interrupted.
func TestInFlightInterrupt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	policy := `pipeline: t
slices: 2
in_flight: 3
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
stages:
  - {name: a, type: test-sleep, settings: {for: 300ms}}
  - {name: h, type: test-hook}
  - {name: c, type: test-sleep, settings: {for: 5s}}
`
	sum, end, err := runYAMLCtx(t, ctx, policy, visitIDs(6), func(lr *RunOptions) {
		sink.hook = func(cx *Context, cb *Clipboard) error {
			if cx.Visit() == "1" {
				cancel()
			}
			return nil
		}
	})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("err = %v, want ErrInterrupted", err)
	}
	if sum.Visits != len(end.order) || sum.Visits > 3 || sum.Failed != 0 {
		t.Errorf("%d visits started, %d ended (%v), %d failed; want at most 3, all ended, none failed", sum.Visits, len(end.order), end.order, sum.Failed)
	}
	if r := end.results["1"]; r.Outcome != VisitInterrupted {
		t.Errorf("visit 1: %+v, want interrupted", r)
	}
}

// callLog is a Recorder that checks the calls it hears: never two at
// once, and for each visit VisitStarted first and VisitEnded last.
type callLog struct {
	quietEvents
	busy     atomic.Bool
	mu       sync.Mutex
	state    map[string]string // by visit: "started", "ended"
	problems []string
}

// hear checks one call, about visit ("" for none).
func (c *callLog) hear(visit, call string) {
	if !c.busy.CompareAndSwap(false, true) {
		c.note("%s (visit %q) while another call ran", call, visit)
		return
	}
	defer c.busy.Store(false)
	time.Sleep(time.Millisecond) // widen the window for an overlap
	if visit == "" {
		return
	}
	switch st := c.stateOf(visit); {
	case call == "VisitStarted" && st == "started":
		c.note("visit %s started twice", visit)
	case call != "VisitStarted" && st != "started":
		c.note("%s of visit %s, which is %q", call, visit, st)
	}
	c.mu.Lock()
	c.state[visit] = map[bool]string{true: "ended", false: "started"}[call == "VisitEnded"]
	c.mu.Unlock()
}

func (c *callLog) note(format string, a ...any) {
	c.mu.Lock()
	c.problems = append(c.problems, fmt.Sprintf(format, a...))
	c.mu.Unlock()
}

func (c *callLog) stateOf(v string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state[v]
}

func (c *callLog) VisitStarted(v string, _ time.Time) error     { c.hear(v, "VisitStarted"); return nil }
func (c *callLog) StageDone(v, _ string, _ time.Duration) error { c.hear(v, "StageDone"); return nil }
func (c *callLog) SliceFailed(f SliceFailure) error             { c.hear(f.Visit, "SliceFailed"); return nil }
func (c *callLog) VisitEnded(v string, _ VisitResult) error     { c.hear(v, "VisitEnded"); return nil }
func (c *callLog) AdmitVisit(string) (bool, string, error) {
	c.hear("", "AdmitVisit")
	return true, "", nil
}
func (c *callLog) TimeForVisit(string) string  { c.hear("", "TimeForVisit"); return "" }
func (c *callLog) EventSkipped(_, _, _ string) { c.hear("", "EventSkipped") }

// mixedPolicy uses every part of the protocol: shared items both ways,
// an exchange with a failing data ID, a serial stage, a visit that fails
// on the Pipeline (visit 2: Skip), a stage waiting for an event.
const mixedPolicy = `pipeline: x
slices: 3
mapper: {type: range, settings: {key: ccd, from: 1, to: 6}}
failure: {visit: never}
events:
  external: [ephem]
stages:
  - {name: share, type: test-share}
  - {name: put, type: test-xput, exchange: {topology: ring, keys: [obj, odd]}, settings: {fail: ccd=5}}
  - {name: record, type: test-xrecord, settings: {keys: [obj, odd]}}
  - {name: pre, type: test-prefail, settings: {visit: "2"}}
  - {name: wait, type: test-record, settings: {keys: [ra]}, event: {topic: ephem, timeout: 20s, properties: [ra]}}
  - {name: after, type: noop}
`

// With visits in flight, each visit comes out as it does with one: the
// same clipboards on every slice, the same gathered items, failures and
// outcomes; over the local and the TCP communicator. The Recorder hears
// one call at a time, each visit's in order.
func TestInFlightSameResults(t *testing.T) {
	type result struct {
		seen     map[string][]string
		gathered map[string]string
		counts   string
	}
	run := func(k int, mk func(r int) (comm.Comm, error)) result {
		log := &callLog{state: map[string]string{}}
		policy := strings.Replace(mixedPolicy, "stages:", fmt.Sprintf("in_flight: %d\nstages:", k), 1)
		sum, errs := runFlight(t, policy, 4, visitIDs(5), log, mk)
		for r, err := range errs {
			if err != nil && !(r == 0 && errors.Is(err, ErrVisitsFailed)) {
				t.Fatalf("in_flight %d, rank %d: %v", k, r, err)
			}
		}
		if len(log.problems) > 0 {
			t.Errorf("in_flight %d: the Recorder heard:\n%s", k, strings.Join(log.problems, "\n"))
		}
		res := result{seen: map[string][]string{}, gathered: map[string]string{},
			counts: fmt.Sprintf("done %d, failed %d, slice failures %d", sum.Done, sum.Failed, sum.SliceFailureCount)}
		for _, v := range visitIDs(5) {
			res.seen[v] = sink.sorted(v)
			res.gathered[v] = fmt.Sprint(sink.gathered[v])
		}
		return res
	}
	local := func(size int) func(int) (comm.Comm, error) {
		eps := comm.NewLocal(size)
		return func(r int) (comm.Comm, error) { return eps[r], nil }
	}
	want := run(1, local(4))
	if want.counts != "done 4, failed 1, slice failures 5" {
		t.Fatalf("in_flight 1: %s, want 4 done, visit 2 failed (preprocess), ccd=5 failed in each visit", want.counts)
	}
	dir := t.TempDir()
	for name, mk := range map[string]func(int) (comm.Comm, error){
		"local": local(4),
		"tcp": func(r int) (comm.Comm, error) {
			return comm.NewTCP(context.Background(), comm.TCPConfig{Rank: r, Size: 4, Rendezvous: dir, ListenAddr: "127.0.0.1:0",
				ConnectTimeout: 10 * time.Second, Timeout: 5 * time.Second, Heartbeat: 100 * time.Millisecond})
		},
	} {
		got := run(3, mk)
		if got.counts != want.counts {
			t.Errorf("%s, in_flight 3: %s; with 1: %s", name, got.counts, want.counts)
		}
		for _, v := range visitIDs(5) {
			if g, w := strings.Join(got.seen[v], "\n"), strings.Join(want.seen[v], "\n"); g != w {
				t.Errorf("%s, in_flight 3, visit %s: slices saw\n%s\nwith 1:\n%s", name, v, g, w)
			}
			if got.gathered[v] != want.gathered[v] {
				t.Errorf("%s, in_flight 3, visit %s: gathered %s, with 1: %s", name, v, got.gathered[v], want.gathered[v])
			}
		}
	}
}

// runFlight runs policy on size ranks (the communicator of each from mk)
// over the visits, with rec as the Pipeline's Recorder and each visit's
// ephem event published in reverse order, and returns the summary and
// every rank's error.
func runFlight(t *testing.T, policy string, size int, visits []string, rec Recorder, mk func(int) (comm.Comm, error)) (*Summary, []error) {
	t.Helper()
	resetSink()
	dir := t.TempDir()
	path := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(path, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var vs []Visit
	for _, v := range visits {
		vs = append(vs, Visit{ID: v})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	broker := events.NewMemory()
	defer broker.Close()
	for i := len(visits) - 1; i >= 0; i-- {
		e := events.Event{Topic: "ephem", RunID: "x-run", Properties: map[string]any{"visitId": visits[i], "ra": visits[i] + ".5"}}
		if err := broker.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	var sum *Summary
	errs := make([]error, size)
	var wg sync.WaitGroup
	for r := range size {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := mk(r)
			if err != nil {
				errs[r] = err
				return
			}
			defer c.Close()
			o := RunOptions{Comm: c, Policy: p, RunID: "x-run", RunDir: dir, Host: thisMachine()}
			if r == 0 {
				o.Broker, o.Recorder, o.Visits = broker, rec, vs
			}
			s, err := Run(ctx, o)
			if r == 0 {
				sum = s
			}
			errs[r] = err
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("run did not end within 30s")
	}
	return sum, errs
}

// A pipeline with no parallel stage runs its visits in flight on the
// Pipeline alone: the Slices only hear them start.
func TestInFlightSerialOnly(t *testing.T) {
	sum, _, err := runYAML(t, testHead+"in_flight: 3\nstages:\n  - {name: h, type: test-hook}\n", visitIDs(5))
	if err != nil || sum.Done != 5 {
		t.Fatalf("done %d of 5: %v", sum.Done, err)
	}
}

// failingEnd is a Recorder that cannot record the end of one visit.
type failingEnd struct {
	*endings
	visit string
}

func (f failingEnd) VisitEnded(v string, r VisitResult) error {
	if v == f.visit {
		return errors.New("disk full")
	}
	return f.endings.VisitEnded(v, r)
}

// A Recorder error with visits in flight ends the run with that error,
// every Slice stopped, no rank left waiting, and no visit starts after
// it.
func TestInFlightRecorderErrorEndsRun(t *testing.T) {
	policy := `pipeline: t
slices: 2
in_flight: 3
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
stages:
  - {name: a, type: test-sleep, settings: {for: 100ms}}
  - {name: b, type: test-sleep, settings: {for: 100ms}}
`
	sum, _, err := runYAML(t, policy, visitIDs(9), func(lr *RunOptions) {
		lr.Recorder = failingEnd{lr.Recorder.(*endings), "2"}
	})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v, want the Recorder's", err)
	}
	if sum.Visits >= 9 {
		t.Errorf("%d visits started: the run went on after visit 2's end could not be recorded", sum.Visits)
	}
}

// readLog is a broker that logs the visit of each event its
// subscriptions to topic return: the events the Pipeline took from the
// broker (a NATS broker acknowledges them, never to hand them out again).
type readLog struct {
	events.Broker
	topic string
	mu    sync.Mutex
	read  []string
}

func (b *readLog) Subscribe(ctx context.Context, topic, runID string) (events.Subscription, error) {
	sub, err := b.Broker.Subscribe(ctx, topic, runID)
	if err != nil || topic != b.topic {
		return sub, err
	}
	return &loggedSub{Subscription: sub, b: b}, nil
}

func (b *readLog) visits() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.read)
}

type loggedSub struct {
	events.Subscription
	b *readLog
}

func (s *loggedSub) Next(ctx context.Context) (events.Event, error) {
	e, err := s.Subscription.Next(ctx)
	if err == nil {
		v, _ := e.Visit()
		s.b.mu.Lock()
		s.b.read = append(s.b.read, v)
		s.b.mu.Unlock()
	}
	return e, err
}

// With visits in flight, as with one, a topic stages wait for is read
// only while a stage waits there: an event for a visit that does not run
// in this job (published while no stage waits: the visits in flight are
// past their waits) stays with the broker, for the job that runs it,
// instead of being taken into the Pipeline's box and lost at the run's
// end.
func TestInFlightLeavesUnwaitedEventsWithBroker(t *testing.T) {
	policy := `pipeline: t
slices: 2
in_flight: 3
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
events:
  external: [ephem]
stages:
  - name: wait
    type: test-record
    settings: {keys: [ra]}
    event: {topic: ephem, timeout: 20s, properties: [ra]}
  - {name: last, type: test-sleep, settings: {for: 1s}}
`
	mem := events.NewMemory()
	defer mem.Close()
	b := &readLog{Broker: mem, topic: "ephem"}
	published := make(chan error, 1)
	go func() {
		err := publishSpaced(mem, []int{1, 2}, 10*time.Millisecond)
		if err == nil {
			err = publishSpaced(mem, []int{3}, 400*time.Millisecond) // visits 1 and 2 in last
		}
		published <- err
	}()
	sum, end, err := runYAML(t, policy, visitIDs(2), func(lr *RunOptions) { lr.Broker = b })
	if perr := <-published; perr != nil {
		t.Fatal(perr)
	}
	if err != nil || sum.Done != 2 {
		t.Fatalf("done %d of 2: %v (%v)", sum.Done, err, end.results)
	}
	if got := b.visits(); slices.Contains(got, "3") {
		t.Errorf("the Pipeline read the events of visits %q from the broker; want visit 3's left there", got)
	}
}
