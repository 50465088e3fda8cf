package harness

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// doneGate is a Recorder whose VisitGate says data IDs of a visit are
// done already.
type doneGate struct {
	*endings
	openGate
	done map[string][]string // by visit
}

func (g *doneGate) DoneDataIDs(visit string) ([]string, error) { return g.done[visit], nil }

// Every data ID a visit runs has an outcome, whatever the failure rule;
// a visit run again leaves out the data IDs its VisitGate says are done
// (unless failure.redo is visit), and those have no outcome in it.
func TestDataIDOutcomesAndRedo(t *testing.T) {
	for _, tc := range []struct {
		redo     string
		inFlight string
		records  int
	}{{"", "1", 4}, {"data-ids", "1", 4}, {"visit", "1", 6}, {"", "2", 4}} {
		t.Run("redo="+tc.redo+"/in_flight="+tc.inFlight, func(t *testing.T) {
			failure := "failure: {visit: never}\n"
			if tc.redo != "" {
				failure = "failure: {visit: never, redo: " + tc.redo + "}\n"
			}
			policy := testHead + failure + "in_flight: " + tc.inFlight + "\n" + `stages:
  - {name: r, type: test-record}
  - {name: f, type: test-fail, settings: {visit: "1", dataId: "ccd=4"}}
`
			var rec *doneGate
			sum, end, err := runYAML(t, policy, []string{"1", "2"}, func(o *RunOptions) {
				rec = &doneGate{endings: o.Recorder.(*endings), done: map[string][]string{"1": {"ccd=1", "ccd=2", "ccd=9"}}}
				o.Recorder = rec
			})
			if !errors.Is(err, ErrVisitsFailed) || !strings.Contains(err.Error(), "1 data IDs failed") {
				t.Errorf("err = %v; want ErrVisitsFailed for one data ID", err)
			}
			if n := len(sink.sorted("1")); n != tc.records {
				t.Errorf("visit 1 ran %d data IDs; want %d", n, tc.records)
			}
			r := end.results["1"]
			if r.Outcome != VisitDone {
				t.Errorf("visit 1 %s; want done (failure rule never)", r.Outcome)
			}
			if len(r.DataIDs) != tc.records || r.DataIDs["ccd=4"] != VisitFailed || r.DataIDs["ccd=3"] != VisitDone {
				t.Errorf("visit 1 data IDs %v; want %d, ccd=4 failed, ccd=3 done", r.DataIDs, tc.records)
			}
			if _, ok := r.DataIDs["ccd=1"]; ok == (tc.redo != "visit") {
				t.Errorf("visit 1 data IDs %v: ccd=1 listed %v", r.DataIDs, ok)
			}
			if got := end.results["2"].DataIDs; len(got) != 6 {
				t.Errorf("visit 2 data IDs %v; want all 6 done", got)
			}
			if len(sum.FailedDataIDs) != 1 || sum.FailedDataIDs[0].DataID != "ccd=4" || sum.FailedDataIDs[0].Stage != "f" {
				t.Errorf("summary's failed data IDs %+v; want ccd=4 at stage f", sum.FailedDataIDs)
			}
		})
	}
}

// A serial failure leaves the data IDs not failed skipped, to be run
// again; an interrupted visit's are interrupted.
func TestDataIDSkippedBySerialFailure(t *testing.T) {
	policy := testHead + `stages:
  - {name: first, type: test-record}
  - {name: gate, type: test-prefail, settings: {visit: "2"}}
  - {name: last, type: test-record}
`
	_, end, _ := runYAML(t, policy, []string{"2"})
	r := end.results["2"]
	if len(r.DataIDs) != 6 || r.DataIDs["ccd=1"] != DataIDSkipped {
		t.Errorf("data IDs %v; want all 6 skipped", r.DataIDs)
	}
}

// An interrupted visit's data IDs are interrupted, to be run again.
func TestDataIDInterruptedWithItsVisit(t *testing.T) {
	policy := testHead + `stages:
  - {name: first, type: test-record}
  - {name: hook, type: test-hook}
`
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, end, err := runYAMLCtx(t, ctx, policy, []string{"1"}, func(*RunOptions) {
		sink.hook = func(*Context, *Clipboard) error { cancel(); return nil }
	})
	if !errors.Is(err, ErrInterrupted) {
		t.Errorf("err = %v; want ErrInterrupted", err)
	}
	r := end.results["1"]
	if r.Outcome != VisitInterrupted || len(r.DataIDs) != 6 || r.DataIDs["ccd=3"] != VisitInterrupted {
		t.Errorf("visit 1 %s, data IDs %v; want it and all 6 interrupted", r.Outcome, r.DataIDs)
	}
}
