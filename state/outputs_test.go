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
	want := []Output{{Visit: "v1", DataID: "ccd=1", Path: "/r/out/ccd1.fits", Size: 100, Attempt: 1}, {Visit: "v1", DataID: "ccd=2", Path: "/r/out/ccd2.fits", Size: 250, Attempt: 2}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("outputs of v1: %+v; want %+v", got, want)
	}
}

// RunOutputs lists every visit's outputs in the visits' order (the order
// they were added to the run, not their IDs'), then by data ID and path,
// and stops at the limit.
func TestRunOutputs(t *testing.T) {
	s, _ := newRun(t, "v9", "v10", "v2")
	end := func(v string, n int, outputs ...Output) {
		t.Helper()
		if err := s.VisitStarted(v, "j1", at(n)); err != nil {
			t.Fatal(err)
		}
		s.OutputsMade(v, outputs)
		if err := s.VisitEnded(v, Done, "", at(n+1)); err != nil {
			t.Fatal(err)
		}
	}
	end("v2", 1, Output{DataID: "ccd=2", Path: "/o/v2/b", Size: 2}, Output{DataID: "ccd=1", Path: "/o/v2/a", Size: 1})
	end("v9", 3, Output{DataID: "ccd=1", Path: "/o/v9/a", Size: 9})
	end("v10", 5)
	got, err := s.RunOutputs(0)
	if err != nil {
		t.Fatal(err)
	}
	want := []Output{
		{Visit: "v9", DataID: "ccd=1", Path: "/o/v9/a", Size: 9, Attempt: 1},
		{Visit: "v2", DataID: "ccd=1", Path: "/o/v2/a", Size: 1, Attempt: 1},
		{Visit: "v2", DataID: "ccd=2", Path: "/o/v2/b", Size: 2, Attempt: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("outputs of the run: %+v\nwant %+v", got, want)
	}
	if got, err := s.RunOutputs(2); err != nil || !reflect.DeepEqual(got, want[:2]) {
		t.Errorf("the first 2 outputs of the run: %+v, %v\nwant %+v", got, err, want[:2])
	}
}
