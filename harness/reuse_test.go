package harness

import (
	"errors"
	"fmt"
	"testing"
)

// markStage leaves marks of its visit on every clipboard it sees, plain
// and shared, under keys named after the stage, and fails a call that
// finds one already there or a visitId that is not its visit's: with one
// visit in flight the harness empties a clipboard its visit released and
// reuses it for the next, and nothing of the visit before may show
// through.
type markStage struct{}

func (markStage) Preprocess(cx *Context, cb *Clipboard) error {
	if err := unmarked(cx, cb, "pipe-", "sliceShared-"); err != nil {
		return err
	}
	cb.Put("pipe-"+cx.Stage(), cx.Visit())
	cb.PutShared("pipeShared-"+cx.Stage(), cx.Visit())
	return nil
}

func (markStage) Process(cx *Context, cb *Clipboard) error {
	if err := unmarked(cx, cb, "slice-", "sliceShared-"); err != nil {
		return err
	}
	if v, _ := cb.Get("pipeShared-" + cx.Stage()); v != cx.Visit() {
		return fmt.Errorf("visit %s: the shared item from the Pipeline is %v", cx.Visit(), v)
	}
	if cb.DataID().String() != cx.DataID().String() {
		return fmt.Errorf("visit %s: the clipboard of data ID %s in the call for %s", cx.Visit(), cb.DataID(), cx.DataID())
	}
	cb.Put("slice-"+cx.Stage(), cx.Visit())
	cb.PutShared("sliceShared-"+cx.Stage(), cx.Visit())
	sink.add(cx.Visit(), cx.Stage()+" "+cx.DataID().String())
	return nil
}

func (markStage) Postprocess(cx *Context, cb *Clipboard) error {
	got, _ := cb.Get("sliceShared-" + cx.Stage())
	m, _ := got.(map[string]any)
	for id, v := range m {
		vs, several := v.([]any) // a data ID whose clones each sent one
		if !several {
			vs = []any{v}
		}
		for _, x := range vs {
			if x != cx.Visit() {
				return fmt.Errorf("visit %s: data ID %s sent back %v", cx.Visit(), id, v)
			}
		}
	}
	return nil
}

// unmarked fails when cb holds an item under one of the keys this
// stage's marks use, or another visit's ID.
func unmarked(cx *Context, cb *Clipboard, prefixes ...string) error {
	for _, p := range prefixes {
		if v, ok := cb.Get(p + cx.Stage()); ok {
			return fmt.Errorf("visit %s: the clipboard holds %s%s=%v from an earlier visit", cx.Visit(), p, cx.Stage(), v)
		}
	}
	if v, _ := cb.Get(KeyVisit); v != cx.Visit() {
		return fmt.Errorf("visit %s: the clipboard's %s is %v", cx.Visit(), KeyVisit, v)
	}
	return nil
}

func init() {
	RegisterStage(Type{Name: "test-mark", New: func(Settings) (Stage, error) { return markStage{}, nil }})
}

// Clipboards a visit released are reused by the next with one visit in
// flight (visitClipboard, visitClipboards): each visit still starts from
// clipboards holding only its own items, on the Pipeline and on the
// Slices. Two data IDs a slice; a data ID failing in one visit, so that
// the next starts with more clipboards than the one before ended with; a
// stage that emits clones between two marking stages. Each visit's
// DataIDs says what became of its own data IDs.
func TestReusedClipboardsStartEmpty(t *testing.T) {
	_, end, err := runYAML(t, testHead+`failure: {visit: never}
stages:
  - {name: fail, type: test-fail, settings: {visit: "2", dataId: "ccd=3"}}
  - {name: mark, type: test-mark}
  - {name: split, type: test-split, settings: {n: 2}}
  - {name: mark2, type: test-mark}
`, []string{"1", "2", "3", "4"})
	if !errors.Is(err, ErrVisitsFailed) {
		t.Errorf("run: %v; want ErrVisitsFailed (data ID ccd=3 of visit 2)", err)
	}
	for _, v := range []string{"1", "2", "3", "4"} {
		r := end.results[v]
		ids := 6
		if v == "2" {
			ids = 5
		}
		if r.Outcome != VisitDone {
			t.Errorf("visit %s: %s: %s", v, r.Outcome, r.Err)
		}
		if n := len(sink.sorted(v)); n != 3*ids {
			t.Errorf("visit %s: the marking stages ran %d times, want %d:\n%v", v, n, 3*ids, sink.sorted(v))
		}
		done := 0
		for _, o := range r.DataIDs {
			if o == VisitDone {
				done++
			}
		}
		if len(r.DataIDs) != 6 || done != ids || v == "2" && r.DataIDs["ccd=3"] != VisitFailed {
			t.Errorf("visit %s: data ID outcomes %v", v, r.DataIDs)
		}
	}
}
