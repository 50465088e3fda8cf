package main

import (
	"maps"
	"path/filepath"
	"reflect"
	"slices"
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
}

func sortedKeys(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}
