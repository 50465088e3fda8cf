package injob

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
)

// TestServeBrokerAndCloseAfter serves a run's broker as a production's
// job script does, checks that its address lands in the job's row, and
// that a pipeline running after two others closes its input (no-more-data
// on its trigger topic, behind the triggers they sent) only once both
// have announced their end.
func TestServeBrokerAndCloseAfter(t *testing.T) {
	set := rundir.Settings{Pipelines: []rundir.StepEntry{{Name: "detect"}, {Name: "assoc"}, {Name: "mops"}}}
	dir := runtest.New(t, "prod1", set, 0).Dir
	jobs := runtest.JobsOf(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	urls := make(chan string, 1)
	served := make(chan error, 1)
	go func() { served <- ServeBroker(ctx, dir, jobs[0].ID, 0, nil, func(u string) { urls <- u }) }()
	var url string
	select {
	case url = <-urls:
	case err := <-served:
		t.Fatalf("ServeBroker: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the broker did not serve within 30s")
	}
	if got := runtest.JobsOf(t, dir)[0]; got.Broker != url || got.Started.IsZero() {
		t.Errorf("the job's row records broker %q, started %v; want %q and the broker's start", got.Broker, got.Started, url)
	}
	b := runtest.DialJob(t, dir, jobs[0].ID, "pipeline.assoc")
	p := &harness.Policy{Name: "assoc"}
	p.Trigger.Topic, p.Trigger.Select = "diasources", map[string]any{"filter": "r"}
	// Slurm's second start of the job.
	stopAfter := followAfter(b, p, "prod1", []string{"detect", "mops"}, jobs[0].ID, 1, slog.New(slog.DiscardHandler))
	defer stopAfter()

	up := runtest.DialJob(t, dir, jobs[0].ID, "")
	pub := func(e events.Event) {
		t.Helper()
		e.RunID = "prod1"
		if err := up.Publish(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	job := jobs[0].ID
	// An end announced by an earlier job of the run does not count.
	pub(events.Event{Topic: events.TopicPipeline, Properties: map[string]any{"pipeline": "mops", "state": "ended", "job": "999"}})
	// Nor one announced by this job's first start, before Slurm requeued it.
	pub(events.Event{Topic: events.TopicPipeline, Properties: map[string]any{"pipeline": "mops", "state": "ended", "job": job}})
	pub(events.Event{Topic: "diasources", Pipeline: "detect", Properties: map[string]any{"visitId": "v1"}})
	pub(events.Event{Topic: events.TopicPipeline, Properties: map[string]any{"pipeline": "detect", "state": "ended", "outcome": "COMPLETED", "job": job, "start": 1}})
	pub(events.Event{Topic: events.TopicPipeline, Properties: map[string]any{"pipeline": "other", "state": "ended", "job": job, "start": 1}})
	sub, err := b.Subscribe(context.Background(), "diasources", "prod1")
	if err != nil {
		t.Fatal(err)
	}
	next := func(wait time.Duration) (events.Event, error) {
		c, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		return sub.Next(c)
	}
	if e, err := next(5 * time.Second); err != nil || e.Properties["visitId"] != "v1" {
		t.Fatalf("first trigger: %+v %v", e, err)
	}
	if e, err := next(time.Second); err == nil {
		t.Fatalf("input closed before mops ended: %+v", e)
	}
	pub(events.Event{Topic: events.TopicPipeline, Properties: map[string]any{"pipeline": "mops", "state": "ended", "job": job, "start": 1}})
	e2, err := next(10 * time.Second)
	if err != nil || e2.Kind != events.KindNoMoreData || e2.Pipeline != "assoc" {
		t.Fatalf("after both ended: %+v %v; want assoc's no-more-data", e2, err)
	}
	// It carries what assoc selects, so a pipeline sharing the topic with
	// another filter is not closed by it.
	if e2.Properties["filter"] != "r" || e2.Properties["after"] != "detect,mops" || e2.Properties["job"] != job || e2.Properties["start"] != 1 {
		t.Errorf("no-more-data properties %v; want filter=r after=detect,mops job=%s start=1", e2.Properties, job)
	}

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeBroker: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ServeBroker did not return once its context ended")
	}
	// The store is free again.
	unlock, err := rundir.LockBroker(rundir.Layout{Dir: dir}, 0)
	if err != nil {
		t.Fatalf("the broker's lock is still held: %v", err)
	}
	unlock()
}
