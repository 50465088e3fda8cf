package stagetest_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/harness/stagetest"
)

// toy has every serial and parallel part: Preprocess shares a base,
// Process adds it to the data ID's value (failing for a negative one)
// and shares the sum, Postprocess adds the gathered sums up.
type toy struct{}

func (toy) Preprocess(cx *harness.Context, cb *harness.Clipboard) error {
	cb.PutShared("base", 100)
	return nil
}

func (toy) Process(cx *harness.Context, cb *harness.Clipboard) error {
	base, _ := cb.Get("base")
	n, _ := cb.Get("n")
	if n.(int) < 0 {
		return fmt.Errorf("negative n %d", n)
	}
	cb.Put("sum", base.(int)+n.(int))
	cb.PutShared("sums", base.(int)+n.(int))
	return nil
}

func (toy) Postprocess(cx *harness.Context, cb *harness.Clipboard) error {
	total := 0
	v, _ := cb.Get("sums")
	for _, s := range v.(map[string]any) { // by data ID
		total += s.(int)
	}
	cb.Put("total", total)
	return nil
}

func init() {
	harness.RegisterStage(harness.Type{Name: "stagetest-toy", Doc: "test stage", Needs: []string{"n"},
		New: func(harness.Settings) (harness.Stage, error) { return toy{}, nil }})
}

func TestRunsEveryPartAndSharedItems(t *testing.T) {
	r := stagetest.Run(t, stagetest.Case{
		Stages:       "- {name: toy, type: stagetest-toy}",
		Slices:       2,
		DataIDs:      []map[string]any{{"ccd": 1}, {"ccd": 2}, {"ccd": 3}},
		Event:        map[string]any{"filter": "r"},
		Clipboard:    map[string]any{"n": 1},
		ClipboardFor: map[string]map[string]any{"ccd=3": {"n": 30}},
	})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	for id, want := range map[string]int{"ccd=1": 101, "ccd=2": 101, "ccd=3": 130} {
		if got := r.Get(t, id, "sum"); got != want {
			t.Errorf("%s: sum %v, want %d", id, got, want)
		}
		if got := r.Get(t, id, "filter"); got != "r" {
			t.Errorf("%s: the trigger's filter is %v, want r", id, got)
		}
	}
	sums, _ := r.Pipeline.Get("sums")
	if want := map[string]any{"ccd=1": 101, "ccd=2": 101, "ccd=3": 130}; !reflect.DeepEqual(sums, want) {
		t.Errorf("the Pipeline gathered sums %v, want %v", sums, want)
	}
	if total, _ := r.Pipeline.Get("total"); total != 332 {
		t.Errorf("Postprocess's total %v, want 332", total)
	}
}

func TestFailingDataIDReported(t *testing.T) {
	r := stagetest.Run(t, stagetest.Case{
		Stages:       "- {name: toy, type: stagetest-toy}",
		Slices:       2,
		DataIDs:      []map[string]any{{"ccd": 1}, {"ccd": 2}},
		Clipboard:    map[string]any{"n": 1},
		ClipboardFor: map[string]map[string]any{"ccd=2": {"n": -1}},
	})
	if !errors.Is(r.Err, harness.ErrVisitsFailed) {
		t.Errorf("run error %v, want the visit failed", r.Err)
	}
	f, ok := r.Failure("ccd=2")
	if !ok || f.Stage != "toy" || !strings.Contains(f.Err, "negative n -1") {
		t.Errorf("failure of ccd=2: %+v (%v); want stage toy, negative n -1", f, ok)
	}
	if _, ok := r.Failure("ccd=1"); ok {
		t.Error("ccd=1 reported failed")
	}
	if _, ok := r.Clipboards["ccd=2"]; ok {
		t.Error("the failed data ID has a clipboard after the stages")
	}
	if got := r.Get(t, "ccd=1", "sum"); got != 101 {
		t.Errorf("ccd=1: sum %v, want 101", got)
	}
}

func TestEventsForWaitingStages(t *testing.T) {
	r := stagetest.Run(t, stagetest.Case{
		Stages:    "- {name: toy, type: stagetest-toy, event: {topic: ephem, properties: [ra]}}",
		Clipboard: map[string]any{"n": 1},
		Events:    map[string]map[string]any{"ephem": {"ra": 12.5}},
	})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := r.Get(t, "id=1", "ra"); got != 12.5 {
		t.Errorf("ra %v on the clipboard, want the event's 12.5", got)
	}
}

// failPre fails on the Pipeline, before any Slice runs it.
type failPre struct{}

func (failPre) Preprocess(*harness.Context, *harness.Clipboard) error {
	return errors.New("no calibration")
}
func (failPre) Process(*harness.Context, *harness.Clipboard) error { return nil }

func init() {
	harness.RegisterStage(harness.Type{Name: "stagetest-failpre", Doc: "test stage",
		New: func(harness.Settings) (harness.Stage, error) { return failPre{}, nil }})
}

func TestPipelineFailureReported(t *testing.T) {
	r := stagetest.Run(t, stagetest.Case{Stages: "- {name: calib, type: stagetest-failpre}", Slices: 2,
		DataIDs: []map[string]any{{"ccd": 1}, {"ccd": 2}}})
	if !errors.Is(r.Err, harness.ErrVisitsFailed) || !strings.Contains(r.Summary.Reasons["1"], "no calibration") {
		t.Errorf("run error %v, reasons %v; want the visit failed with no calibration", r.Err, r.Summary.Reasons)
	}
	if r.Pipeline != nil || len(r.Clipboards) != 0 {
		t.Errorf("after a failure on the Pipeline: Pipeline clipboard %v, data IDs' %v; want none", r.Pipeline, r.Clipboards)
	}
}
