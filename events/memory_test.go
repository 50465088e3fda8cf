package events_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/events/natstest"
)

// ev is a data event of run on topic "visits" with visitId v.
// The helpers of the shared broker suite.
var (
	ev        = natstest.Event
	next      = natstest.Next
	visits    = natstest.Visits
	empty     = natstest.Empty
	publish   = natstest.Publish
	subscribe = natstest.Subscribe
)

func TestMemoryBacklog(t *testing.T) {
	b := events.NewMemory()
	defer b.Close()
	publish(t, b, ev("r1", "v1"), ev("r1", "v2"))
	s := subscribe(t, b, "visits", "r1")
	publish(t, b, ev("r1", "v3"))
	if got, want := visits(t, s, 3), []string{"v1", "v2", "v3"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	e := ev("r1", 42)
	e.Properties["filter"] = "r"
	publish(t, b, e)
	got := next(t, s)
	if got.Topic != "visits" || got.RunID != "r1" || got.Properties["filter"] != "r" || got.Properties[events.PropVisit] != 42 {
		t.Errorf("event came through as %+v", got)
	}
	empty(t, s)
	// The backlog went to the first subscription only.
	s2 := subscribe(t, b, "visits", "r1")
	empty(t, s2)
	// From now on every subscription of the run gets every event.
	publish(t, b, ev("r1", "v5"))
	if got := visits(t, s, 1); got[0] != "v5" {
		t.Errorf("first subscription got %q", got)
	}
	if got := visits(t, s2, 1); got[0] != "v5" {
		t.Errorf("second subscription got %q", got)
	}
}

func TestMemoryTopics(t *testing.T) {
	b := events.NewMemory()
	defer b.Close()
	publish(t, b, events.Event{Topic: "other", RunID: "r1"}, ev("r1", "v1"))
	s := subscribe(t, b, "visits", "r1")
	if got := visits(t, s, 1); got[0] != "v1" {
		t.Errorf("got %q", got)
	}
	empty(t, s)
	o := subscribe(t, b, "other", "r1")
	if e := next(t, o); e.Topic != "other" {
		t.Errorf("got %+v", e)
	}
}

func TestMemoryRunFilter(t *testing.T) {
	b := events.NewMemory()
	defer b.Close()
	// Before anyone subscribes: events of r2 wait for r2, and do not count
	// as skipped for r1.
	publish(t, b, ev("r2", "a"), ev("r1", "v1"))
	s1 := subscribe(t, b, "visits", "r1")
	if n := s1.Skipped(); n != 0 {
		t.Errorf("Skipped = %d after the backlog, want 0", n)
	}
	// While r1 listens: events of r2 are skipped by it and counted.
	publish(t, b, ev("r2", "b"), ev("r1", "v2"), ev("r2", "c"), ev("", "d"))
	if got, want := visits(t, s1, 2), []string{"v1", "v2"}; !slices.Equal(got, want) {
		t.Errorf("r1 got %q, want %q", got, want)
	}
	empty(t, s1)
	if n := s1.Skipped(); n != 3 {
		t.Errorf("Skipped = %d, want 3", n)
	}
	// They stay for a subscriber of their own run, in order.
	s2 := subscribe(t, b, "visits", "r2")
	if got, want := visits(t, s2, 3), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("r2 got %q, want %q", got, want)
	}
	empty(t, s2)
	if n := s2.Skipped(); n != 0 {
		t.Errorf("r2 Skipped = %d, want 0", n)
	}
	publish(t, b, ev("r1", "v3"))
	if n := s2.Skipped(); n != 1 {
		t.Errorf("r2 Skipped = %d, want 1", n)
	}
	if n := s1.Skipped(); n != 3 {
		t.Errorf("r1 Skipped = %d, want still 3", n)
	}
	// An empty run ID is a run ID like any other.
	s3 := subscribe(t, b, "visits", "")
	if got := visits(t, s3, 1); got[0] != "d" {
		t.Errorf("run \"\" got %q", got)
	}
}

func TestMemoryNextContext(t *testing.T) {
	b := events.NewMemory()
	defer b.Close()
	s := subscribe(t, b, "visits", "r1")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Next(ctx)
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Next after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Next did not return after its context was cancelled")
	}

	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next past deadline = %v, want DeadlineExceeded", err)
	}

	// A waiting Next wakes up for an event published later.
	got := make(chan events.Event, 1)
	go func() {
		e, err := s.Next(context.Background())
		if err == nil {
			got <- e
		}
		close(got)
	}()
	time.Sleep(10 * time.Millisecond)
	publish(t, b, ev("r1", "late"))
	select {
	case e := <-got:
		if v, _ := e.Visit(); v != "late" {
			t.Errorf("got %+v", e)
		}
	case <-time.After(time.Second):
		t.Fatal("Next did not wake up for a new event")
	}

	// Publish and Subscribe with a done context fail without effect.
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Publish(dead, ev("r1", "never")); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with a cancelled context = %v", err)
	}
	if _, err := b.Subscribe(dead, "visits", "r1"); !errors.Is(err, context.Canceled) {
		t.Errorf("Subscribe with a cancelled context = %v", err)
	}
	empty(t, s)
}

func TestMemoryClose(t *testing.T) {
	b := events.NewMemory()
	s := subscribe(t, b, "visits", "r1")
	waiting := make(chan error, 1)
	go func() {
		_, err := s.Next(context.Background())
		waiting <- err
	}()
	time.Sleep(10 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-waiting:
		if !errors.Is(err, events.ErrClosed) {
			t.Errorf("waiting Next after Close = %v, want ErrClosed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("a waiting Next did not return when the broker closed")
	}
	if _, err := s.Next(context.Background()); !errors.Is(err, events.ErrClosed) {
		t.Errorf("Next after Close = %v, want ErrClosed", err)
	}
	if err := b.Publish(context.Background(), ev("r1", "v")); !errors.Is(err, events.ErrClosed) {
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

func TestMemorySubscriptionClose(t *testing.T) {
	b := events.NewMemory()
	defer b.Close()
	s := subscribe(t, b, "visits", "r1")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(context.Background()); !errors.Is(err, events.ErrClosed) {
		t.Errorf("Next after subscription Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	// With its only subscription gone, the topic backlogs again.
	publish(t, b, ev("r1", "v1"))
	s2 := subscribe(t, b, "visits", "r1")
	if got := visits(t, s2, 1); got[0] != "v1" {
		t.Errorf("got %q", got)
	}
}

// Many publishers at once, while the subscription comes and goes: every
// event arrives exactly once, each publisher's in its order. Run with -race.
func TestMemoryConcurrentPublishers(t *testing.T) {
	b := events.NewMemory()
	defer b.Close()
	natstest.Concurrent(t, b, b, 8, 300)
}

func TestEvent(t *testing.T) {
	tests := []struct {
		e        events.Event
		data     bool
		visit    string
		hasVisit bool
	}{
		{events.Event{}, true, "", false},
		{events.Event{Kind: events.KindData, Properties: map[string]any{"visitId": "v1"}}, true, "v1", true},
		{events.Event{Properties: map[string]any{"visitId": 704}}, true, "704", true},
		{events.Event{Properties: map[string]any{"visitId": ""}}, true, "", false},
		{events.Event{Properties: map[string]any{"visitId": nil}}, true, "", false},
		{events.Event{Kind: events.KindNoMoreData}, false, "", false},
		{events.Event{Kind: events.KindShutdown}, false, "", false},
	}
	for _, tt := range tests {
		if got := tt.e.IsData(); got != tt.data {
			t.Errorf("%+v: IsData = %v", tt.e, got)
		}
		v, ok := tt.e.Visit()
		if v != tt.visit || ok != tt.hasVisit {
			t.Errorf("%+v: Visit = %q, %v; want %q, %v", tt.e, v, ok, tt.visit, tt.hasVisit)
		}
	}
}
