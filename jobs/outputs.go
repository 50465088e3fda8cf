package jobs

import (
	"fmt"

	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/state"
)

// Output is a file a data ID's stage declared it writes (an exec stage's
// outputs) and made, as the run recorded it at the visit's end: its
// absolute path, its size once the program had ended, and the visit's
// attempt that made it.
type Output struct {
	Pipeline string `json:"pipeline,omitempty"` // the step's name in a run of several
	Visit    string `json:"visit"`
	DataID   string `json:"dataId"`
	Path     string `json:"path"`
	Size     int64  `json:"size"`
	Attempt  int    `json:"attempt"`
}

// Outputs lists the declared output files the run in dir recorded, step
// by step, each step's in its visits' order, then by data ID and path; at
// most limit per step (0: all). A data ID that failed before a file has
// no row for it; one made again by a later attempt shows that attempt.
func Outputs(dir string, limit int) ([]Output, error) {
	return fromEachStep(dir, func(d rundir.StepDir, st *state.Store) ([]Output, error) {
		made, err := st.RunOutputs(limit)
		if err != nil {
			return nil, err
		}
		out := make([]Output, 0, len(made))
		for _, o := range made {
			out = append(out, Output{Pipeline: d.Name, Visit: o.Visit, DataID: o.DataID, Path: o.Path, Size: o.Size, Attempt: o.Attempt})
		}
		return out, nil
	})
}

// String is the output as status --outputs prints it: one line.
func (o Output) String() string {
	what := "visit " + o.Visit
	if o.Pipeline != "" {
		what = o.Pipeline + " " + what
	}
	return fmt.Sprintf("%s (attempt %d) data ID %s: %s (%d bytes)", what, o.Attempt, o.DataID, o.Path, o.Size)
}
