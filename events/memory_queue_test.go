package events

import (
	"context"
	"testing"
)

// A subscription that always has events waiting (the Pipeline keeps a
// few visits queued) must not grow its queue without bound.
func TestMemoryQueueStaysBounded(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	s, err := m.Subscribe(ctx, "t", "r")
	if err != nil {
		t.Fatal(err)
	}
	m.Publish(ctx, Event{Topic: "t", RunID: "r"})
	m.Publish(ctx, Event{Topic: "t", RunID: "r"})
	for i := 0; i < 100000; i++ {
		if err := m.Publish(ctx, Event{Topic: "t", RunID: "r", Properties: map[string]any{"i": i}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ms := s.(*memSub)
	if c := cap(ms.queue); c > 256 {
		t.Errorf("queue capacity %d after 100000 events with 2 waiting, want a small bound", c)
	}
	// Order is kept across compactions.
	e1, _ := s.Next(ctx)
	e2, _ := s.Next(ctx)
	if e1.Properties["i"] != 99998 || e2.Properties["i"] != 99999 {
		t.Errorf("last events %v %v, want i=99998, 99999", e1.Properties, e2.Properties)
	}
}
