package harness

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
)

func TestEventFilterPolicy(t *testing.T) {
	p, err := parse("p.yaml", []byte(testHead+`events:
  trigger:
    topic: visits
    properties: {exposure: number, filter: string, snap: int, deep: bool, note: any}
    select: {filter: r, snap: 1}
  external: [ephem]
stages:
  - {name: r, type: test-record}
  - name: w
    type: test-record
    event: {topic: ephem, properties: [ra], select: {source: orbit}}
`))
	if err != nil {
		t.Fatal(err)
	}
	tr := p.Trigger
	if strings.Join(tr.Properties, ",") != "exposure,filter,snap,deep,note" {
		t.Errorf("properties = %v", tr.Properties)
	}
	if tr.Types["exposure"] != propNumber || tr.Types["snap"] != propInt || tr.Types["deep"] != propBool || tr.Types["note"] != propAny {
		t.Errorf("types = %v", tr.Types)
	}
	if tr.Select["filter"] != "r" || tr.Select["snap"] != 1 {
		t.Errorf("select = %v", tr.Select)
	}
	if w := p.Stages[1].Event; w.Select["source"] != "orbit" || strings.Join(w.Properties, ",") != "ra" {
		t.Errorf("wait = %+v", w)
	}
}

func TestEventFilterPolicyErrors(t *testing.T) {
	_, err := parse("p.yaml", []byte(testHead+`events:
  trigger:
    properties: {exposure: numbr}
    select: {filter: [r, g]}
stages:
  - {name: r, type: test-record}
`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`p.yaml:6: events.trigger.properties.exposure: unknown property type "numbr" (did you mean "number"?)`,
		`p.yaml:7: events.trigger.select.filter: expected a string, number or bool to select events by, got a list`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error\n%v\nlacks\n%s", err, want)
		}
	}
}

func TestEventFilterChecks(t *testing.T) {
	f := EventFilter{Properties: []string{"n", "i", "b", "s"},
		Types:  map[string]propType{"n": propNumber, "i": propInt, "b": propBool, "s": propString},
		Select: map[string]any{"s": "r", "i": 3}}
	good := map[string]any{"n": 1.5, "i": 3.0, "b": true, "s": "r"}
	if why := f.malformed(good); why != "" {
		t.Errorf("good event: %s", why)
	}
	text := map[string]any{"n": "2.5", "i": " 3", "b": "true", "s": "r"}
	if why := f.malformed(text); why != "" || text["n"] != 2.5 || text["i"] != 3 || text["b"] != true {
		t.Errorf("text that reads as the types: %q, now %v", why, text)
	}
	for props, want := range map[*map[string]any]string{
		{"i": 3, "b": true, "s": "r"}:                "missing property n",
		{"n": "x", "i": 3, "b": true, "s": "r"}:      `property n: expected number, got string "x"`,
		{"n": 1, "i": 3.5, "b": true, "s": "r"}:      "property i: expected int, got number 3.5",
		{"n": 1, "i": 3, "b": "maybe", "s": "r"}:     `property b: expected bool, got string "maybe"`,
		{"n": 1, "i": 3, "b": true, "s": []any{"r"}}: "property s: expected string, got a list",
	} {
		if got := f.malformed(*props); got != want {
			t.Errorf("malformed(%v) = %q, want %q", *props, got, want)
		}
	}
	sel := func(kind events.Kind, props map[string]any) bool {
		return f.Selects(events.Event{Kind: kind, Properties: props})
	}
	switch {
	case !sel("", map[string]any{"s": "r", "i": 3.0}):
		t.Error("3.0 does not select i: 3")
	case !sel("", map[string]any{"s": "r", "i": "3"}):
		t.Error(`"3" does not select i: 3`)
	case sel("", map[string]any{"s": "g", "i": 3}):
		t.Error("s: g selected by s: r")
	case sel("", map[string]any{"i": 3}):
		t.Error("an event without s selected")
	case sel("", map[string]any{"s": map[string]any{}, "i": 3}):
		t.Error("a mapping selected")
	case !sel(events.KindNoMoreData, nil):
		t.Error("a no-more-data without the selected properties is not for every receiver")
	case sel(events.KindNoMoreData, map[string]any{"s": "g"}):
		t.Error("a no-more-data for s: g selected by s: r")
	}
}

// TestTriggerSelectAndTypes runs a pipeline whose trigger selects filter
// r and declares exposure a number: other filters are skipped, a bad
// exposure is dropped, a text exposure that reads as a number runs.
func TestTriggerSelectAndTypes(t *testing.T) {
	b := events.NewMemory()
	ctx := context.Background()
	for _, e := range []events.Event{
		{Topic: "visits", RunID: "test-run", Properties: map[string]any{"visitId": "1", "filter": "r", "exposure": 30}},
		{Topic: "visits", RunID: "test-run", Properties: map[string]any{"visitId": "2", "filter": "g", "exposure": 30}},
		{Topic: "visits", RunID: "test-run", Properties: map[string]any{"visitId": "3", "filter": "r", "exposure": "long"}},
		{Topic: "visits", RunID: "test-run", Properties: map[string]any{"visitId": "4", "filter": "r", "exposure": "15.5"}},
		{Topic: "visits", RunID: "test-run", Kind: events.KindNoMoreData, Properties: map[string]any{"filter": "g"}},
		{Topic: "visits", RunID: "test-run", Properties: map[string]any{"visitId": "5", "filter": "r", "exposure": 1}},
		{Topic: "visits", RunID: "test-run", Kind: events.KindNoMoreData},
	} {
		if err := b.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	sum, end, err := runYAML(t, testHead+`events:
  trigger: {properties: {exposure: number}, select: {filter: r}}
stages:
  - {name: r, type: test-record, settings: {keys: [exposure]}}
`, nil, func(lr *RunOptions) { lr.Broker, lr.Feed = b, true })
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(end.order, ","); got != "1,4,5" {
		t.Errorf("visits run: %s, want 1,4,5", got)
	}
	if sum.Malformed != 1 || sum.Skipped != 2 {
		t.Errorf("malformed %d, skipped %d; want 1 and 2", sum.Malformed, sum.Skipped)
	}
	for _, s := range sink.sorted("4") {
		if !strings.HasSuffix(s, "exposure=15.5") {
			t.Errorf("visit 4's clipboard: %s, want exposure=15.5", s)
		}
	}
}

// admitter refuses the visits in done and records every heartbeat.
type admitter struct {
	*endings
	openGate
	done  map[string]bool
	mu    sync.Mutex
	beats []string
}

func (a *admitter) AdmitVisit(v string) (bool, string, error) {
	if v == "boom" {
		return false, "", errors.New("state file gone")
	}
	if a.done[v] {
		return false, "already done", nil
	}
	return true, "", nil
}

func (a *admitter) Heartbeat(at time.Time, visit string) {
	a.mu.Lock()
	a.beats = append(a.beats, visit)
	a.mu.Unlock()
}

func TestAdmitterSkipsDoneVisits(t *testing.T) {
	a := &admitter{endings: newEndings(), done: map[string]bool{"2": true}}
	sum, _, err := runYAML(t, testHead+"stages:\n  - {name: r, type: test-record}\n", []string{"1", "2", "3"},
		func(lr *RunOptions) { lr.Recorder = a })
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(a.order, ","); got != "1,3" || sum.Skipped != 1 || sum.Visits != 2 {
		t.Errorf("ran %s, skipped %d, visits %d; want 1,3, 1 skipped, 2 visits", got, sum.Skipped, sum.Visits)
	}
	_, _, err = runYAML(t, testHead+"stages:\n  - {name: r, type: test-record}\n", []string{"1", "boom"},
		func(lr *RunOptions) { lr.Recorder = a })
	if err == nil || !strings.Contains(err.Error(), "admitting visit boom: state file gone") {
		t.Errorf("err = %v, want the admitter's error to end the run", err)
	}
}

// TestHeartbeat checks that the Pipeline publishes heartbeats naming the
// visit in flight while a slow visit runs, and tells the recorder.
func TestHeartbeat(t *testing.T) {
	b := events.NewMemory()
	sub, err := b.Subscribe(context.Background(), events.TopicHeartbeat, "test-run")
	if err != nil {
		t.Fatal(err)
	}
	a := &admitter{endings: newEndings()}
	_, _, err = runYAML(t, testHead+`stages:
  - {name: slow, type: exec, settings: {command: [sleep, "0.25"]}}
`, []string{"v1"}, func(lr *RunOptions) { lr.Recorder, lr.Broker, lr.Heartbeat = a, b, 50*time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	inFlight := 0
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			break
		}
		if e.Pipeline != "t" || e.Time.IsZero() {
			t.Errorf("heartbeat %+v lacks pipeline or time", e)
		}
		if e.Properties["visit"] == "v1" {
			inFlight++
		}
	}
	if inFlight < 3 {
		t.Errorf("%d heartbeats named visit v1 while it ran 0.5 s (two 0.25 s clipboards per slice) at 50 ms, want several", inFlight)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.beats) < 5 || !strings.Contains(strings.Join(a.beats, ","), "v1") {
		t.Errorf("recorder heard %v", a.beats)
	}
}

// TestNonScalarVisitIDDropped sends trigger and waited-for events whose
// visitId is a JSON object or list, as they come off the wire: each is
// refused (no visit "map[a:1]" runs, none is taken as a stage's event),
// logged with the event, and counted.
func TestNonScalarVisitIDDropped(t *testing.T) {
	b := events.NewMemory()
	ctx := context.Background()
	wire := func(raw string) events.Event {
		t.Helper()
		e, err := events.Decode([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	for _, e := range []events.Event{
		wire(`{"v":1,"topic":"visits","run":"test-run","props":{"visitId":{"a":1}}}`),
		wire(`{"v":1,"topic":"visits","run":"test-run","props":{"visitId":["x","y"]}}`),
		wire(`{"v":1,"topic":"visits","run":"test-run","props":{"visitId":true}}`),
		wire(`{"v":1,"topic":"visits","run":"test-run","props":{"visitId":"1"}}`),
		wire(`{"v":1,"topic":"visits","run":"test-run","props":{"visitId":2}}`),
		wire(`{"v":1,"topic":"ephem","run":"test-run","props":{"visitId":{"a":1},"ra":1}}`),
		wire(`{"v":1,"topic":"ephem","run":"test-run","props":{"visitId":"1","ra":2}}`),
		wire(`{"v":1,"topic":"ephem","run":"test-run","props":{"visitId":2,"ra":3}}`),
		{Topic: "visits", RunID: "test-run", Kind: events.KindNoMoreData},
	} {
		if err := b.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	var logged bytes.Buffer
	lw := lockedWriter{b: &logged, mu: new(sync.Mutex)}
	sum, end, err := runYAML(t, testHead+`events:
  external: [ephem]
stages:
  - name: w
    type: test-record
    settings: {keys: [ra]}
    event: {topic: ephem, properties: {ra: number}, timeout: 5s}
`, nil, func(lr *RunOptions) {
		lr.Broker, lr.Feed = b, true
		lr.Logger = slog.New(slog.NewTextHandler(lw, nil))
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(end.order, ","); got != "1,2" {
		t.Errorf("visits run: %s, want 1,2", got)
	}
	if sum.Malformed != 4 {
		t.Errorf("malformed %d, want 4 (three triggers, one waited-for event)", sum.Malformed)
	}
	for _, s := range sink.sorted("1") {
		if !strings.HasSuffix(s, "ra=2") {
			t.Errorf("visit 1's clipboard: %s, want ra=2 (the event with an object visitId is not its)", s)
		}
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	for _, want := range []string{`reason="property visitId: expected string or number, got a mapping"`, "properties=map[visitId:map[a:1]]",
		`reason="property visitId: expected string or number, got a list"`, `got bool true`} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logged.String())
		}
	}
}
