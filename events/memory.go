package events

import (
	"context"
	"sync"
)

// Memory is an in-process broker. Events published on a topic while no
// subscription of their run exists wait in a backlog and go to the first
// such subscription; after that every matching subscription receives every
// event. Publish never blocks: each subscription queues without bound, so a
// slow subscriber costs memory, not progress.
//
// Events travel as Go values: nothing is encoded, so Dropped is always 0
// and an event of an unknown kind reaches the subscriber (whose business it
// is to drop it). Properties maps are shared with the publisher, who must
// not change them after Publish.
type Memory struct {
	mu      sync.Mutex
	closed  bool
	subs    map[string][]*memSub // by topic
	backlog map[string][]Event   // by topic
}

// NewMemory returns an empty in-process broker.
func NewMemory() *Memory {
	return &Memory{subs: map[string][]*memSub{}, backlog: map[string][]Event{}}
}

func (m *Memory) Publish(ctx context.Context, e Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e = e.Stamped()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	delivered := false
	for _, s := range m.subs[e.Topic] {
		if s.deliver(e) {
			delivered = true
		}
	}
	if !delivered {
		m.backlog[e.Topic] = append(m.backlog[e.Topic], e)
	}
	return nil
}

func (m *Memory) Subscribe(ctx context.Context, topic, runID string) (Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	s := &memSub{m: m, topic: topic, runID: runID, wake: make(chan struct{}, 1)}
	var keep []Event
	for _, e := range m.backlog[topic] {
		if !s.deliver(e) {
			keep = append(keep, e)
		}
	}
	s.skipped = 0 // events of other runs stay in the backlog for them
	if len(keep) == 0 {
		delete(m.backlog, topic)
	} else {
		m.backlog[topic] = keep
	}
	m.subs[topic] = append(m.subs[topic], s)
	return s, nil
}

func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	for _, subs := range m.subs {
		for _, s := range subs {
			s.close()
		}
	}
	return nil
}

func (m *Memory) remove(s *memSub) {
	m.mu.Lock()
	defer m.mu.Unlock()
	subs := m.subs[s.topic]
	for i, x := range subs {
		if x == s {
			m.subs[s.topic] = append(subs[:i:i], subs[i+1:]...)
			break
		}
	}
}

type memSub struct {
	m     *Memory
	topic string
	runID string
	wake  chan struct{} // signalled when queue grows or the sub closes

	mu      sync.Mutex
	queue   []Event
	head    int
	closed  bool
	skipped int
}

// deliver queues e if it belongs to this subscription's run.
func (s *memSub) deliver(e Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if e.RunID != s.runID {
		s.skipped++
		return false
	}
	s.queue = append(s.queue, e)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

func (s *memSub) Next(ctx context.Context) (Event, error) {
	for {
		s.mu.Lock()
		if s.head < len(s.queue) {
			e := s.queue[s.head]
			s.queue[s.head] = Event{}
			s.head++
			// Move what is left to the front once half the array is
			// spent, so a queue that never empties does not grow.
			if s.head == len(s.queue) || s.head >= 32 && s.head*2 >= len(s.queue) {
				n := copy(s.queue, s.queue[s.head:])
				clear(s.queue[n:])
				s.queue, s.head = s.queue[:n], 0
			}
			s.mu.Unlock()
			return e, nil
		}
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return Event{}, ErrClosed
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

func (s *memSub) Skipped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.skipped
}

func (s *memSub) Dropped() int { return 0 }

func (s *memSub) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.wake)
	}
}

func (s *memSub) Close() error {
	s.m.remove(s)
	s.close()
	return nil
}

var _ Broker = (*Memory)(nil)
