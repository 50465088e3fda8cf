package harness_test

// Shared values reach the Pipeline keyed by data ID, so a failed data
// ID's value is visibly missing; the Pipeline's dataIds item says what
// became of each data ID.

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness/stagetest"
)

// countStages shares each CCD's count, failing the CCDs named in the
// case's "bad" item, then publishes the counts and the data IDs.
const countStages = `- name: count
  type: exec
  settings:
    command: [sh, -c, 'case " $2 " in *" $1 "*) echo "bad pixels in $1" >&2; exit 1;; esac; printf "{{\"nsources\": %s}}" "$1$1"', sh, "{ccd}", "{bad}"]
    produces: [nsources]
    shared: [nsources]
- name: announce
  type: event
  settings: {topic: counted, keys: [nsources, dataIds], properties: {counts: "{nsources}"}}`

var fourCCDs = []map[string]any{{"ccd": 1}, {"ccd": 2}, {"ccd": 3}, {"ccd": 4}}

func TestSharedValuesKeyedByDataID(t *testing.T) {
	r := stagetest.Run(t, stagetest.Case{
		Stages:  countStages,
		Slices:  2,
		DataIDs: fourCCDs,
		Failure: "never",
		Event:   map[string]any{"bad": "2"},
	})
	if r.Summary.Done != 1 {
		t.Fatalf("visit not done (failure: never): %v", r.Summary.Reasons)
	}
	want := map[string]any{"ccd=1": 11, "ccd=3": 33, "ccd=4": 44}
	if got, _ := r.Pipeline.Get("nsources"); !reflect.DeepEqual(got, want) {
		t.Errorf("the Pipeline's nsources = %#v, want %v: the failed ccd=2 missing, the others by data ID", got, want)
	}
	e := firstEvent(t, r, "counted")
	if got := e.Properties["nsources"]; !reflect.DeepEqual(got, want) {
		t.Errorf("event's nsources = %#v, want %v", got, want)
	}
	ids := map[string]any{"ccd=1": "done", "ccd=2": "failed", "ccd=3": "done", "ccd=4": "done"}
	if got := e.Properties["dataIds"]; !reflect.DeepEqual(got, ids) {
		t.Errorf("event's dataIds = %#v, want %v", got, ids)
	}
	if got := e.Properties["counts"]; got != `{"ccd=1":11,"ccd=3":33,"ccd=4":44}` {
		t.Errorf("the template {nsources} gave %q, want the values by data ID as JSON", got)
	}
}

// When every data ID fails, the shared key is there, empty, and the
// visit's error is the data IDs' failure, not the event stage's.
func TestEveryDataIDFailedNamesTheirFailure(t *testing.T) {
	r := stagetest.Run(t, stagetest.Case{
		Stages:  countStages,
		Slices:  2,
		DataIDs: fourCCDs,
		Event:   map[string]any{"bad": "1 2 3 4"},
	})
	reason := r.Summary.Reasons["1"]
	if !strings.Contains(reason, "4 of 4 data IDs failed") || !strings.Contains(reason, "bad pixels in") {
		t.Errorf("visit's error %q does not name the data IDs' failures", reason)
	}
	if strings.Contains(reason, "announce") || strings.Contains(reason, "no key") {
		t.Errorf("visit's error %q names the event stage after the data IDs failed", reason)
	}
	e := firstEvent(t, r, "counted")
	if got := e.Properties["nsources"]; !reflect.DeepEqual(got, map[string]any{}) {
		t.Errorf("event's nsources = %#v, want an empty map", got)
	}
}

func firstEvent(t *testing.T, r *stagetest.Result, topic string) events.Event {
	t.Helper()
	sub, err := r.Broker.Subscribe(context.Background(), topic, r.RunID)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := sub.Next(ctx)
	if err != nil {
		t.Fatalf("no event on %s: %v (visit: %v)", topic, err, r.Summary.Reasons)
	}
	return e
}
