package jobs

import (
	"context"
	"log/slog"
	"testing"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness"
)

// TestFedVisitAdmittedWithoutQuery checks the feed's shortcut: the visit
// the state file's feed just handed out is admitted without asking the
// file (it was runnable when read), but once an event comes from the
// broker the file decides again, so a redelivered done visit is skipped.
func TestFedVisitAdmittedWithoutQuery(t *testing.T) {
	b, m, _ := feedBroker(t, []harness.Visit{{ID: "v001"}}, true)
	r := &recorder{st: b.st, job: "1001", now: fixedNow, log: slog.New(slog.DiscardHandler), fed: &b.fed}
	ctx := context.Background()
	sub, err := b.Subscribe(ctx, "visits", "run1")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := sub.Next(ctx); err != nil || visitOf(e) != "v001" {
		t.Fatalf("feed: %+v %v", e, err)
	}
	// Done since the feed was read (as by another job's redelivery): the
	// shortcut admits it all the same, with no query that could fail.
	b.st.Close()
	if run, why, err := r.AdmitVisit("v001"); !run || err != nil {
		t.Errorf("fed visit: %v %q %v; want it admitted without the (closed) state file", run, why, err)
	}
	if _, _, err := r.AdmitVisit("v002"); err == nil {
		t.Error("a visit other than the fed one was admitted without the state file")
	}
	if err := m.Publish(ctx, events.Event{Topic: "visits", RunID: "run1", Properties: map[string]any{events.PropVisit: "v001"}}); err != nil {
		t.Fatal(err)
	}
	if e, err := sub.Next(ctx); err != nil || visitOf(e) != "v001" {
		t.Fatalf("broker: %+v %v", e, err)
	}
	if _, _, err := r.AdmitVisit("v001"); err == nil {
		t.Error("a visit from the broker was admitted without asking the state file")
	}
}
