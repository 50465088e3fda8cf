package jobs

import (
	"fmt"

	"github.com/dpsbatch/dpsbatch/state"
)

// maxFailedDataIDs bounds the failed data IDs a status lists per state
// file (status --failures lists every one).
const maxFailedDataIDs = 20

// DataIDFailure is a data ID whose latest attempt failed: its visit may
// be done (a failure rule that lets a visit carry on), yet the data ID
// is not, and resume runs it again.
type DataIDFailure struct {
	Pipeline string `json:"pipeline,omitempty"` // the step's name in a run of several
	Visit    string `json:"visit"`
	DataID   string `json:"dataId"`
	Attempt  int    `json:"attempt"`
	Stage    string `json:"stage"`
	Error    string `json:"error"` // a program's ends with the end of its stderr
}

// readDataIDs sets rs's data ID counts and its first failed data IDs
// from st.
func readDataIDs(st *state.Store, rs *RunStatus) error {
	counts, err := st.DataIDCounts()
	if err != nil {
		return err
	}
	failed, err := st.DataIDsWith(state.DataIDFailed, maxFailedDataIDs)
	if err != nil {
		return err
	}
	rs.DataIDs = counts
	for _, f := range failed {
		rs.FailedDataIDs = append(rs.FailedDataIDs, DataIDFailure{Visit: f.Visit, DataID: f.DataID, Attempt: f.Attempt, Stage: f.Stage, Error: f.Err})
	}
	return nil
}

// sumDataIDs adds the data IDs of a run's steps in folders of their own
// to the run's, each failed one named with its step.
func sumDataIDs(rs *RunStatus) {
	for _, ps := range rs.Pipelines {
		for o, n := range ps.DataIDs {
			if rs.DataIDs == nil {
				rs.DataIDs = map[string]int{}
			}
			rs.DataIDs[o] += n
		}
		for _, f := range ps.FailedDataIDs {
			f.Pipeline = ps.Pipeline
			rs.FailedDataIDs = append(rs.FailedDataIDs, f)
		}
	}
}

// DataIDCounts is "3 done, 1 failed" over the data IDs' outcomes, in a
// fixed order; "" when no visit recorded any.
func (rs RunStatus) DataIDCounts() string {
	s := ""
	for _, o := range []string{state.DataIDDone, state.DataIDFailed, state.DataIDInterrupted, state.DataIDSkipped} {
		if n := rs.DataIDs[o]; n > 0 {
			if s != "" {
				s += ", "
			}
			s += fmt.Sprintf("%d %s", n, o)
		}
	}
	return s
}

// String is the failed data ID with its error (which may run over
// several lines: the end of a program's stderr), as status prints it.
func (f DataIDFailure) String() string {
	what := "visit " + f.Visit
	if f.Pipeline != "" {
		what = f.Pipeline + " " + what
	}
	return fmt.Sprintf("%s data ID %s (attempt %d) stage %s: %s", what, f.DataID, f.Attempt, f.Stage, f.Error)
}

// failedDataIDsNote is "; 2 data IDs failed" when some did, else "".
func failedDataIDsNote(rs RunStatus) string {
	if n := rs.DataIDs[state.DataIDFailed]; n > 0 {
		return fmt.Sprintf("; %d data IDs failed", n)
	}
	return ""
}
