package jobs

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/injob"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/state"
)

// A listening job's Pipeline meets messages on its trigger topic that are
// no events (they do not decode) and an event malformed for its trigger:
// each is dropped, and counted in the job's summary, recorded with why
// in the state file (dpsbatch events) and counted by status.
func TestDroppedEventsCounted(t *testing.T) {
	e := newEnv(t, 0)
	e.policy = e.write("pipeline.yaml", `pipeline: typed
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
events: {trigger: {topic: visits, properties: {exposure: number}}}
stages:
  - {name: work, type: noop}
`)
	o := e.opts("run1")
	o.Listen, o.Visits = true, ""
	sub, err := Submit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	dir := sub.Dir
	l := rundir.Layout{Dir: dir}
	serveRun(t, l.State(), "1001", 0)
	j := &injob.InJob{StatePath: l.State(), JobID: "1001"}
	dr := harness.RunOptions{PolicyPath: l.Policy(), RunID: "run1", RunDir: dir, Rank0: j.Hook}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type result struct {
		sum *harness.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		dr.Ranks, dr.Size = harness.CommLocal, 3
		sum, err := harness.Run(ctx, dr)
		done <- result{sum, j.End(sum, err)}
	}()

	// The job's broker, once it has recorded where it listens.
	var url string
	for url == "" {
		select {
		case r := <-done:
			t.Fatalf("the job ended before its broker listened: %v", r.err)
		case <-time.After(100 * time.Millisecond):
		}
		for _, jr := range runtest.JobsOf(t, dir) {
			url = jr.Broker
		}
	}
	token, err := os.ReadFile(l.BrokerToken())
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, nats.Token(strings.TrimSpace(string(token))))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	encode := func(ev events.Event) []byte {
		ev.RunID = "run1"
		data, err := events.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	for _, data := range [][]byte{
		[]byte(`not json`),
		[]byte(`{"v":99,"topic":"visits","run":"run1"}`),
		encode(events.Event{Topic: "visits", Properties: map[string]any{events.PropVisit: "bad", "exposure": "long"}}),
		encode(events.Event{Topic: "visits", Properties: map[string]any{events.PropVisit: "good", "exposure": 30}}),
		encode(events.Event{Topic: "visits", Kind: events.KindNoMoreData}),
	} {
		if _, err := nc.Request(events.Subject("visits", "run1"), data, 10*time.Second); err != nil {
			t.Fatalf("publishing %s: %v", data, err)
		}
	}
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("the job did not end after its no-more-data")
	}
	if r.err != nil || r.sum == nil {
		t.Fatalf("job: %v", r.err)
	}
	if r.sum.Done != 1 || r.sum.Malformed != 1 || r.sum.Undecodable != 2 {
		t.Errorf("summary: %d done, %d malformed, %d undecodable; want 1, 1 and 2", r.sum.Done, r.sum.Malformed, r.sum.Undecodable)
	}
	var printed strings.Builder
	r.sum.Print(&printed)
	if !strings.Contains(printed.String(), "1 malformed events dropped; 2 undecodable messages dropped") {
		t.Errorf("summary printed %q; want both kinds of drop counted", printed.String())
	}
	var whys []string
	for _, rec := range runtest.Recorded(t, dir, state.EventQuery{}) {
		if rec.Dropped != "" {
			whys = append(whys, rec.Topic+": "+rec.Dropped)
		}
	}
	want := []string{"visits: undecodable: events: malformed event: not a JSON object",
		"visits: undecodable: events: malformed event: unsupported version 99",
		`visits: property exposure: expected number, got string "long"`}
	if len(whys) != len(want) {
		t.Fatalf("recorded drops %q; want %d", whys, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(whys[i], want[i]) {
			t.Errorf("drop %d recorded as %q; want %q...", i, whys[i], want[i])
		}
	}
	if rs := status(t, e, dir); rs.DroppedEvents != 3 {
		t.Errorf("status counts %d dropped events; want 3", rs.DroppedEvents)
	}
}
