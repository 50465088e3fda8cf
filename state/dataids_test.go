package state

import (
	"reflect"
	"testing"
)

// Each data ID's outcome is recorded with its visit's end, a failed one
// with its stage and error; a done visit with a failed data ID (a rule
// that let the visit carry on) is counted, listed, and run again by
// Retry; the next attempt's rows replace the failed ones and keep those
// it did not run.
func TestDataIDOutcomes(t *testing.T) {
	s, _ := newRun(t, "v1", "v2")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	attempt := func(visit string, st VisitState, failed string, outcomes ...DataIDOutcome) {
		t.Helper()
		must(s.VisitStarted(visit, "j1", at(1)))
		if failed != "" {
			must(s.SliceFailed(visit, "measure", 2, failed, "exec: sh exited with status 1; stderr ends:\nbad pixels", ""))
		}
		s.DataIDsEnded(visit, outcomes)
		must(s.VisitEnded(visit, st, "", at(2)))
	}
	attempt("v1", Done, "ccd=2", DataIDOutcome{DataID: "ccd=1", Outcome: DataIDDone}, DataIDOutcome{DataID: "ccd=2", Outcome: DataIDFailed})
	attempt("v2", Done, "", DataIDOutcome{DataID: "ccd=1", Outcome: DataIDDone}, DataIDOutcome{DataID: "ccd=2", Outcome: DataIDDone})

	counts, err := s.DataIDCounts()
	must(err)
	if want := map[string]int{DataIDDone: 3, DataIDFailed: 1}; !reflect.DeepEqual(counts, want) {
		t.Errorf("counts %v; want %v", counts, want)
	}
	failed, err := s.DataIDsWith(DataIDFailed, 0)
	must(err)
	want := []DataIDOutcome{{Visit: "v1", DataID: "ccd=2", Outcome: DataIDFailed, Attempt: 1, Stage: "measure",
		Err: "exec: sh exited with status 1; stderr ends:\nbad pixels"}}
	if !reflect.DeepEqual(failed, want) {
		t.Errorf("failed data IDs %+v; want %+v", failed, want)
	}
	if n, err := s.DoneWithDataIDsLeft(); err != nil || n != 1 {
		t.Errorf("done visits with data IDs left: %d, %v; want 1", n, err)
	}
	if _, exhausted, err := s.Retry(1); err != nil || len(exhausted) != 1 || exhausted[0] != "v1" {
		t.Errorf("Retry(1): exhausted %v, %v; want v1, whose failed data ID is left at the limit", exhausted, err)
	}
	retried, _, err := s.Retry(0)
	must(err)
	if retried != 1 {
		t.Errorf("retried %d; want v1", retried)
	}
	if st, _ := s.VisitState("v1"); st != Pending {
		t.Errorf("v1 is %s after Retry; want pending", st)
	}
	done, err := s.DoneDataIDs("v1")
	must(err)
	if !reflect.DeepEqual(done, []string{"ccd=1"}) {
		t.Errorf("done data IDs of v1: %v; want ccd=1", done)
	}

	attempt("v1", Done, "", DataIDOutcome{DataID: "ccd=2", Outcome: DataIDDone})
	counts, err = s.DataIDCounts()
	must(err)
	if want := map[string]int{DataIDDone: 4}; !reflect.DeepEqual(counts, want) {
		t.Errorf("counts after the second attempt %v; want %v", counts, want)
	}
	if n, _ := s.DoneWithDataIDsLeft(); n != 0 {
		t.Errorf("done visits with data IDs left: %d; want 0", n)
	}
}
