package stagetest

import (
	"fmt"

	"github.com/dpsbatch/dpsbatch/harness"
)

func init() {
	harness.RegisterStage(harness.Type{
		Name:     "stagetest-seed",
		Doc:      "puts a test case's clipboard items on each data ID's clipboard (package stagetest)",
		Settings: []harness.Setting{{Key: "produces", Kind: harness.Strings, Doc: "the keys it puts"}},
		New: func(s harness.Settings) (harness.Stage, error) {
			return seed{produces: s.Strings("produces")}, nil
		},
	})
	harness.RegisterStage(harness.Type{
		Name: "stagetest-capture",
		Doc:  "keeps each clipboard and the Pipeline's for a test case (package stagetest)",
		New:  func(harness.Settings) (harness.Stage, error) { return capture{}, nil },
	})
}

// caseOf is the running case of the call's run.
func caseOf(cx *harness.Context) (*caseState, error) {
	cs, ok := cases.Load(cx.RunID())
	if !ok {
		return nil, fmt.Errorf("stagetest: run %q is not a case of stagetest.Run", cx.RunID())
	}
	return cs.(*caseState), nil
}

// seed puts Case.Clipboard and Case.ClipboardFor on each clipboard.
type seed struct{ produces []string }

func (s seed) Keys() (needs, produces []string) { return nil, s.produces }

func (seed) Process(cx *harness.Context, cb *harness.Clipboard) error {
	cs, err := caseOf(cx)
	if err != nil {
		return err
	}
	for k, v := range cs.c.Clipboard {
		cb.Put(k, v)
	}
	for k, v := range cs.c.ClipboardFor[cb.DataID().String()] {
		cb.Put(k, v)
	}
	return nil
}

// capture keeps a copy of each clipboard that came through the stages,
// and of the Pipeline's after them.
type capture struct{}

func (capture) Process(cx *harness.Context, cb *harness.Clipboard) error {
	cs, err := caseOf(cx)
	if err != nil {
		return err
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.clipboards[cb.DataID().String()] = cb.Clone()
	return nil
}

func (capture) Postprocess(cx *harness.Context, cb *harness.Clipboard) error {
	cs, err := caseOf(cx)
	if err != nil {
		return err
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.pipeline = cb.Clone()
	return nil
}
