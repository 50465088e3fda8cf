package stagerun

import (
	"fmt"
	"slices"

	"github.com/dpsbatch/dpsbatch/harness"
)

// The stage types Run puts before and after a case's stages.
const (
	seedStage = "stagerun-seed"
	keepStage = "stagerun-keep"
)

func init() {
	harness.RegisterStage(harness.Type{
		Name:     seedStage,
		Doc:      "puts a case's clipboard items on each data ID's clipboard and the Pipeline's (package stagerun: dpsbatch replay, the stage tester); not for policies",
		Settings: []harness.Setting{{Key: "produces", Kind: harness.Strings, Doc: "the keys it puts"}},
		New: func(s harness.Settings) (harness.Stage, error) {
			return seed{produces: s.Strings("produces")}, nil
		},
	})
	harness.RegisterStage(harness.Type{
		Name: keepStage,
		Doc:  "keeps each clipboard and the Pipeline's after a case's stages (package stagerun: dpsbatch replay, the stage tester); not for policies",
		New:  func(harness.Settings) (harness.Stage, error) { return keep{}, nil },
	})
}

// caseOf is the running case of the call's run.
func caseOf(cx *harness.Context) (*caseState, error) {
	cs, ok := cases.Load(cx.RunID())
	if !ok {
		return nil, fmt.Errorf("stagerun: run %q is not a case of stagerun.Run", cx.RunID())
	}
	return cs.(*caseState), nil
}

// seed puts Case.Pipeline on the Pipeline's clipboard, and
// Case.Clipboard and Case.ClipboardFor on each data ID's; the keys of
// Case.Shared as shared items.
type seed struct{ produces []string }

func (s seed) Keys() (needs, produces []string) { return nil, s.produces }

func (seed) Preprocess(cx *harness.Context, cb *harness.Clipboard) error {
	cs, err := caseOf(cx)
	if err != nil {
		return err
	}
	put(cb, cs.c.Pipeline, cs.c.Shared)
	return nil
}

func (seed) Process(cx *harness.Context, cb *harness.Clipboard) error {
	cs, err := caseOf(cx)
	if err != nil {
		return err
	}
	put(cb, cs.c.Clipboard, cs.c.Shared)
	put(cb, cs.c.ClipboardFor[cb.DataID().String()], cs.c.Shared)
	return nil
}

// put puts items on cb, those named in shared as shared items.
func put(cb *harness.Clipboard, items map[string]any, shared []string) {
	for k, v := range items {
		if slices.Contains(shared, k) {
			cb.PutShared(k, v)
		} else {
			cb.Put(k, v)
		}
	}
}

// keep keeps a copy of each clipboard that came through the stages,
// and of the Pipeline's after them.
type keep struct{}

func (keep) Process(cx *harness.Context, cb *harness.Clipboard) error {
	cs, err := caseOf(cx)
	if err != nil {
		return err
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.clipboards[cb.DataID().String()] = cb.Clone()
	return nil
}

func (keep) Postprocess(cx *harness.Context, cb *harness.Clipboard) error {
	cs, err := caseOf(cx)
	if err != nil {
		return err
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.pipeline = cb.Clone()
	return nil
}
