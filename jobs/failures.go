package jobs

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/state"
)

// Failure is one recorded failure of a run: a data ID that failed at a
// stage on a slice (Slice 1 and up), or a failed visit as a whole (Slice
// 0, no data ID: the error the Pipeline ended it with, its own or the
// slices' in sum), with its error.
type Failure struct {
	Pipeline string `json:"pipeline,omitempty"` // the step's name in a run of several
	Visit    string `json:"visit"`
	Attempt  int    `json:"attempt"`
	Stage    string `json:"stage,omitempty"`
	Slice    int    `json:"slice"`
	DataID   string `json:"dataId,omitempty"`
	Error    string `json:"error"`
	// Capture is the failed call's freeze-dried input (`dpsbatch replay`
	// runs it again), "" when none was written.
	Capture string `json:"capture,omitempty"`
}

// Failures lists the recorded failures of the run in dir, step by step:
// first each failed visit's own error (as the Pipeline ended it), then
// every slice failure in the order recorded; at most limit of each per
// step (0: all). Slice failures of visits that were retried and later
// done are listed too: they happened.
func Failures(dir string, limit int) ([]Failure, error) {
	return fromEachStep(dir, func(d rundir.StepDir, st *state.Store) ([]Failure, error) {
		return stepFailures(d, st, limit)
	})
}

// stepFailures reads one step's failures from its state file.
func stepFailures(d rundir.StepDir, st *state.Store, limit int) ([]Failure, error) {
	failed, err := st.Visits(state.Failed, limit)
	if err != nil {
		return nil, err
	}
	slices, err := st.Failures(limit)
	if err != nil {
		return nil, err
	}
	var out []Failure
	for _, v := range failed {
		out = append(out, Failure{Pipeline: d.Name, Visit: v.ID, Attempt: v.Attempts, Error: v.Err, Capture: inRun(d.Layout, v.Capture)})
	}
	for _, f := range slices {
		out = append(out, Failure{Pipeline: d.Name, Visit: f.Visit, Attempt: f.Attempt, Stage: f.Stage, Slice: f.Slice,
			DataID: f.DataID, Error: f.Err, Capture: inRun(d.Layout, f.Capture)})
	}
	return out, nil
}

// inRun is a capture's path, which the state file keeps relative to the
// step's directory; "" stays "".
func inRun(l rundir.Layout, capture string) string {
	if capture == "" {
		return ""
	}
	return filepath.Join(l.Dir, capture)
}

// String is the failure as status --failures prints it: one line (more,
// indented, when the error holds the end of a program's stderr), and one
// naming its capture when it has one.
func (f Failure) String() string {
	what := "visit " + f.Visit
	if f.Pipeline != "" {
		what = f.Pipeline + " " + what
	}
	err := strings.ReplaceAll(f.Error, "\n", "\n      ")
	line := fmt.Sprintf("%s (attempt %d) stage %s, slice %d, data ID %s: %s", what, f.Attempt, f.Stage, f.Slice, f.DataID, err)
	if f.Slice == 0 {
		line = fmt.Sprintf("%s (attempt %d) failed: %s", what, f.Attempt, err)
	}
	if f.Capture != "" {
		line += "\n      capture: " + f.Capture + "  (dpsbatch replay " + f.Capture + ")"
	}
	return line
}
