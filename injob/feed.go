package injob

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/state"
)

// jobBroker is the broker rank 0 of a batch job hands the harness: the
// run's NATS broker (embedded or external), with the visits the state
// file lists as runnable fed first on the trigger topic, and every event
// received from or published to NATS recorded in the state file (but for
// heartbeats). Slices never see it: only the Pipeline talks to brokers.
type jobBroker struct {
	events.Broker // the NATS broker
	st            *state.Store
	job           string
	start         int // the job's start (Slurm's restart count)
	trigger       string
	// selects tells the trigger events meant for this pipeline (its
	// events.trigger.select; nil: all): only a no-more-data it selects
	// closes the run's input, as only such a one ends the Pipeline.
	selects func(events.Event) bool
	feed    []harness.Visit
	// listen: after the feed, read trigger events from NATS until a
	// no-more-data; else the feed ends the run.
	listen bool
	log    *slog.Logger
	now    func() time.Time
	// fed is the ID of the visit the feed handed out last; the recorder
	// admits it without a query (the Pipeline admits each trigger right
	// after receiving it, on the same goroutine).
	fed atomic.Pointer[string]
}

// Publish sends e through NATS and records it as sent.
func (b *jobBroker) Publish(ctx context.Context, e events.Event) error {
	e = e.Stamped()
	if err := b.Broker.Publish(ctx, e); err != nil {
		return err
	}
	if e.Topic != events.TopicHeartbeat {
		b.record("out", e)
	}
	return nil
}

// Subscribe subscribes through NATS; on the trigger topic the state
// file's feed comes first.
func (b *jobBroker) Subscribe(ctx context.Context, topic, runID string) (events.Subscription, error) {
	sub, err := b.Broker.Subscribe(ctx, topic, runID)
	if err != nil {
		return nil, err
	}
	rs := &recordingSub{Subscription: sub, b: b, trigger: topic == b.trigger}
	if topic != b.trigger {
		return rs, nil
	}
	return &feedSub{recordingSub: rs, visits: b.feed, topic: topic, runID: runID, listen: b.listen, fed: &b.fed}, nil
}

// record keeps e in the state file; a failure is logged, never fatal: the
// record is for people, the visits' states are what matter.
func (b *jobBroker) record(dir string, e events.Event) {
	at := b.now()
	t := e.Time
	if t.IsZero() {
		t = at
	}
	recordEvent(b.st, b.log, state.EventRecord{At: at, Dir: dir, Topic: e.Topic, Kind: string(e.Kind), Pipeline: e.Pipeline,
		Sender: e.Sender, Job: b.job, Time: t, Props: e.Properties})
}

// recordEvent keeps r in the state file, logging a failure.
func recordEvent(st *state.Store, log *slog.Logger, r state.EventRecord) {
	if err := st.RecordEvent(r); err != nil {
		log.Warn("could not record an event in the state file", "topic", r.Topic, "err", err)
	}
}

// recordDrops keeps in the state file the messages sub dropped as
// undecodable since the last call, each with why.
func (b *jobBroker) recordDrops(sub events.Subscription) {
	dr, ok := sub.(events.DropReporter)
	if !ok {
		return
	}
	for _, d := range dr.TakeDrops() {
		why := "undecodable"
		if d.Err != nil {
			why += ": " + d.Err.Error()
		}
		recordEvent(b.st, b.log, state.EventRecord{At: b.now(), Dir: state.DirIn, Topic: d.Topic, Job: b.job, Dropped: why})
	}
}

// recordingSub records every event it returns; a no-more-data on the
// trigger topic, selected for this pipeline, also closes the run's input
// in the state file, so that a later job of the run does not wait for
// trigger events.
type recordingSub struct {
	events.Subscription
	b       *jobBroker
	trigger bool
}

func (s *recordingSub) Next(ctx context.Context) (events.Event, error) {
	e, err := s.Subscription.Next(ctx)
	s.b.recordDrops(s.Subscription)
	if err != nil {
		return e, err
	}
	s.b.record("in", e)
	for s.trigger && e.Kind == events.KindNoMoreData && staleAfter(e, s.b.job, s.b.start) {
		// The after-rule's end of an earlier job, which stopped before
		// reading it: this job's pipelines send their own.
		s.b.log.Info("ignored the no-more-data an earlier job's after-rule sent", "job", e.Properties["job"])
		if e, err = s.Subscription.Next(ctx); err != nil {
			return e, err
		}
		s.b.record("in", e)
	}
	if s.trigger && e.Kind == events.KindNoMoreData && (s.b.selects == nil || s.b.selects(e)) {
		why := "no-more-data"
		if e.Sender != "" {
			why += " from " + e.Sender
		}
		if after, _ := e.Properties["after"].(string); after != "" {
			why += " once " + after + " ended"
		}
		if err := s.b.st.CloseInput(s.b.now(), why); err != nil {
			s.b.log.Warn("could not record the end of the run's input", "err", err)
		}
	}
	return e, nil
}

// Close records the drops Next has not recorded yet, and closes the
// subscription.
func (s *recordingSub) Close() error {
	s.b.recordDrops(s.Subscription)
	return s.Subscription.Close()
}

// feedSub is the trigger subscription of a batch job: the visits of the
// state file first, then (listening) NATS's trigger events, or (not
// listening) one no-more-data.
type feedSub struct {
	*recordingSub
	visits       []harness.Visit
	topic, runID string
	listen       bool
	fed          *atomic.Pointer[string]

	mu   sync.Mutex
	next int
}

func (s *feedSub) Next(ctx context.Context) (events.Event, error) {
	if err := ctx.Err(); err != nil {
		return events.Event{}, err
	}
	s.mu.Lock()
	i := s.next
	if i <= len(s.visits) {
		s.next++
	}
	s.mu.Unlock()
	switch {
	case i < len(s.visits):
		v := s.visits[i]
		s.visits[i] = harness.Visit{} // let it go: a feed may hold a million
		s.fed.Store(&v.ID)
		return v.Event(s.topic, s.runID), nil
	case !s.listen && i == len(s.visits):
		return events.Event{Topic: s.topic, RunID: s.runID, Kind: events.KindNoMoreData}, nil
	case !s.listen:
		return events.Event{}, events.ErrClosed
	}
	s.fed.Store(nil) // from the broker: the state file decides
	return s.recordingSub.Next(ctx)
}

var (
	_ events.Broker       = (*jobBroker)(nil)
	_ events.Subscription = (*feedSub)(nil)
)

// staleAfter reports whether e is a no-more-data the after-rule
// (InJob.closeAfter) sent in another job than job, or in another start
// of it.
func staleAfter(e events.Event, job string, start int) bool {
	sent, _ := e.Properties["job"].(string)
	_, after := e.Properties["after"]
	return after && sent != "" && !sameStart(e, job, start)
}

// sameStart reports whether e was sent by this start of job: its job and
// start properties (a missing start is a first start, 0) are this one's.
// A requeued job starts again under its ID, so the job alone does not
// tell an earlier start's announcements from this one's.
func sameStart(e events.Event, job string, start int) bool {
	sent, _ := e.Properties["job"].(string)
	n := 0
	switch v := e.Properties["start"].(type) {
	case float64: // from JSON decoded without UseNumber
		n = int(v)
	case int:
		n = v
	}
	return sent == job && n == start
}
