package state

import (
	"reflect"
	"testing"
)

// A visit's declared output files are recorded with its end, with their
// sizes and the attempt that made them; a later attempt that makes a file
// again replaces its row and keeps the others.
func TestOutputsRecorded(t *testing.T) {
	s, _ := newRun(t, "v1")
	attempt := func(n int, st VisitState, outputs ...Output) {
		t.Helper()
		if err := s.VisitStarted("v1", "j1", at(n)); err != nil {
			t.Fatal(err)
		}
		s.OutputsMade("v1", outputs)
		if err := s.VisitEnded("v1", st, "", at(n+1)); err != nil {
			t.Fatal(err)
		}
	}
	attempt(1, Failed, Output{DataID: "ccd=1", Path: "/r/out/ccd1.fits", Size: 100}, Output{DataID: "ccd=2", Path: "/r/out/ccd2.fits", Size: 200})
	if _, _, err := s.Retry(0); err != nil {
		t.Fatal(err)
	}
	attempt(3, Done, Output{DataID: "ccd=2", Path: "/r/out/ccd2.fits", Size: 250})
	got, err := s.Outputs("v1")
	if err != nil {
		t.Fatal(err)
	}
	want := []Output{{DataID: "ccd=1", Path: "/r/out/ccd1.fits", Size: 100, Attempt: 1}, {DataID: "ccd=2", Path: "/r/out/ccd2.fits", Size: 250, Attempt: 2}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("outputs of v1: %+v; want %+v", got, want)
	}
}
