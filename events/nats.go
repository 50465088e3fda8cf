package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSConfig says how to reach a NATS server or cluster with JetStream and
// where events are kept there. Only URLs is required.
//
// At most one of CredentialsFile, TokenFile and TokenEnv may be set. The
// token or credentials are never logged and never appear in an error.
type NATSConfig struct {
	URLs            []string // nats://host:port of one server or several of a cluster
	CredentialsFile string   // a NATS .creds file (user JWT and NKey seed)
	TokenFile       string   // a file holding the token (surrounding white space is trimmed)
	TokenEnv        string   // the name of an environment variable holding the token
	Name            string   // the client's name, shown by the server's monitoring

	// Subscriber names this process's subscriptions, to make them durable:
	// with it, Subscribe(topic, run) continues where the last subscription
	// with the same Subscriber, topic and run left off (say a pipeline
	// resumed by a new job), so events it already received are not
	// delivered again, and no more than one event may be (the one being
	// received when it stopped). Without it, every subscription is new,
	// starts at the first stored event of its run and topic, and is
	// forgotten when closed. Two open subscriptions with the same
	// Subscriber, topic and run share the events between them; a broker
	// refuses to open a second one itself.
	Subscriber string

	Stream string        // the JetStream stream, default "DPSBATCH"; it captures SubjectPrefix.>
	MaxAge time.Duration // how long the stream keeps an event, default 7 days
	// MaxBytes is the most the stream keeps, default DefaultMaxBytes. At
	// the limit a new event is refused (Publish fails with ErrStreamFull):
	// no stored event, read or not, is dropped to make room. Only events
	// older than MaxAge go by themselves.
	MaxBytes int64
	Replicas int // copies of the stream in a cluster, default 1

	// AckWait is how long the server waits, after handing an event to a
	// subscription that stopped before returning it, to hand it out again;
	// default 30 s. Only a crash or a cancelled Next leaves such an event.
	AckWait time.Duration

	Logger         *slog.Logger  // connection changes, dropped messages; default slog.Default()
	ConnectTimeout time.Duration // per server, default 5 s
}

// Defaults of NATSConfig.
const (
	DefaultStream   = "DPSBATCH"
	DefaultMaxAge   = 7 * 24 * time.Hour
	DefaultMaxBytes = 256 << 20
)

// ErrStreamFull is matched by the error of Publish when the stream holds
// MaxBytes of events already: the event is not stored.
var ErrStreamFull = errors.New("events: the event stream is full")

// fetchWait is how long one pull request waits for an event on the server.
const fetchWait = 10 * time.Second

// NATS is a broker over NATS JetStream. Every event of a run on a topic goes
// to its own subject (see Subject), which a JetStream stream with file
// storage keeps, so an event published before anyone subscribes is
// delivered when someone does, even across restarts of the server.
// Publish returns once the stream has stored the event. A subscription is
// a JetStream pull consumer of one subject; each event is returned by Next
// once and acknowledged when it is returned. See NATSConfig.Subscriber for
// durable subscriptions.
type NATS struct {
	nc         *nats.Conn
	js         jetstream.JetStream
	stream     string
	subscriber string
	ackWait    time.Duration
	maxAge     time.Duration
	log        *slog.Logger
	secrets    []string

	mu     sync.Mutex
	closed bool
	subs   map[*natsSub]bool
	names  map[string]bool // durable consumers in use by open subscriptions
}

// DialNATS connects to the servers of c.URLs, and finds the stream c.Stream
// or creates it with the limits of c. A stream that exists is used as it is
// (a site's administrator may have set it up). ctx bounds the whole dial.
func DialNATS(ctx context.Context, c NATSConfig) (*NATS, error) {
	if len(c.URLs) == 0 {
		return nil, errors.New("events: NATS: no server URLs")
	}
	n := &NATS{stream: c.Stream, subscriber: c.Subscriber, ackWait: c.AckWait, maxAge: or(c.MaxAge, DefaultMaxAge), log: c.Logger,
		subs: map[*natsSub]bool{}, names: map[string]bool{}}
	if n.stream == "" {
		n.stream = DefaultStream
	}
	if n.ackWait <= 0 {
		n.ackWait = 30 * time.Second
	}
	if n.log == nil {
		n.log = slog.Default()
	}
	timeout := c.ConnectTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	var redacted []string
	for _, u := range c.URLs {
		p, err := url.Parse(u)
		if err != nil || p.User == nil {
			redacted = append(redacted, u)
			continue
		}
		// nats://token@host or nats://user:password@host: both are secrets.
		if pw, ok := p.User.Password(); ok {
			n.secrets = append(n.secrets, pw)
		} else {
			n.secrets = append(n.secrets, p.User.Username())
		}
		redacted = append(redacted, p.Redacted())
	}
	opts := []nats.Option{nats.Name(c.Name), nats.Timeout(timeout),
		nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				n.log.Warn("events: disconnected from NATS", "err", n.redact(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			n.log.Info("events: reconnected to NATS", "url", n.redactURL(nc.ConnectedUrl()))
		}),
	}
	set := 0
	for _, s := range []string{c.CredentialsFile, c.TokenFile, c.TokenEnv} {
		if s != "" {
			set++
		}
	}
	if set > 1 {
		return nil, errors.New("events: NATS: set at most one of a credentials file, a token file and a token variable")
	}
	switch {
	case c.CredentialsFile != "":
		if _, err := os.Stat(c.CredentialsFile); err != nil {
			return nil, fmt.Errorf("events: NATS credentials file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(c.CredentialsFile))
	case c.TokenFile != "":
		data, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("events: NATS token file: %w", err)
		}
		tok := strings.TrimSpace(string(data))
		if tok == "" {
			return nil, fmt.Errorf("events: NATS token file %s is empty", c.TokenFile)
		}
		n.secrets = append(n.secrets, tok)
		opts = append(opts, nats.Token(tok))
	case c.TokenEnv != "":
		tok := strings.TrimSpace(os.Getenv(c.TokenEnv))
		if tok == "" {
			return nil, fmt.Errorf("events: NATS token variable %s is not set or empty", c.TokenEnv)
		}
		n.secrets = append(n.secrets, tok)
		opts = append(opts, nats.Token(tok))
	}

	// nats.Connect takes no context: run it aside and give up on ctx.
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(strings.Join(c.URLs, ","), opts...)
		done <- result{nc, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, n.redact(fmt.Errorf("events: connect to NATS at %s: %w", strings.Join(redacted, ","), r.err))
	}
	n.nc = r.nc
	js, err := jetstream.New(n.nc)
	if err != nil {
		n.nc.Close()
		return nil, n.redact(fmt.Errorf("events: JetStream: %w", err))
	}
	n.js = js
	if _, err := js.Stream(ctx, n.stream); errors.Is(err, jetstream.ErrStreamNotFound) {
		cfg := jetstream.StreamConfig{
			Name:        n.stream,
			Description: "dpsbatch events, by run and topic",
			Subjects:    []string{SubjectPrefix + ".>"},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardNew,
			MaxAge:      n.maxAge,
			MaxBytes:    or(c.MaxBytes, DefaultMaxBytes),
			Replicas:    or(c.Replicas, 1),
		}
		_, err = js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			err = nil // someone else created it meanwhile
		}
		if err != nil {
			n.nc.Close()
			return nil, n.redact(fmt.Errorf("events: create stream %s: %w", n.stream, err))
		}
	} else if err != nil {
		n.nc.Close()
		return nil, n.redact(fmt.Errorf("events: stream %s: %w", n.stream, err))
	}
	n.log.Debug("events: connected to NATS", "url", n.redactURL(n.nc.ConnectedUrl()), "stream", n.stream)
	return n, nil
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Publish stores e in the stream and returns once the server has
// acknowledged it. Time and Sender are filled when empty. An event Encode
// refuses is refused here, with nothing sent.
func (n *NATS) Publish(ctx context.Context, e Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if n.isClosed() {
		return ErrClosed
	}
	data, err := Encode(e.Stamped())
	if err != nil {
		return err
	}
	if _, err := n.js.Publish(ctx, Subject(e.Topic, e.RunID), data); err != nil {
		if n.isClosed() || errors.Is(err, nats.ErrConnectionClosed) {
			return ErrClosed
		}
		if full(err) {
			err = fmt.Errorf("%w (stream %s): %w", ErrStreamFull, n.stream, err)
		}
		return n.redact(fmt.Errorf("events: publish on %q: %w", e.Topic, err))
	}
	return nil
}

// full reports whether err is the server refusing an event because the
// stream holds its MaxBytes (with discard new).
func full(err error) bool {
	var ae *jetstream.APIError
	return errors.As(err, &ae) && strings.Contains(ae.Description, "maximum bytes exceeded")
}

// Subscribe opens a pull consumer of the run's subject for topic, from the
// first stored event (or, for a durable subscription, from where the last
// one left off).
func (n *NATS) Subscribe(ctx context.Context, topic, runID string) (Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &natsSub{n: n, topic: topic, runID: runID, subject: Subject(topic, runID), done: make(chan struct{})}
	if n.subscriber != "" {
		s.durable = true
		s.name = consumerName(n.stream, s.subject, n.subscriber)
	} else {
		var b [12]byte
		rand.Read(b[:])
		s.name = "dpsbatch_eph_" + hex.EncodeToString(b[:])
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, ErrClosed
	}
	if s.durable && n.names[s.name] {
		n.mu.Unlock()
		return nil, fmt.Errorf("events: subscriber %q already has a subscription to topic %q of run %q", n.subscriber, topic, runID)
	}
	n.names[s.name] = true
	n.subs[s] = true
	n.mu.Unlock()
	if err := s.ensureConsumer(ctx); err != nil {
		s.Close()
		if n.isClosed() {
			return nil, ErrClosed
		}
		return nil, err
	}
	return s, nil
}

// Close ends every subscription of the broker (ephemeral consumers are
// deleted, durable ones kept), sends what is still buffered, such as
// acknowledgements, and closes the connection. Later calls fail with
// ErrClosed; Close itself may be called again.
func (n *NATS) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	subs := make([]*natsSub, 0, len(n.subs))
	for s := range n.subs {
		subs = append(subs, s)
	}
	n.mu.Unlock()
	for _, s := range subs {
		s.close()
	}
	var err error
	if n.nc.IsConnected() {
		err = n.nc.FlushTimeout(2 * time.Second)
	}
	n.nc.Close()
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return n.redact(fmt.Errorf("events: close: %w", err))
	}
	return nil
}

func (n *NATS) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// redact hides the token or password in err's message, keeping err in the
// chain for errors.Is.
func (n *NATS) redact(err error) error {
	if err == nil {
		return nil
	}
	msg := redactString(err.Error(), n.secrets...)
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

// redactURL drops the user information (a token, or a user and password)
// from a server URL.
func (n *NATS) redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return redactString(u, n.secrets...)
	}
	p.User = nil
	return p.String()
}

// redactString replaces every secret in s.
func redactString(s string, secrets ...string) string {
	for _, x := range secrets {
		if x != "" {
			s = strings.ReplaceAll(s, x, "[REDACTED]")
		}
	}
	return s
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// natsSub is one pull consumer. Next asks the server for one event at a
// time, so none waits unacknowledged in this process while the caller is
// busy (where the server would hand it out again after AckWait).
type natsSub struct {
	n       *NATS
	topic   string
	runID   string
	subject string
	name    string // consumer name
	durable bool

	done chan struct{} // closed by close

	// Used by Next's goroutine only.
	cons    jetstream.Consumer
	batch   jetstream.MessageBatch // an outstanding pull, kept across a cancelled Next
	lastSeq uint64                 // stream sequence of the last event returned

	mu      sync.Mutex
	closed  bool
	skipped int
	dropped int
	drops   []Drop // since the last TakeDrops, at most maxDrops
}

// ensureConsumer looks the consumer up, or creates it: from the start of
// the subject, or after the last event this subscription returned when it
// is created again (an ephemeral consumer does not survive a restart of
// the server, nor a long idle time). A consumer that has handed out
// events nobody acknowledged is created again from the first of them
// (restartConsumer).
func (s *natsSub) ensureConsumer(ctx context.Context) error {
	n := s.n
	c, err := n.js.Consumer(ctx, n.stream, s.name)
	switch {
	case err == nil && c.CachedInfo().NumAckPending == 0:
		s.cons = c
		return nil
	case err == nil:
		err = s.restartConsumer(ctx, c.CachedInfo())
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		err = s.createConsumer(ctx, s.lastSeq+1)
	}
	if err != nil {
		return n.redact(fmt.Errorf("events: subscribe to %q: %w", s.topic, err))
	}
	return nil
}

// restartConsumer replaces a consumer whose handed-out events wait for an
// acknowledgement that will not come: Next acknowledges what it takes at
// once, so those were handed to a pull that no Next took them from (one
// left outstanding by a Next whose wait was cut short, in this process or
// in the predecessor of a durable subscription, which stopped). The
// server would hand them out again only after AckWait, behind the events
// published since; the new consumer starts at the first of them instead.
// One subscription at a time uses a consumer (Subscribe), so none is
// still on its way to a live subscriber.
func (s *natsSub) restartConsumer(ctx context.Context, old *jetstream.ConsumerInfo) error {
	s.n.log.Info("events: handing out again what a pull that nobody read received", "topic", s.topic, "run", s.runID,
		"events", old.NumAckPending)
	if err := s.n.js.DeleteConsumer(ctx, s.n.stream, s.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return err
	}
	return s.createConsumer(ctx, max(old.AckFloor.Stream, s.lastSeq)+1)
}

// createConsumer creates the consumer, delivering from the stream
// sequence start on (1: from the start of the subject).
func (s *natsSub) createConsumer(ctx context.Context, start uint64) error {
	n := s.n
	cfg := jetstream.ConsumerConfig{
		Name:          s.name,
		FilterSubject: s.subject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       n.ackWait,
		MaxAckPending: 1000,
	}
	if start > 1 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = start
	}
	if s.durable {
		cfg.Durable = s.name
		cfg.Description = fmt.Sprintf("dpsbatch subscriber %s", n.subscriber)
		cfg.InactiveThreshold = n.maxAge // gone when its events are
	} else {
		cfg.InactiveThreshold = time.Hour
	}
	c, err := n.js.CreateOrUpdateConsumer(ctx, n.stream, cfg)
	if err != nil {
		return err
	}
	s.cons = c
	return nil
}

// Next returns the next event of the run on the topic. Messages that do not
// decode are logged, counted (Dropped), and never handed out again;
// messages whose event names another run are counted as Skipped.
func (s *natsSub) Next(ctx context.Context) (Event, error) {
	for {
		if s.isClosed() {
			return Event{}, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return Event{}, err
		}
		if s.batch == nil {
			if s.cons == nil {
				if err := s.ensureConsumer(ctx); err != nil {
					if err := s.pause(ctx, err); err != nil {
						return Event{}, err
					}
					continue
				}
			}
			b, err := s.cons.Fetch(1, jetstream.FetchMaxWait(fetchWait))
			if err != nil {
				if err := s.pause(ctx, err); err != nil {
					return Event{}, err
				}
				continue
			}
			s.batch = b
		}
		select {
		case m, ok := <-s.batch.Messages():
			if !ok {
				err := s.batch.Error()
				s.batch = nil
				if err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
					// The consumer may be gone (deleted, idle too
					// long, the server restarted): look it up again.
					s.cons = nil
					if err := s.pause(ctx, err); err != nil {
						return Event{}, err
					}
				}
				continue
			}
			if e, ok := s.take(m); ok {
				return e, nil
			}
		case <-ctx.Done():
			return Event{}, ctx.Err()
		case <-s.done:
			return Event{}, ErrClosed
		}
	}
}

// take decodes and acknowledges m, and says whether it is an event to
// return.
func (s *natsSub) take(m jetstream.Msg) (Event, bool) {
	meta, err := m.Metadata()
	if err != nil {
		s.drop(m, 0, err)
		return Event{}, false
	}
	seq := meta.Sequence.Stream
	if seq <= s.lastSeq {
		m.Ack() // handed out again after AckWait, but returned already
		return Event{}, false
	}
	s.lastSeq = seq
	e, err := Decode(m.Data())
	if err == nil && e.Topic != s.topic {
		err = fmt.Errorf("%w: topic %q on the subject of topic %q", ErrMalformed, e.Topic, s.topic)
	}
	if err != nil {
		s.drop(m, seq, err)
		return Event{}, false
	}
	s.ack(m)
	if e.RunID != s.runID {
		s.mu.Lock()
		s.skipped++
		s.mu.Unlock()
		return Event{}, false
	}
	return e, true
}

// ack acknowledges m. A durable subscription waits for the server to
// confirm it, so an event Next returned is never among those its consumer
// holds unacknowledged when a successor takes the consumer over
// (restartConsumer hands those out again); without a confirmation the
// server hands m out again after AckWait, and this process passes over
// it (lastSeq). An ephemeral consumer has no successor: its
// acknowledgements are not waited for (a round trip per event).
func (s *natsSub) ack(m jetstream.Msg) {
	if !s.durable {
		m.Ack()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), ackConfirmWait)
	defer cancel()
	if err := m.DoubleAck(ctx); err != nil {
		s.n.log.Debug("events: an acknowledgement was not confirmed", "topic", s.topic, "err", s.n.redact(err))
	}
}

// ackConfirmWait is how long ack waits for the server's confirmation.
const ackConfirmWait = 5 * time.Second

// drop counts and logs a message that is not an event, and tells the
// server never to deliver it again.
func (s *natsSub) drop(m jetstream.Msg, seq uint64, err error) {
	s.mu.Lock()
	s.dropped++
	if len(s.drops) == maxDrops {
		s.drops = s.drops[1:]
	}
	s.drops = append(s.drops, Drop{Topic: s.topic, Seq: seq, Err: err})
	s.mu.Unlock()
	s.n.log.Warn("events: dropped a malformed message", "topic", s.topic, "run", s.runID, "seq", seq, "err", err)
	m.Term()
}

// pause waits a little after an error from the server, so a lost
// connection is not retried in a tight loop. It returns ErrClosed once the
// subscription or the broker is closed, or ctx's error.
func (s *natsSub) pause(ctx context.Context, err error) error {
	if s.isClosed() || s.n.nc.IsClosed() {
		return ErrClosed
	}
	s.n.log.Debug("events: waiting for NATS", "topic", s.topic, "err", s.n.redact(err))
	t := time.NewTimer(250 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return ErrClosed
	}
}

func (s *natsSub) Skipped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.skipped
}

func (s *natsSub) Dropped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// TakeDrops returns the messages dropped since the last call.
func (s *natsSub) TakeDrops() []Drop {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.drops
	s.drops = nil
	return d
}

func (s *natsSub) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close ends the subscription. An ephemeral consumer is deleted; a durable
// one stays for the next subscription of the same Subscriber.
func (s *natsSub) Close() error {
	s.close()
	return nil
}

func (s *natsSub) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	n := s.n
	n.mu.Lock()
	delete(n.subs, s)
	delete(n.names, s.name)
	n.mu.Unlock()
	// Without a connection the server removes the consumer itself, once
	// it has been idle for its InactiveThreshold.
	if !s.durable && n.nc.IsConnected() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := n.js.DeleteConsumer(ctx, n.stream, s.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			n.log.Debug("events: could not delete a consumer; the server will", "err", n.redact(err))
		}
	}
}

var (
	_ Broker       = (*NATS)(nil)
	_ Subscription = (*natsSub)(nil)
	_ DropReporter = (*natsSub)(nil)
	_ io.Closer    = (*NATS)(nil)
)
