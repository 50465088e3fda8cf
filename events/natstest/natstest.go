// Package natstest holds what tests of brokers share: Run, the suite every
// events.Broker passes (the in-memory one and the one over NATS), and
// StartServer, an embedded NATS server for the tests of any package that
// needs a real broker.
package natstest

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
)

// StartServer starts an embedded NATS server with JetStream on 127.0.0.1
// and a random port, its store in a temporary directory, stopped when the
// test ends. token, if not empty, is required of clients.
func StartServer(t testing.TB, token string) *events.Embedded {
	t.Helper()
	e, err := events.StartEmbedded(events.EmbeddedConfig{Dir: t.TempDir(), Host: "127.0.0.1", Token: token})
	if err != nil {
		t.Fatalf("start NATS server: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// Dial connects to url with DialNATS, closed when the test ends.
func Dial(t testing.TB, url string) *events.NATS {
	t.Helper()
	return DialConfig(t, events.NATSConfig{URLs: []string{url}, Name: t.Name()})
}

// DialConfig connects with DialNATS as c says, within 10 s, failing the
// test on an error; the connection is closed when the test ends.
func DialConfig(t testing.TB, c events.NATSConfig) *events.NATS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := events.DialNATS(ctx, c)
	if err != nil {
		t.Fatalf("DialNATS: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// Harness is what Run needs of a broker implementation.
type Harness struct {
	// New returns a broker holding no events, on its own (no other test
	// sees its events). The suite closes it; Close must allow a second
	// call.
	New func(t *testing.T) events.Broker
	// Peer returns another broker over the same events as b: a second
	// connection to the same server for a networked broker, b itself
	// for an in-process one.
	Peer func(t *testing.T, b events.Broker) events.Broker
	// PublishRaw, when the broker carries bytes, sends data as it is
	// where an event of topic and run would go, bypassing the encoding.
	// Nil for a broker of Go values.
	PublishRaw func(t *testing.T, b events.Broker, topic, runID string, data []byte)
}

// Run runs the suite against the broker h makes, each test as a subtest.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		f    func(*testing.T, Harness)
	}{
		{"PublishSubscribe", testPublishSubscribe},
		{"Stamp", testStamp},
		{"BacklogAcrossPeers", testBacklog},
		{"RunFilter", testRunFilter},
		{"SpecialNames", testSpecialNames},
		{"Order", testOrder},
		{"Kinds", testKinds},
		{"Malformed", testMalformed},
		{"NextContext", testNextContext},
		{"Close", testClose},
		{"SubscriptionClose", testSubscriptionClose},
		{"ConcurrentPublishers", testConcurrent},
	}
	for _, tt := range tests {
		if tt.name == "Malformed" && h.PublishRaw == nil {
			continue // a broker of Go values: nothing can be malformed
		}
		t.Run(tt.name, func(t *testing.T) { tt.f(t, h) })
	}
}

func newBroker(t *testing.T, h Harness) events.Broker {
	b := h.New(t)
	t.Cleanup(func() { b.Close() })
	return b
}

// ev is a data event of run on topic "visits" with visitId v.
// Event is a trigger event of run for visit v on topic "visits".
func Event(run string, v any) events.Event {
	return events.Event{Topic: "visits", RunID: run, Properties: map[string]any{events.PropVisit: v}}
}

// Next reads one event, failing the test when none comes within 5 s.
func Next(t *testing.T, s events.Subscription) events.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return e
}

// Visits reads n events and returns their visit IDs.
func Visits(t *testing.T, s events.Subscription, n int) []string {
	t.Helper()
	var out []string
	for i := 0; i < n; i++ {
		v, _ := Next(t, s).Visit()
		out = append(out, v)
	}
	return out
}

// Empty checks that nothing more is waiting on s.
func Empty(t *testing.T, s events.Subscription) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if e, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next = %+v, %v; want nothing more", e, err)
	}
}

// Publish publishes es, failing the test on an error.
func Publish(t *testing.T, b events.Broker, es ...events.Event) {
	t.Helper()
	for _, e := range es {
		if err := b.Publish(context.Background(), e); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
}

// Subscribe subscribes, failing the test on an error, and closes the
// subscription when the test ends.
func Subscribe(t *testing.T, b events.Broker, topic, run string) events.Subscription {
	t.Helper()
	s, err := b.Subscribe(context.Background(), topic, run)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testPublishSubscribe(t *testing.T, h Harness) {
	b := newBroker(t, h)
	s := Subscribe(t, b, "visits", "r1")
	props := map[string]any{
		events.PropVisit: "704",
		"filter":         "r",
		"ccd":            12,
		"ra":             10.5,
		"ok":             true,
		"none":           nil,
		"list":           []any{1, "a", 2.5},
		"map":            map[string]any{"k": 1, "deep": []any{true}},
	}
	sent := events.Event{Topic: "visits", RunID: "r1", Kind: events.KindData, Pipeline: "isr", Properties: props}
	Publish(t, b, sent)
	got := Next(t, s)
	if got.Topic != "visits" || got.RunID != "r1" || got.Kind != events.KindData || got.Pipeline != "isr" {
		t.Errorf("event came through as %+v", got)
	}
	if !reflect.DeepEqual(got.Properties, props) {
		t.Errorf("properties came through as %#v, want %#v", got.Properties, props)
	}
	if v, ok := got.Visit(); v != "704" || !ok {
		t.Errorf("Visit = %q, %v", v, ok)
	}
	if n := s.Dropped(); n != 0 {
		t.Errorf("Dropped = %d", n)
	}
	Empty(t, s)
}

func testStamp(t *testing.T, h Harness) {
	b := newBroker(t, h)
	s := Subscribe(t, b, "visits", "r1")
	before := time.Now()
	Publish(t, b, Event("r1", "v1"))
	after := time.Now()
	at := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	e := Event("r1", "v2")
	e.Time, e.Sender = at, "elsewhere"
	Publish(t, b, e)

	got := Next(t, s)
	if got.Time.Before(before.Truncate(time.Microsecond)) || got.Time.After(after) {
		t.Errorf("Time = %v, want between %v and %v", got.Time, before, after)
	}
	if got.Sender == "" {
		t.Errorf("Sender is empty, want this host's name")
	}
	got = Next(t, s)
	if !got.Time.Equal(at) || got.Sender != "elsewhere" {
		t.Errorf("Time, Sender = %v, %q; want the publisher's %v, elsewhere", got.Time, got.Sender, at)
	}
}

func testBacklog(t *testing.T, h Harness) {
	b := newBroker(t, h)
	producer := h.Peer(t, b)
	Publish(t, producer, Event("r1", "v1"), Event("r1", "v2"))
	s := Subscribe(t, b, "visits", "r1")
	Publish(t, producer, Event("r1", "v3"))
	if got, want := Visits(t, s, 3), []string{"v1", "v2", "v3"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	Empty(t, s)
}

func testRunFilter(t *testing.T, h Harness) {
	b := newBroker(t, h)
	Publish(t, b, Event("r2", "a"), Event("r1", "v1"))
	s1 := Subscribe(t, b, "visits", "r1")
	Publish(t, b, Event("r2", "b"), Event("r1", "v2"), Event("r2", "c"), Event("", "d"))
	if got, want := Visits(t, s1, 2), []string{"v1", "v2"}; !slices.Equal(got, want) {
		t.Errorf("r1 got %q, want %q", got, want)
	}
	Empty(t, s1)
	s2 := Subscribe(t, b, "visits", "r2")
	if got, want := Visits(t, s2, 3), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("r2 got %q, want %q", got, want)
	}
	Empty(t, s2)
	// An empty run ID is a run ID like any other.
	s3 := Subscribe(t, b, "visits", "")
	if got := Visits(t, s3, 1); got[0] != "d" {
		t.Errorf("run \"\" got %q", got)
	}
	Empty(t, s3)
	if n := s1.Skipped(); n > 3 {
		t.Errorf("r1 Skipped = %d, more than the 3 events of other runs published while it listened", n)
	}
}

// Names that mean something to a broker's addressing (NATS: '.', '*', '>',
// white space) must neither fail nor mix events of different names.
func testSpecialNames(t *testing.T, h Harness) {
	b := newBroker(t, h)
	names := []string{"a", "a.b", "a.*", "a.>", "*", ">", "a b", "a\tb", "~", "~2E", "a~2Eb", "ünï", "dpsbatch.control", "a/b", "a%2Eb"}
	var subs []events.Subscription
	for i, topic := range names {
		run := names[len(names)-1-i]
		Publish(t, b, events.Event{Topic: topic, RunID: run, Properties: map[string]any{"i": i}})
	}
	for i, topic := range names {
		run := names[len(names)-1-i]
		s := Subscribe(t, b, topic, run)
		subs = append(subs, s)
		e := Next(t, s)
		if e.Topic != topic || e.RunID != run || e.Properties["i"] != i {
			t.Errorf("topic %q run %q got %+v", topic, run, e)
		}
	}
	for _, s := range subs {
		Empty(t, s)
	}
}

func testOrder(t *testing.T, h Harness) {
	const n = 500
	b := newBroker(t, h)
	producer := h.Peer(t, b)
	for i := 0; i < n/2; i++ {
		Publish(t, producer, Event("r1", i))
	}
	s := Subscribe(t, b, "visits", "r1")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := n / 2; i < n; i++ {
			if err := producer.Publish(context.Background(), Event("r1", i)); err != nil {
				t.Errorf("Publish: %v", err)
				return
			}
		}
	}()
	for i := 0; i < n; i++ {
		e := Next(t, s)
		if e.Properties[events.PropVisit] != i {
			t.Fatalf("event %d has visitId %v", i, e.Properties[events.PropVisit])
		}
	}
	<-done
	Empty(t, s)
}

func testKinds(t *testing.T, h Harness) {
	b := newBroker(t, h)
	Publish(t, b,
		Event("r1", "v1"),
		events.Event{Topic: "visits", RunID: "r1", Kind: events.KindNoMoreData},
		events.Event{Topic: events.TopicControl, RunID: "r1", Kind: events.KindShutdown},
	)
	s := Subscribe(t, b, "visits", "r1")
	if e := Next(t, s); !e.IsData() {
		t.Errorf("first event %+v is not data", e)
	}
	if e := Next(t, s); e.Kind != events.KindNoMoreData || e.IsData() {
		t.Errorf("second event %+v, want no-more-data", e)
	}
	c := Subscribe(t, b, events.TopicControl, "r1")
	if e := Next(t, c); e.Kind != events.KindShutdown || e.Topic != events.TopicControl {
		t.Errorf("control event %+v, want shutdown", e)
	}
	Empty(t, s)
	Empty(t, c)
}

func testMalformed(t *testing.T, h Harness) {
	b := newBroker(t, h)
	s := Subscribe(t, b, "visits", "r1")
	bad := []string{
		``,
		`not json`,
		`[1,2]`,
		`{"topic":"visits","run":"r1"}`,        // no version
		`{"v":99,"topic":"visits","run":"r1"}`, // a version from the future
		`{"v":1,"topic":"visits","run":"r1","kind":3}`,           // kind of the wrong type
		`{"v":1,"topic":"visits","run":"r1","kind":"explode"}`,   // unknown kind
		`{"v":1,"topic":"visits","run":"r1","props":[1]}`,        // properties not an object
		`{"v":1,"topic":"visits","run":"r1","time":"yesterday"}`, // not a time
		`{"v":1,"topic":"other","run":"r1"}`,                     // on the wrong subject
	}
	for _, p := range bad {
		h.PublishRaw(t, b, "visits", "r1", []byte(p))
	}
	Publish(t, b, Event("r1", "good"))
	h.PublishRaw(t, b, "visits", "r1", []byte(`{"v":1,"topic":"visits","run":"r1","props":{"visitId":"raw"}}`))
	if got, want := Visits(t, s, 2), []string{"good", "raw"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if n := s.Dropped(); n != len(bad) {
		t.Errorf("Dropped = %d, want %d", n, len(bad))
	}
	if dr, ok := s.(events.DropReporter); ok {
		drops := dr.TakeDrops()
		if len(drops) != len(bad) {
			t.Errorf("TakeDrops gave %d drops, want %d", len(drops), len(bad))
		}
		for _, d := range drops {
			if d.Topic != "visits" || !errors.Is(d.Err, events.ErrMalformed) {
				t.Errorf("drop %+v: want topic visits and a malformed-event error", d)
			}
		}
		if again := dr.TakeDrops(); len(again) != 0 {
			t.Errorf("TakeDrops again gave %v, want none", again)
		}
	}
	Empty(t, s)
	// A new subscription meets the same messages and drops them too.
	s2 := Subscribe(t, b, "visits", "r1")
	if got := Visits(t, s2, 2); !slices.Equal(got, []string{"good", "raw"}) {
		t.Errorf("second subscription got %q", got)
	}
	if n := s2.Dropped(); n != len(bad) {
		t.Errorf("second subscription: Dropped = %d, want %d", n, len(bad))
	}
}

func testNextContext(t *testing.T, h Harness) {
	b := newBroker(t, h)
	s := Subscribe(t, b, "visits", "r1")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Next(ctx)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Next after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Next did not return after its context was cancelled")
	}

	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next past deadline = %v, want DeadlineExceeded", err)
	}

	// A waiting Next wakes up for an event published later; nothing was
	// lost to the cancelled calls.
	got := make(chan events.Event, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e, err := s.Next(ctx)
		if err == nil {
			got <- e
		}
		close(got)
	}()
	time.Sleep(20 * time.Millisecond)
	Publish(t, b, Event("r1", "late"))
	select {
	case e := <-got:
		if v, _ := e.Visit(); v != "late" {
			t.Errorf("got %+v", e)
		}
	case <-time.After(6 * time.Second):
		t.Fatal("Next did not wake up for a new event")
	}

	dead, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Publish(dead, Event("r1", "never")); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with a cancelled context = %v", err)
	}
	if _, err := b.Subscribe(dead, "visits", "r1"); !errors.Is(err, context.Canceled) {
		t.Errorf("Subscribe with a cancelled context = %v", err)
	}
	Empty(t, s)
}

func testClose(t *testing.T, h Harness) {
	b := h.New(t)
	s, err := b.Subscribe(context.Background(), "visits", "r1")
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() {
		_, err := s.Next(context.Background())
		waiting <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-waiting:
		if !errors.Is(err, events.ErrClosed) {
			t.Errorf("waiting Next after Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting Next did not return when the broker closed")
	}
	if _, err := s.Next(context.Background()); !errors.Is(err, events.ErrClosed) {
		t.Errorf("Next after Close = %v, want ErrClosed", err)
	}
	if err := b.Publish(context.Background(), Event("r1", "v")); !errors.Is(err, events.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if _, err := b.Subscribe(context.Background(), "visits", "r1"); !errors.Is(err, events.ErrClosed) {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("subscription Close after broker Close = %v", err)
	}
}

func testSubscriptionClose(t *testing.T, h Harness) {
	b := newBroker(t, h)
	s := Subscribe(t, b, "visits", "r1")
	waiting := make(chan error, 1)
	go func() {
		_, err := s.Next(context.Background())
		waiting <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waiting:
		if !errors.Is(err, events.ErrClosed) {
			t.Errorf("waiting Next after subscription Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting Next did not return when its subscription closed")
	}
	if _, err := s.Next(context.Background()); !errors.Is(err, events.ErrClosed) {
		t.Errorf("Next after subscription Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	// The broker goes on.
	Publish(t, b, Event("r1", "v1"))
	s2 := Subscribe(t, b, "visits", "r1")
	if got := Visits(t, s2, 1); got[0] != "v1" {
		t.Errorf("got %q", got)
	}
}

// Many publishers at once, on two connections, while the subscription
// opens: every event arrives exactly once, each publisher's in its order.
// Run with -race.
func testConcurrent(t *testing.T, h Harness) {
	b := newBroker(t, h)
	Concurrent(t, b, h.Peer(t, b), 8, 100)
}

// Concurrent publishes each events from each of publishers goroutines at
// once, the even ones through b and the odd ones through peer (which may
// be b), every third event of the odd ones for run r2 and the rest for r1.
// It subscribes to r1 while they publish, then, once they are done, to
// r2, and checks that each subscription gets its run's events exactly
// once, each publisher's in order, and nothing more. Any broker's tests
// may run it.
func Concurrent(t *testing.T, b, peer events.Broker, publishers, each int) {
	t.Helper()
	start := make(chan struct{})
	var wg sync.WaitGroup
	want := map[string]int{} // run → expected count
	for p := 0; p < publishers; p++ {
		for i := 0; i < each; i++ {
			want[concurrentRun(p, i)]++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			via := b
			if p%2 == 0 {
				via = peer
			}
			for i := 0; i < each; i++ {
				e := events.Event{Topic: "visits", RunID: concurrentRun(p, i), Properties: map[string]any{"pub": p, "seq": i}}
				if err := via.Publish(context.Background(), e); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
			}
		}()
	}
	close(start)
	// Subscribe while the publishers run: the backlog and live events
	// must join without loss or repeat.
	s1 := Subscribe(t, b, "visits", "r1")
	check := func(s events.Subscription, run string) {
		t.Helper()
		last := map[int]int{}
		for p := 0; p < publishers; p++ {
			last[p] = -1
		}
		for n := 0; n < want[run]; n++ {
			e := Next(t, s)
			if e.RunID != run {
				t.Fatalf("%s got an event of run %q", run, e.RunID)
			}
			p, i := e.Properties["pub"].(int), e.Properties["seq"].(int)
			if i <= last[p] {
				t.Fatalf("%s: publisher %d event %d came after event %d (repeat or reorder)", run, p, i, last[p])
			}
			last[p] = i
		}
		Empty(t, s)
	}
	check(s1, "r1")
	wg.Wait()
	if n := s1.Skipped(); n > want["r2"] {
		t.Errorf("Skipped = %d, more than the %d events of r2", n, want["r2"])
	}
	check(Subscribe(t, b, "visits", "r2"), "r2")
}

func concurrentRun(p, i int) string {
	if p%2 == 1 && i%3 == 0 {
		return "r2"
	}
	return "r1"
}
