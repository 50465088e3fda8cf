package events_test

import (
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
)

func TestWireRoundTrip(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC)
	for _, e := range []events.Event{
		{Topic: "visits", RunID: "r1", Kind: events.KindData, Pipeline: "isr", Time: at, Sender: "n1",
			Properties: map[string]any{"visitId": "704", "ccd": 12, "ra": 10.5, "ok": false, "l": []any{1, "x", nil}, "m": map[string]any{"a": -3}}},
		{Topic: "visits", RunID: "", Kind: events.KindNoMoreData},
		{Topic: events.TopicControl, RunID: "r1", Kind: events.KindShutdown, Time: at.In(time.FixedZone("X", 3600))},
	} {
		data, err := events.Encode(e)
		if err != nil {
			t.Fatalf("Encode(%+v): %v", e, err)
		}
		got, err := events.Decode(data)
		if err != nil {
			t.Fatalf("Decode(%s): %v", data, err)
		}
		if !got.Time.Equal(e.Time) {
			t.Errorf("time %v came back as %v", e.Time, got.Time)
		}
		got.Time, e.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("%s\ncame back as %#v\nwant         %#v", data, got, e)
		}
	}
}

func TestWireFormat(t *testing.T) {
	data, err := events.Encode(events.Event{Topic: "visits", RunID: "r1", Properties: map[string]any{"visitId": "7"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"v":1,"topic":"visits","run":"r1","props":{"visitId":"7"}}`; string(data) != want {
		t.Errorf("Encode = %s, want %s", data, want)
	}
}

func TestDecodeNumbersAndExtras(t *testing.T) {
	e, err := events.Decode([]byte(`{"v":1,"topic":"t","run":"r","future":{"x":1},"kind":null,
		"props":{"i":42,"neg":-7,"f":2.5,"e":1e3,"big":12345678901234567890,"huge":1e999,"nested":[{"n":1}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"i": 42, "neg": -7, "f": 2.5, "e": 1000.0, "big": 12345678901234567890.0, "huge": "1e999",
		"nested": []any{map[string]any{"n": 1}}}
	if !reflect.DeepEqual(e.Properties, want) {
		t.Errorf("properties %#v, want %#v", e.Properties, want)
	}
	if !e.IsData() || e.Topic != "t" || e.RunID != "r" {
		t.Errorf("event %+v", e)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{``, `not a JSON object ("")`},
		{`{"v":1,`, `not a JSON object ("{\"v\":1,")`},
		{`null`, `not a JSON object ("null")`},
		{`"text"`, `not a JSON object ("\"text\"")`},
		{`{"topic":"t"}`, `no "v" field`},
		{`{"v":"1","topic":"t"}`, `v: want a number, got a string`},
		{`{"v":2,"topic":"t"}`, `unsupported version 2 (this build reads 1)`},
		{`{"v":1}`, `no "topic" field`},
		{`{"v":1,"topic":""}`, `topic: is empty`},
		{`{"v":1,"topic":7}`, `topic: want a string, got a number`},
		{`{"v":1,"topic":"t","run":["r"]}`, `run: want a string, got an array`},
		{`{"v":1,"topic":"t","pipeline":true}`, `pipeline: want a string, got a boolean`},
		{`{"v":1,"topic":"t","kind":{}}`, `kind: want a string, got an object`},
		{`{"v":1,"topic":"t","kind":"stop"}`, `kind: unknown kind "stop" (have: data, no-more-data, shutdown)`},
		{`{"v":1,"topic":"t","time":12}`, `time: want a string, got a number`},
		{`{"v":1,"topic":"t","time":"2025-01-02"}`, `time: want an RFC 3339 time, got "2025-01-02"`},
		{`{"v":1,"topic":"t","sender":1}`, `sender: want a string, got a number`},
		{`{"v":1,"topic":"t","props":"a=b"}`, `props: want an object, got a string`},
		{`{"v":1,"topic":"t","props":[]}`, `props: want an object, got an array`},
		{"\xff\xfe", `not a JSON object ("\xff\xfe")`},
		{strings.Repeat("x", 100), `not a JSON object ("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"...)`},
	}
	for _, tt := range tests {
		_, err := events.Decode([]byte(tt.in))
		if err == nil {
			t.Errorf("Decode(%s) succeeded", tt.in)
			continue
		}
		if !errors.Is(err, events.ErrMalformed) {
			t.Errorf("Decode(%s) = %v, not ErrMalformed", tt.in, err)
		}
		if want := "events: malformed event: " + tt.want; err.Error() != want {
			t.Errorf("Decode(%s) =\n %s\nwant\n %s", tt.in, err, want)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		e    events.Event
		want string
	}{
		{events.Event{}, "events: encode: the event has no topic"},
		{events.Event{Topic: "t", Kind: "Shutdown"}, `events: encode: unknown kind "Shutdown" (have: data, no-more-data, shutdown)`},
		{events.Event{Topic: "t", Properties: map[string]any{"x": math.NaN()}}, `events: encode properties of an event on "t": json: unsupported value: NaN`},
		{events.Event{Topic: "t", Properties: map[string]any{"f": func() {}}}, `events: encode properties of an event on "t": json: unsupported type: func()`},
	}
	for _, tt := range tests {
		if _, err := events.Encode(tt.e); err == nil || err.Error() != tt.want {
			t.Errorf("Encode(%+v) = %v, want %s", tt.e, err, tt.want)
		}
	}
}

// untoken inverts events.Token, failing on anything Token cannot produce.
func untoken(tok string) (string, bool) {
	if tok == "~" {
		return "", true
	}
	var b strings.Builder
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case c == '~':
			if i+2 >= len(tok) {
				return "", false
			}
			h := tok[i+1 : i+3]
			if strings.ToUpper(h) != h {
				return "", false
			}
			v, err := hex.DecodeString(h)
			if err != nil {
				return "", false
			}
			b.Write(v)
			i += 2
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		default:
			return "", false
		}
	}
	return b.String(), tok != ""
}

func TestToken(t *testing.T) {
	for in, want := range map[string]string{
		"":                 "~",
		"visits":           "visits",
		"run-2024_01":      "run-2024_01",
		"a.b":              "a~2Eb",
		"*":                "~2A",
		">":                "~3E",
		"a b":              "a~20b",
		"~":                "~7E",
		"dpsbatch.control": "dpsbatch~2Econtrol",
		"é":                "~C3~A9",
	} {
		if got := events.Token(in); got != want {
			t.Errorf("Token(%q) = %q, want %q", in, got, want)
		}
	}
	if got, want := events.Subject("dpsbatch.control", "run 1"), "dpsbatch.run~201.dpsbatch~2Econtrol"; got != want {
		t.Errorf("Subject = %q, want %q", got, want)
	}
}

// Every token is one valid NATS token and names one string only.
func FuzzToken(f *testing.F) {
	for _, s := range []string{"", "a", "a.b", "~", "~2E", "*", ">", " ", "\x00", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := events.Token(s)
		back, ok := untoken(tok)
		if !ok || back != s {
			t.Fatalf("Token(%q) = %q, which reads back as %q, %v", s, tok, back, ok)
		}
	})
}
