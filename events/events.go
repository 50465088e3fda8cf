// Package events owns the events that drive pipelines: the Event type
// (topic, run ID, kind, properties, and who sent it when), the Broker
// interface that moves them between producers and the Pipeline, their wire
// encoding, and the brokers themselves. This file holds the types;
// memory.go holds the in-process broker used by `dpsbatch local` and by
// unit tests; wire.go the JSON encoding; nats.go the broker over NATS
// JetStream (an external server or cluster, or the one embedded.go starts
// in-process, which is the default for batch runs).
//
// Two kinds are reserved: no-more-data, published on a pipeline's trigger
// topic, tells the Pipeline to finish what is in flight and exit cleanly;
// shutdown, published on the trigger topic or on TopicControl, tells it to
// stop at the next visit boundary. Every other event is data.
//
// The package imports nothing of the project's.
package events

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Kind says what an event means to the Pipeline.
type Kind string

// The kinds of event.
const (
	KindData       Kind = "data"
	KindNoMoreData Kind = "no-more-data"
	KindShutdown   Kind = "shutdown"
)

// TopicControl is the topic every Pipeline listens on for shutdown, besides
// its trigger topic.
const TopicControl = "dpsbatch.control"

// TopicHeartbeat is where a running Pipeline publishes its heartbeat: a
// data event every few seconds whose properties say which visit is in
// flight ("visit", "" between visits) and how many visits it has ended
// ("visits").
const TopicHeartbeat = "dpsbatch.heartbeat"

// TopicPipeline is where the pipelines of a batch run say when they start
// and end: data events with properties "pipeline", "state" ("started" or
// "ended") and, when ended, "outcome". A pipeline of a production that
// runs after others closes its input once they have all ended.
const TopicPipeline = "dpsbatch.pipeline"

// PropVisit is the property of a trigger event that names its visit.
const PropVisit = "visitId"

// ErrClosed is returned by operations on a closed broker or subscription.
var ErrClosed = errors.New("events: closed")

// Event is one message on a topic. Properties hold plain values: strings,
// numbers, booleans and lists or maps of them (after a trip through a
// broker that encodes events: string, bool, int, float64, nil, []any and
// map[string]any; see Decode).
//
// Publish fills Time (now) and Sender (this host's name) when they are
// empty, on every broker; Pipeline is the publisher's to set (the name of
// the pipeline that sent it, empty for external producers).
type Event struct {
	Topic      string
	RunID      string
	Kind       Kind // empty means KindData
	Properties map[string]any
	Pipeline   string    // the sending pipeline, if a pipeline sent it
	Time       time.Time // when it was published
	Sender     string    // the host it was published from
}

// now and hostname are what Publish stamps events with; tests replace now.
var (
	now      = time.Now
	hostname = sync.OnceValue(func() string {
		h, err := os.Hostname()
		if err != nil {
			return ""
		}
		return h
	})
)

// Stamped is e with the fields Publish fills when they are empty: the
// time and the sending host. A wrapper that records what it publishes
// stamps first, so that the record and the wire agree.
func (e Event) Stamped() Event {
	if e.Time.IsZero() {
		e.Time = now()
	}
	if e.Sender == "" {
		e.Sender = hostname()
	}
	return e
}

// IsData reports whether the event carries data (is not a control event).
func (e Event) IsData() bool { return e.Kind == "" || e.Kind == KindData }

// Visit returns the event's visit ID property as a string. Only a string
// or a number names a visit: a visitId of another type (an object, a
// list, a bool) is no visit ID, and ok is false, as it is for a missing
// or empty one.
func (e Event) Visit() (string, bool) {
	var s string
	switch v := e.Properties[PropVisit].(type) {
	case string:
		s = v
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
		s = fmt.Sprint(v)
	default:
		return "", false
	}
	return s, s != ""
}

// Broker moves events between producers and subscribers. Implementations
// are safe for concurrent use.
type Broker interface {
	// Publish sends e on e.Topic. It does not wait for subscribers. It
	// fills e.Time and e.Sender when they are empty.
	Publish(ctx context.Context, e Event) error
	// Subscribe receives the events of one run on one topic; events of
	// other runs are skipped. Events published on the topic before anyone
	// subscribed are delivered too; how far back depends on the broker:
	// Memory gives the backlog to the first subscription of the run,
	// NATS gives every subscription every event the stream still holds
	// (a durable one, those its predecessor did not return from Next).
	Subscribe(ctx context.Context, topic, runID string) (Subscription, error)
	// Close ends every subscription; later calls fail with ErrClosed.
	Close() error
}

// Subscription is one subscriber's stream of events. It is used by one
// goroutine at a time.
type Subscription interface {
	// Next blocks until the next event, ctx is done or the subscription or
	// its broker is closed (ErrClosed).
	Next(ctx context.Context) (Event, error)
	// Skipped counts the events of other runs that were dropped.
	Skipped() int
	// Dropped counts the messages that were dropped because they could
	// not be decoded as an event (see Decode). They are logged by the
	// broker, never returned by Next.
	Dropped() int
	// Close ends the subscription; Next then fails with ErrClosed. It may
	// be called from any goroutine, more than once.
	Close() error
}

// Drop is a message a subscription dropped because it could not be
// decoded as an event (see Subscription.Dropped).
type Drop struct {
	Topic string // the subscription's topic
	Seq   uint64 // the message's sequence in the broker's stream; 0 if unknown
	Err   error  // why it could not be decoded (wraps ErrMalformed when Decode refused it)
}

// DropReporter is an optional extra of a Subscription whose broker
// decodes messages (NATS; Memory passes Go values and drops nothing): it
// says why each message it dropped was dropped, for a caller that keeps a
// record of them. TakeDrops returns the drops since its last call, at most
// the last maxDrops of them (Dropped counts them all). It may be called
// from any goroutine.
type DropReporter interface {
	TakeDrops() []Drop
}

// maxDrops is how many drops a DropReporter keeps between two TakeDrops.
const maxDrops = 100
