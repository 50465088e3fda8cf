package main

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestLocalEventValuesByDataID: a local run of the example where one
// CCD's file is missing publishes, for that visit, each CCD's mean keyed
// by its data ID, the missing CCD visibly missing, and each data ID's
// outcome; `dpsbatch events` shows them as published.
func TestLocalEventValuesByDataID(t *testing.T) {
	ex := filepath.Join("..", "..", "examples", "ccdproc")
	dir := filepath.Join(t.TempDir(), "r")
	out, err := run(t, "local", filepath.Join(ex, "pipeline.yaml"), "--visits", filepath.Join(ex, "visits-with-failure.csv"), "--run-dir", dir)
	if exitCode(err) != exitPartial {
		t.Fatalf("local with a missing CCD: exit %d (%v), want %d\n%s", exitCode(err), err, exitPartial, out)
	}
	out, err = run(t, "events", "--json", dir)
	if err != nil {
		t.Fatalf("events: %v\n%s", err, out)
	}
	measured := map[string]eventJSON{}
	for _, ev := range parseEvents(t, out) {
		if ev.Topic == "visit-measured" {
			measured[ev.Props["visitId"].(string)] = ev
		}
	}
	if len(measured) != 4 {
		t.Fatalf("%d visit-measured events, want one per visit:\n%s", len(measured), out)
	}
	for visit, want := range map[string][]string{"1001": {"ccd=1", "ccd=2", "ccd=3", "ccd=4"}, "1004": {"ccd=1", "ccd=2", "ccd=4"}} {
		means, _ := measured[visit].Props["mean"].(map[string]any)
		if got := sortedKeys(means); !reflect.DeepEqual(got, want) {
			t.Errorf("visit %s: means by data ID %v (%v), want %v", visit, got, measured[visit].Props["mean"], want)
		}
		for id, m := range means {
			if _, ok := m.(float64); !ok {
				t.Errorf("visit %s: mean of %s is %#v, want a number", visit, id, m)
			}
		}
	}
	ids := map[string]any{"ccd=1": "done", "ccd=2": "done", "ccd=3": "failed", "ccd=4": "done"}
	if got := measured["1004"].Props["dataIds"]; !reflect.DeepEqual(got, ids) {
		t.Errorf("visit 1004: dataIds %v, want %v", got, ids)
	}
	// The text form shows them as JSON too.
	out, err = run(t, "events", dir)
	want := `dataIds={"ccd=1":"done","ccd=2":"done","ccd=3":"failed","ccd=4":"done"} filter=z mean={"ccd=1":`
	if err != nil || !strings.Contains(out, want) {
		t.Errorf("events: %v; want a line with %s:\n%s", err, want, out)
	}
}

func sortedKeys(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}

// TestValidateEventKeyOnlyOnSlices: an event stage that copies a key the
// Pipeline never has (the data ID) is bad input at validate, naming the
// stage, the key and what the Pipeline has, not a failure of every visit
// at run time.
func TestValidateEventKeyOnlyOnSlices(t *testing.T) {
	policy := filepath.Join(t.TempDir(), "pipeline.yaml")
	text := `pipeline: ccds
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
events: {trigger: {topic: visits, properties: [filter]}}
stages:
  - name: count
    type: exec
    settings: {command: [echo, '{{"n": 1}}'], produces: [n], shared: [n]}
  - name: announce
    type: event
    settings: {topic: counted, keys: [n, dataId]}
`
	if err := os.WriteFile(policy, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "validate", policy)
	if exitCode(err) != exitBadInput {
		t.Fatalf("validate: exit %d (%v), want %d\n%s", exitCode(err), err, exitBadInput, out)
	}
	want := `pipeline.yaml:9: stages[1]: stage "announce" runs on the Pipeline and needs clipboard key "dataId", which the Pipeline's clipboard never has (it has: dataIds, filter, n, visitId)`
	if !strings.Contains(out+err.Error(), want) {
		t.Errorf("validate says\n%s%v\nwant it to contain\n%s", out, err, want)
	}
}
