package harness_test

// The stage of README.md's "Writing a stage in Go", compiled with the
// tests: TestReadmeStageExample checks that the README shows this file from
// its imports on.

import (
	"fmt"

	"github.com/dpsbatch/dpsbatch/harness"
)

type scale struct{ factor float64 }

// Process runs on every Slice, once per clipboard (data ID) of the visit.
func (s scale) Process(cx *harness.Context, cb *harness.Clipboard) error {
	v, ok := cb.Get("mean")
	if !ok {
		return fmt.Errorf("no mean")
	}
	cx.Logger().Debug("scaling", "mean", v)      // carries run, visit, stage, slice, dataId
	cb.PutShared("scaled", v.(float64)*s.factor) // shared: on the Pipeline by data ID
	return nil
}

func init() {
	harness.RegisterStage(harness.Type{
		Name:     "scale",
		Doc:      "multiplies the mean by a factor",
		Settings: []harness.Setting{{Key: "factor", Kind: harness.Float, Default: 1.0, Doc: "the factor"}},
		Needs:    []string{"mean"},
		Produces: []string{"scaled"},
		New: func(s harness.Settings) (harness.Stage, error) {
			return scale{s.Float("factor")}, nil
		},
	})
}
