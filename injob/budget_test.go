package injob

import (
	"context"
	"strings"
	"testing"
	"time"
)

func secs(n ...float64) []time.Duration {
	out := make([]time.Duration, len(n))
	for i, s := range n {
		out[i] = time.Duration(s * float64(time.Second))
	}
	return out
}

// The rule: a visit starts while the time left is at least StopMargin
// plus the time a visit is expected to take: the 95th percentile of the
// recent visit times, else the policy's visit_time, else
// DefaultVisitTime.
func TestBudgetRule(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		visitTime time.Duration   // the policy's
		recent    []time.Duration // newest first
		took      []time.Duration // visits of this job, in order
		left      time.Duration
		short     bool
		from      string
	}{
		{name: "no visit timed: the default", left: StopMargin + DefaultVisitTime, from: "the default"},
		{name: "no visit timed: the default, short", left: StopMargin + DefaultVisitTime - time.Second, short: true, from: "the default"},
		{name: "the policy's visit_time", visitTime: 5 * time.Second, left: StopMargin + 5*time.Second, from: "visit_time"},
		{name: "the policy's visit_time, short", visitTime: 5 * time.Second, left: StopMargin + 4*time.Second, short: true, from: "visit_time"},
		{name: "one visit timed wins over the policy", visitTime: time.Minute, took: secs(2), left: StopMargin + 2*time.Second, from: "last 1 visits"},
		// Ten visits: the 95th percentile is the slowest.
		{name: "ten visits: the slowest", recent: secs(1, 1, 1, 1, 8, 1, 1, 1, 1, 1), left: StopMargin + 7*time.Second, short: true, from: "last 10 visits"},
		// Twenty visits: one slow one is above the 95th percentile.
		{name: "twenty visits: one slow one is not the p95", recent: append(secs(8), secs(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)...),
			left: StopMargin + time.Second, from: "last 20 visits"},
		// The last 100 count: 100 slow visits, then 100 quick ones.
		{name: "only the latest visits", took: append(repeat(secs(20), 100), repeat(secs(1), 100)...), left: StopMargin + time.Second, from: "last 100 visits"},
		{name: "the state's times, then this job's", recent: repeat(secs(20), 150), took: repeat(secs(1), 90), left: StopMargin + 19*time.Second, short: true, from: "last 100 visits"},
		{name: "time is up", took: secs(1), left: -time.Minute, short: true, from: "last 1 visits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			end := func(context.Context) (time.Time, error) { return t0.Add(tc.left), nil }
			b := newBudget(end, func() time.Time { return t0 }, tc.visitTime, tc.recent)
			for _, d := range tc.took {
				b.visitTook(d)
			}
			if why := b.short(); why != "" {
				t.Fatalf("short before the end was read: %q", why)
			}
			if err := b.readEnd(context.Background()); err != nil {
				t.Fatal(err)
			}
			why := b.short()
			if (why != "") != tc.short {
				t.Fatalf("short = %q; want short %v", why, tc.short)
			}
			if tc.short && (!strings.HasPrefix(why, "time limit near: ") || !strings.Contains(why, tc.from)) {
				t.Errorf("why = %q; want it to start with \"time limit near: \" and name %q", why, tc.from)
			}
			b.mu.Lock()
			_, from := b.expected()
			b.mu.Unlock()
			if !strings.Contains(from, tc.from) {
				t.Errorf("expected visit time from %q; want %q", from, tc.from)
			}
		})
	}
	// A job without a time limit always has time.
	b := newBudget(func(context.Context) (time.Time, error) { return time.Time{}, nil }, func() time.Time { return t0 }, 0, secs(1000))
	if err := b.readEnd(context.Background()); err != nil || b.short() != "" {
		t.Errorf("no time limit: %v, short %q; want time for every visit", err, b.short())
	}
}

func repeat(d []time.Duration, n int) []time.Duration {
	var out []time.Duration
	for range n {
		out = append(out, d...)
	}
	return out
}
