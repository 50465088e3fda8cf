package jobs

import (
	"path/filepath"

	"github.com/dpsbatch/dpsbatch/capture"
	"github.com/dpsbatch/dpsbatch/input"
	"github.com/dpsbatch/dpsbatch/rundir"
)

// writeFreezeDry writes each step's stages to capture at entry into its
// folder of the new run directory tl, where its ranks read them.
func writeFreezeDry(tl rundir.Layout, in *input.Input, names []string) error {
	for _, st := range in.Steps {
		if err := capture.WriteStages(filepath.Join(tl.Dir, st.Dir), st.FreezeDry(names)); err != nil {
			return err
		}
	}
	return nil
}
