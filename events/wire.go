package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// WireVersion is the version of the wire encoding Encode writes and Decode
// reads. An incompatible change of the encoding gets a new version; fields
// added within a version are ignored by older readers.
const WireVersion = 1

// ErrMalformed is wrapped by every Decode error: the payload is not an event
// this build can read.
var ErrMalformed = errors.New("events: malformed event")

// The wire form of an event: one JSON object.
//
//	{"v":1,"topic":"visits","run":"r1","pipeline":"isr","kind":"data",
//	 "time":"2025-01-02T03:04:05.123456789Z","sender":"n1",
//	 "props":{"visitId":"704","filter":"r"}}
//
// v and topic are required; run, pipeline, kind (default data), time,
// sender and props may be left out.
type wireEvent struct {
	V        int            `json:"v"`
	Topic    string         `json:"topic"`
	Run      string         `json:"run"`
	Pipeline string         `json:"pipeline,omitempty"`
	Kind     Kind           `json:"kind,omitempty"`
	Time     *time.Time     `json:"time,omitempty"`
	Sender   string         `json:"sender,omitempty"`
	Props    map[string]any `json:"props,omitempty"`
}

// knownKind reports whether k is one of the kinds of event.
func knownKind(k Kind) bool {
	switch k {
	case "", KindData, KindNoMoreData, KindShutdown:
		return true
	}
	return false
}

// Encode returns the wire form of e. It fails for an empty topic, a kind
// that is not one of KindData, KindNoMoreData and KindShutdown, and
// properties that JSON cannot carry (channels, functions, NaN, ...): what
// Decode would refuse is refused here, before it is sent.
func Encode(e Event) ([]byte, error) {
	if e.Topic == "" {
		return nil, errors.New("events: encode: the event has no topic")
	}
	if !knownKind(e.Kind) {
		return nil, fmt.Errorf("events: encode: unknown kind %q (have: %s, %s, %s)", e.Kind, KindData, KindNoMoreData, KindShutdown)
	}
	w := wireEvent{V: WireVersion, Topic: e.Topic, Run: e.RunID, Pipeline: e.Pipeline, Kind: e.Kind,
		Sender: e.Sender, Props: e.Properties}
	if !e.Time.IsZero() {
		t := e.Time
		w.Time = &t
	}
	data, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("events: encode properties of an event on %q: %w", e.Topic, err)
	}
	return data, nil
}

// Decode reads the wire form of an event. Every error wraps ErrMalformed and
// says what is wrong: not a JSON object, no or an unsupported version, a
// field of the wrong type, an unknown kind, a time that is not RFC 3339.
// Unknown fields are ignored. Property numbers come back as int when they
// are whole and fit, float64 otherwise; objects as map[string]any and
// arrays as []any.
func Decode(data []byte) (Event, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil || raw == nil {
		return Event{}, fmt.Errorf("%w: not a JSON object (%s)", ErrMalformed, preview(data))
	}
	var e Event
	var v any
	if err := field(raw, "v", true, &v); err != nil {
		return Event{}, err
	}
	if n, ok := v.(float64); !ok {
		return Event{}, fmt.Errorf("%w: v: want a number, got %s", ErrMalformed, jsonType(raw["v"]))
	} else if n != WireVersion {
		return Event{}, fmt.Errorf("%w: unsupported version %s (this build reads %d)", ErrMalformed, raw["v"], WireVersion)
	}
	if err := field(raw, "topic", true, &e.Topic); err != nil {
		return Event{}, err
	}
	if e.Topic == "" {
		return Event{}, fmt.Errorf("%w: topic: is empty", ErrMalformed)
	}
	var kind string
	var ts string
	for _, f := range []struct {
		key string
		to  *string
	}{{"run", &e.RunID}, {"pipeline", &e.Pipeline}, {"kind", &kind}, {"time", &ts}, {"sender", &e.Sender}} {
		if err := field(raw, f.key, false, f.to); err != nil {
			return Event{}, err
		}
	}
	e.Kind = Kind(kind)
	if !knownKind(e.Kind) {
		return Event{}, fmt.Errorf("%w: kind: unknown kind %q (have: %s, %s, %s)", ErrMalformed, kind, KindData, KindNoMoreData, KindShutdown)
	}
	if ts != "" {
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return Event{}, fmt.Errorf("%w: time: want an RFC 3339 time, got %q", ErrMalformed, ts)
		}
		e.Time = t
	}
	if p, ok := raw["props"]; ok && !bytes.Equal(p, []byte("null")) {
		d := json.NewDecoder(bytes.NewReader(p))
		d.UseNumber()
		var props map[string]any
		if err := d.Decode(&props); err != nil {
			return Event{}, fmt.Errorf("%w: props: want an object, got %s", ErrMalformed, jsonType(p))
		}
		for k, v := range props {
			props[k] = numbers(v)
		}
		e.Properties = props
	}
	return e, nil
}

// field decodes raw[key] into to, naming the key and the expected type when
// it does not fit. A missing key is an error only when required; null is
// the same as missing.
func field[T any](raw map[string]json.RawMessage, key string, required bool, to *T) error {
	r, ok := raw[key]
	if !ok || bytes.Equal(r, []byte("null")) {
		if required {
			return fmt.Errorf("%w: no %q field", ErrMalformed, key)
		}
		return nil
	}
	if err := json.Unmarshal(r, to); err != nil {
		return fmt.Errorf("%w: %s: want a string, got %s", ErrMalformed, key, jsonType(r))
	}
	return nil
}

// numbers turns the json.Numbers in v into int or float64, in place for
// maps and slices.
func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 0); err == nil {
			return int(i)
		}
		f, err := x.Float64()
		if err != nil {
			return string(x) // out of float64's range: keep the digits
		}
		return f
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

// jsonType names the JSON type of a raw value, for error messages.
func jsonType(r json.RawMessage) string {
	r = bytes.TrimSpace(r)
	if len(r) == 0 {
		return "nothing"
	}
	switch r[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// preview quotes the start of a payload for an error message.
func preview(data []byte) string {
	const max = 40
	if len(data) > max {
		return strconv.Quote(string(data[:max])) + "..."
	}
	return strconv.Quote(string(data))
}
