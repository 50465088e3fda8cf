package injob

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/state"
)

// feedBroker is rank 0's broker over an in-process Memory broker, on the
// state file of a submitted run (job 1001), feeding feed.
func feedBroker(t *testing.T, feed []harness.Visit, listen bool) (*jobBroker, *events.Memory, string) {
	t.Helper()
	dir := runtest.New(t, "run1", rundir.Settings{Listen: listen}, 2).Dir
	st, err := state.Open(rundir.Layout{Dir: dir}.State())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m := events.NewMemory()
	t.Cleanup(func() { m.Close() })
	return &jobBroker{Broker: m, st: st, job: "1001", trigger: "visits", feed: feed, listen: listen,
		log: slog.New(slog.DiscardHandler), now: runtest.FixedNow}, m, dir
}

// Not listening, the trigger subscription gives the feed, one
// no-more-data, then ErrClosed; the broker's own trigger events are not
// read. Each visit's slot is let go once returned.
func TestFeedNotListening(t *testing.T) {
	feed := []harness.Visit{{ID: "a", Props: map[string]any{"band": "r"}}, {ID: "b"}}
	b, m, dir := feedBroker(t, feed, false)
	ctx := context.Background()
	if err := m.Publish(ctx, events.Event{Topic: "visits", RunID: "run1", Properties: map[string]any{events.PropVisit: "x"}}); err != nil {
		t.Fatal(err)
	}
	sub, err := b.Subscribe(ctx, "visits", "run1")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i, want := range []string{"a", "b"} {
		got := runtest.Next(t, sub)
		if got.Topic != "visits" || got.RunID != "run1" || !got.IsData() || runtest.VisitOf(got) != want {
			t.Fatalf("event %d: %+v; want visit %s of run1 on visits", i, got, want)
		}
		if i == 0 && got.Properties["band"] != "r" {
			t.Errorf("visit a's properties %v; want band r", got.Properties)
		}
		if feed[i].ID != "" || feed[i].Props != nil {
			t.Errorf("feed slot %d still holds %+v after it was returned", i, feed[i])
		}
	}
	end := runtest.Next(t, sub)
	if end.Kind != events.KindNoMoreData || end.Topic != "visits" || end.RunID != "run1" {
		t.Errorf("after the feed: %+v; want no-more-data on visits for run1", end)
	}
	for range 2 {
		if e, err := sub.Next(ctx); !errors.Is(err, events.ErrClosed) {
			t.Fatalf("after no-more-data: %+v, %v; want ErrClosed", e, err)
		}
	}
	// A done context is an error before anything else.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := sub.Next(done); !errors.Is(err, context.Canceled) {
		t.Errorf("Next with a done context: %v", err)
	}
	if recs := runtest.Recorded(t, dir, state.EventQuery{}); len(recs) != 0 {
		t.Errorf("recorded %+v; want nothing (the broker was not read)", recs)
	}
	if r := runtest.RunOf(t, dir); !r.InputClosed.IsZero() {
		t.Errorf("input closed %v by the feed's own end; want open", r.InputClosed)
	}
}

// Listening, the feed comes first, then the broker's trigger events
// (recorded as received), with no end of their own; a no-more-data from
// the broker closes the run's input. Other topics get no feed.
func TestFeedListening(t *testing.T) {
	feed := []harness.Visit{{ID: "a"}}
	b, m, dir := feedBroker(t, feed, true)
	ctx := context.Background()
	pub := func(e events.Event) {
		t.Helper()
		e.RunID = "run1"
		if err := m.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	pub(events.Event{Topic: "visits", Sender: "login1", Properties: map[string]any{events.PropVisit: "e1", "band": "g"}})
	sub, err := b.Subscribe(ctx, "visits", "run1")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	other, err := b.Subscribe(ctx, "ephem", "run1")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	if got := runtest.VisitOf(runtest.Next(t, sub)); got != "a" {
		t.Fatalf("first %q; want the feed's a", got)
	}
	if feed[0].ID != "" {
		t.Errorf("feed slot still holds %+v", feed[0])
	}
	if got := runtest.Next(t, sub); runtest.VisitOf(got) != "e1" || got.Properties["band"] != "g" {
		t.Fatalf("second %+v; want e1 from the broker", got)
	}
	runtest.Quiet(t, sub, 200*time.Millisecond) // no no-more-data of its own
	runtest.Quiet(t, other, 100*time.Millisecond)
	if r := runtest.RunOf(t, dir); !r.InputClosed.IsZero() {
		t.Fatalf("input closed before any no-more-data: %+v", r)
	}

	// A no-more-data elsewhere is not the end of the input.
	pub(events.Event{Topic: "ephem", Kind: events.KindNoMoreData})
	if got := runtest.Next(t, other); got.Kind != events.KindNoMoreData {
		t.Fatalf("on ephem: %+v", got)
	}
	if r := runtest.RunOf(t, dir); !r.InputClosed.IsZero() {
		t.Fatalf("a no-more-data on ephem closed the input: %+v", r)
	}
	// Nor is one selected for another pipeline sharing the topic.
	b.selects = (&harness.EventFilter{Select: map[string]any{"band": "g"}}).Selects
	pub(events.Event{Topic: "visits", Kind: events.KindNoMoreData, Properties: map[string]any{"band": "r"}})
	if got := runtest.Next(t, sub); got.Kind != events.KindNoMoreData || got.Properties["band"] != "r" {
		t.Fatalf("third %+v; want the no-more-data for band r", got)
	}
	if r := runtest.RunOf(t, dir); !r.InputClosed.IsZero() {
		t.Fatalf("a no-more-data selected for another pipeline closed the input: %+v", r)
	}
	pub(events.Event{Topic: "visits", Kind: events.KindNoMoreData, Sender: "login1"})
	if got := runtest.Next(t, sub); got.Kind != events.KindNoMoreData {
		t.Fatalf("fourth %+v; want the broker's no-more-data", got)
	}
	r := runtest.RunOf(t, dir)
	if !r.InputClosed.Equal(runtest.FixedNow()) || r.InputClosedWhy != "no-more-data from login1" {
		t.Errorf("input closed at %v for %q; want %v, no-more-data from login1", r.InputClosed, r.InputClosedWhy, runtest.FixedNow())
	}
	runtest.Quiet(t, sub, 100*time.Millisecond)

	// What came from the broker is recorded, the feed is not.
	var got []string
	for _, rec := range runtest.Recorded(t, dir, state.EventQuery{}) {
		id, _ := rec.Props[events.PropVisit].(string)
		got = append(got, rec.Dir+" "+rec.Topic+" "+rec.Kind+" "+id+" "+rec.Job)
	}
	want := []string{"in visits  e1 1001", "in ephem no-more-data  1001", "in visits no-more-data  1001", "in visits no-more-data  1001"}
	if !slices.Equal(got, want) {
		t.Errorf("recorded\n%q\nwant\n%q", got, want)
	}

	// Publish records what is sent, but heartbeats.
	if err := b.Publish(ctx, events.Event{Topic: events.TopicHeartbeat, RunID: "run1"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, events.Event{Topic: "done", RunID: "run1", Pipeline: "tiny"}); err != nil {
		t.Fatal(err)
	}
	if out := runtest.Recorded(t, dir, state.EventQuery{Dir: "out"}); len(out) != 1 || out[0].Topic != "done" || out[0].Pipeline != "tiny" {
		t.Errorf("recorded as sent %+v; want the one on done", out)
	}
}
