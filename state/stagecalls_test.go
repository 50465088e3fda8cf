package state

import (
	"reflect"
	"testing"
	"time"
)

// StageCalls returns each stage call of each ended visit attempt, in the
// order recorded, and a reader sees them too.
func TestStageCalls(t *testing.T) {
	s, path := newRun(t, "a", "b", "c")
	must(t, s.VisitStarted("a", "j1", at(0)))
	must(t, s.StageDone("a", "isr", 2*time.Second))
	must(t, s.StageDone("a", "measure", 3*time.Second))
	must(t, s.VisitEnded("a", Done, "", at(5)))
	must(t, s.VisitStarted("b", "j1", at(6)))
	must(t, s.StageDone("b", "isr", time.Second))
	must(t, s.VisitEnded("b", Failed, "boom", at(7)))
	must(t, s.VisitStarted("b", "j2", at(8)))
	must(t, s.StageDone("b", "isr", 4*time.Second))
	must(t, s.VisitEnded("b", Done, "", at(12)))
	must(t, s.VisitStarted("c", "j2", at(13))) // not ended: nothing recorded
	must(t, s.StageDone("c", "isr", time.Hour))

	want := []StageCall{
		{"a", 1, "isr", 2 * time.Second}, {"a", 1, "measure", 3 * time.Second},
		{"b", 1, "isr", time.Second}, {"b", 2, "isr", 4 * time.Second},
	}
	r, err := OpenReadOnly(path)
	must(t, err)
	defer r.Close()
	got, err := r.StageCalls(0)
	must(t, err)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("StageCalls(0) = %+v, want %+v", got, want)
	}
	got, err = r.StageCalls(2)
	must(t, err)
	if !reflect.DeepEqual(got, want[:2]) {
		t.Errorf("StageCalls(2) = %+v, want %+v", got, want[:2])
	}
}
