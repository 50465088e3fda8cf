package state

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// EventRecord is one event the run received (Dir "in") or sent (Dir
// "out"), as recorded. Each is one row of the file, kept for the life of
// the run: nothing prunes them.
type EventRecord struct {
	ID       int64     `json:"id"`       // given by RecordEvent, increasing: Events' After
	At       time.Time `json:"at"`       // when it was recorded (RecordEvent: zero means now)
	Dir      string    `json:"dir"`      // "in" or "out"
	Topic    string    `json:"topic"`    // required
	Kind     string    `json:"kind"`     // "" for data, or the event's kind (no-more-data, shutdown)
	Pipeline string    `json:"pipeline"` // the pipeline that sent it, if one did
	Sender   string    `json:"sender"`   // the host it was published from
	Job      string    `json:"job"`      // the job that recorded it
	Time     time.Time `json:"time"`     // the event's own time, as its sender stamped it; zero if none
	// Props are the event's properties. They are stored as a JSON object
	// and read back as JSON decodes them: integers as int, other numbers
	// as float64, objects as map[string]any, arrays as []any. Never nil
	// when read.
	Props map[string]any `json:"props"`
	// Dropped says why the run dropped the event: it did not decode as
	// an event (Topic is then the subscription's, and Props empty), or
	// it was malformed for its receiver. "" for an event it took.
	Dropped string `json:"dropped"`
}

// The directions of an event.
const (
	DirIn  = "in"  // the run received it
	DirOut = "out" // the run sent it
)

// RecordEvent adds r to the run's events, in its own transaction; r.ID is
// ignored (the file gives the next). The job's Pipeline calls it for each
// event it receives or publishes; the relay commands (dpsbatch stop,
// finish, event send) do not, since only rank 0 writes while a job runs:
// what they send is recorded by the job that receives it. Dir must be "in" or "out" and Topic not empty,
// and Props must marshal to JSON (nil is stored as {}); otherwise it is an
// error wrapping conf.ErrInvalid and nothing is written. A zero At is the
// time of the call.
func (s *Store) RecordEvent(r EventRecord) error {
	if r.Dir != DirIn && r.Dir != DirOut {
		return fmt.Errorf("state: %s: recording an event: direction %q: want %q or %q: %w", s.path, r.Dir, DirIn, DirOut, conf.ErrInvalid)
	}
	if r.Topic == "" {
		return fmt.Errorf("state: %s: recording an event: empty topic: %w", s.path, conf.ErrInvalid)
	}
	props := []byte("{}")
	if r.Props != nil {
		var err error
		if props, err = json.Marshal(r.Props); err != nil {
			return fmt.Errorf("state: %s: recording an event on %s: properties: %v: %w", s.path, r.Topic, err, conf.ErrInvalid)
		}
	}
	if r.At.IsZero() {
		r.At = time.Now()
	}
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO events (at, dir, topic, props, kind, pipeline, sender, event_time, job, dropped)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.At.UnixNano(), r.Dir, r.Topic, string(props), r.Kind, r.Pipeline, r.Sender, nanos(r.Time), r.Job, r.Dropped)
		return err
	})
	if err != nil {
		return s.wrap("recording an event on "+r.Topic, err)
	}
	return nil
}

// EventQuery selects events for Events.
type EventQuery struct {
	Dir   string // "in", "out", or "" for both
	Topic string // "" for all
	After int64  // only events with a larger ID (dpsbatch events --follow); 0 for all
	// Limit, if above 0, keeps the last Limit of the events selected
	// (still returned in ID order); 0 returns them all.
	Limit int
}

// Events returns the recorded events q selects, in ID order (the order
// recorded). A reader (OpenReadOnly) may call it at any time. Following
// the events is calling it again with After set to the last ID seen. With
// After, the query is a range of the table (or, with Topic, of its topic
// index), whatever the number of events before it. A bad Dir or a negative
// Limit is an error wrapping conf.ErrInvalid.
func (s *Store) Events(q EventQuery) ([]EventRecord, error) {
	if q.Dir != "" && q.Dir != DirIn && q.Dir != DirOut {
		return nil, fmt.Errorf("state: %s: listing events: direction %q: want %q, %q or \"\" for both: %w", s.path, q.Dir, DirIn, DirOut, conf.ErrInvalid)
	}
	if q.Limit < 0 {
		return nil, fmt.Errorf("state: %s: listing events: limit %d: want 0 (all) or more: %w", s.path, q.Limit, conf.ErrInvalid)
	}
	query, args := eventsSQL(q)
	rows, err := s.db.Query(query, args...)
	if err != nil {
		return nil, s.wrap("listing events", err)
	}
	defer rows.Close()
	var es []EventRecord
	for rows.Next() {
		var e EventRecord
		var recorded int64
		var own sql.NullInt64
		var props []byte
		if err := rows.Scan(&e.ID, &recorded, &e.Dir, &e.Topic, &e.Kind, &e.Pipeline, &e.Sender, &e.Job, &own, &props, &e.Dropped); err != nil {
			return nil, s.wrap("listing events", err)
		}
		e.At, e.Time = time.Unix(0, recorded), fromNanos(own)
		if e.Props, err = decodeProps(props); err != nil {
			return nil, s.wrap(fmt.Sprintf("listing events: event %d: properties", e.ID), err)
		}
		es = append(es, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("listing events", err)
	}
	if q.Limit > 0 {
		slices.Reverse(es)
	}
	return es, nil
}

// DroppedEvents counts the events the run dropped (EventRecord.Dropped).
// A reader (OpenReadOnly) may call it at any time.
func (s *Store) DroppedEvents() (int, error) {
	var n int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM events WHERE dropped != ''`).Scan(&n); err != nil {
		return 0, s.wrap("counting dropped events", err)
	}
	return n, nil
}

// eventsSQL is Events' query for q, with its arguments. With a Limit it
// reads the events backwards from the last, which Events reverses.
func eventsSQL(q EventQuery) (string, []any) {
	where := []string{"id > ?"}
	args := []any{q.After}
	if q.Dir != "" {
		where = append(where, "dir = ?")
		args = append(args, q.Dir)
	}
	if q.Topic != "" {
		where = append(where, "topic = ?")
		args = append(args, q.Topic)
	}
	query := `SELECT id, at, dir, topic, kind, pipeline, sender, job, event_time, props, dropped FROM events WHERE ` + strings.Join(where, " AND ")
	if q.Limit > 0 {
		query += " ORDER BY id DESC LIMIT ?"
		args = append(args, q.Limit)
	} else {
		query += " ORDER BY id"
	}
	return query, args
}

// decodeProps reads a stored JSON object of properties: integers as int,
// other numbers as float64 (as the events package decodes them).
func decodeProps(data []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var props map[string]any
	if err := d.Decode(&props); err != nil {
		return nil, err
	}
	if props == nil {
		props = map[string]any{}
	}
	for k, v := range props {
		props[k] = numbers(v)
	}
	return props, nil
}

// numbers turns the json.Numbers in v into int or float64, in place for
// maps and slices.
func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 0); err == nil {
			return int(i)
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return string(x) // out of float64's range: keep the digits
	case map[string]any:
		for k, y := range x {
			x[k] = numbers(y)
		}
	case []any:
		for i, y := range x {
			x[i] = numbers(y)
		}
	}
	return v
}
