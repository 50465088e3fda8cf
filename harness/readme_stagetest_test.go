package harness_test

// The test of README.md's "Testing a stage", compiled and run with the
// tests: TestReadmeStageExample checks that the README shows this file
// from its imports on. It tests the README's scale stage.

import (
	"testing"

	"github.com/dpsbatch/dpsbatch/harness/stagetest"
)

func TestScale(t *testing.T) {
	r := stagetest.Run(t, stagetest.Case{
		Stages:       "- {name: scale, type: scale, settings: {factor: 2}}",
		Slices:       2,
		DataIDs:      []map[string]any{{"ccd": 1}, {"ccd": 2}, {"ccd": 3}},
		Clipboard:    map[string]any{"mean": 1.5},                       // on every data ID's clipboard
		ClipboardFor: map[string]map[string]any{"ccd=3": {"mean": "x"}}, // a bad value for one
	})
	if got := r.Get(t, "ccd=2", "scaled"); got != 3.0 {
		t.Errorf("scaled = %v, want 3", got)
	}
	got, _ := r.Pipeline.Get("scaled") // gathered from the Slices, by data ID
	if scaled := got.(map[string]any); len(scaled) != 2 || scaled["ccd=1"] != 3.0 {
		t.Errorf("the Pipeline has %v, want the two good data IDs' values", got)
	}
	if _, failed := r.Failure("ccd=3"); !failed {
		t.Error("ccd=3 did not fail")
	}
}
