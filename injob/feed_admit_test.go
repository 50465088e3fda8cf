package injob

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/state"
)

// TestFedVisitAdmittedWithoutQuery checks the feed's shortcut: the visit
// the state file's feed just handed out is admitted without asking the
// file (it was runnable when read), but once an event comes from the
// broker the file decides again, so a redelivered done visit is skipped.
func TestFedVisitAdmittedWithoutQuery(t *testing.T) {
	b, m, _ := feedBroker(t, []harness.Visit{{ID: "v001"}}, true)
	r := &recorder{st: b.st, job: "1001", now: runtest.FixedNow, log: slog.New(slog.DiscardHandler), fed: &b.fed}
	ctx := context.Background()
	sub, err := b.Subscribe(ctx, "visits", "run1")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := sub.Next(ctx); err != nil || runtest.VisitOf(e) != "v001" {
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
	if e, err := sub.Next(ctx); err != nil || runtest.VisitOf(e) != "v001" {
		t.Fatalf("broker: %+v %v", e, err)
	}
	if _, _, err := r.AdmitVisit("v001"); err == nil {
		t.Error("a visit from the broker was admitted without asking the state file")
	}
}

// A no-more-data the after-rule of an earlier job sent, which that job
// stopped before reading, does not end this job's input: it is skipped
// (and recorded), and this job's own ends it. So is one an earlier start
// of this very job sent (a requeued job starts again under its ID).
func TestStaleAfterNoMoreDataSkipped(t *testing.T) {
	b, m, dir := feedBroker(t, nil, true)
	ctx := context.Background()
	sub, err := b.Subscribe(ctx, "visits", "run1")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for _, e := range []events.Event{
		{Topic: "visits", Kind: events.KindNoMoreData, Properties: map[string]any{"after": "detect", "job": "999"}},
		{Topic: "visits", Kind: events.KindNoMoreData, Properties: map[string]any{"after": "detect", "job": "1001", "start": 1}},
		{Topic: "visits", Properties: map[string]any{events.PropVisit: "late"}},
		{Topic: "visits", Kind: events.KindNoMoreData, Properties: map[string]any{"after": "detect", "job": "1001"}},
	} {
		e.RunID = "run1"
		if err := m.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if e := runtest.Next(t, sub); runtest.VisitOf(e) != "late" {
		t.Fatalf("first %+v; want the trigger behind the stale no-more-data", e)
	}
	if r := runtest.RunOf(t, dir); !r.InputClosed.IsZero() {
		t.Fatalf("the stale no-more-data closed the input: %+v", r)
	}
	if e := runtest.Next(t, sub); e.Kind != events.KindNoMoreData || e.Properties["job"] != "1001" {
		t.Fatalf("second %+v; want this job's no-more-data", e)
	}
	if r := runtest.RunOf(t, dir); r.InputClosed.IsZero() || !strings.HasSuffix(r.InputClosedWhy, "once detect ended") {
		t.Errorf("input closed %v for %q; want closed once detect ended", r.InputClosed, r.InputClosedWhy)
	}
	if n := len(runtest.Recorded(t, dir, state.EventQuery{Dir: "in"})); n != 4 {
		t.Errorf("%d events recorded; want all 4", n)
	}
}

// A trigger's visit runs unless the state file records it done; one the
// run has not heard of is added first.
func TestAdmitVisit(t *testing.T) {
	dir := runtest.New(t, "run1", rundir.Settings{}, 5).Dir
	st, err := state.Open(rundir.Layout{Dir: dir}.State())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	runtest.VisitAs(t, st, "1001", "v001", state.Done)
	runtest.VisitAs(t, st, "1001", "v002", state.Failed)
	runtest.VisitAs(t, st, "1001", "v003", state.Interrupted)
	r := &recorder{st: st, job: "1001", now: runtest.FixedNow, log: slog.New(slog.DiscardHandler)}
	for _, tc := range []struct {
		visit  string
		run    bool
		reason string
	}{
		{"v001", false, "already done (state file)"},
		{"v002", true, ""},
		{"v003", true, ""},
		{"v004", true, ""},
		{"new1", true, ""},
		{"new1", true, ""}, // delivered twice: still one visit
	} {
		run, reason, err := r.AdmitVisit(tc.visit)
		if err != nil || run != tc.run || reason != tc.reason {
			t.Errorf("AdmitVisit(%s) = %v, %q, %v; want %v, %q", tc.visit, run, reason, err, tc.run, tc.reason)
		}
	}
	vs, err := st.Visits("", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vs {
		got = append(got, v.ID+" "+string(v.State))
	}
	want := []string{"v001 done", "v002 failed", "v003 interrupted", "v004 pending", "v005 pending", "new1 pending"}
	if !slices.Equal(got, want) {
		t.Errorf("visits %v; want %v", got, want)
	}
	// An empty visit ID is the state file's error, and nothing is run.
	if run, _, err := r.AdmitVisit(""); err == nil || run {
		t.Errorf("AdmitVisit(\"\") = %v, %v; want an error", run, err)
	}
}
