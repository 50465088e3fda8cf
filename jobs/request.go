package jobs

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/internal/slurmtime"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/state"
)

// RequestChange is what resume changes in a run's request for its next
// job and those after it (resume --partition, --slices, --mem-per-slice,
// --time); a zero field keeps the run's value.
type RequestChange struct {
	Partition     string
	Slices        int
	MemPerSliceMB int
	Time          time.Duration
}

// IsZero reports whether c changes nothing.
func (c RequestChange) IsZero() bool { return c == RequestChange{} }

// flags is c as the resume flags that ask for it, for errors.
func (c RequestChange) flags() string {
	var f []string
	if c.Partition != "" {
		f = append(f, "--partition "+c.Partition)
	}
	if c.Slices != 0 {
		f = append(f, fmt.Sprintf("--slices %d", c.Slices))
	}
	if c.MemPerSliceMB != 0 {
		f = append(f, fmt.Sprintf("--mem-per-slice %dM", c.MemPerSliceMB))
	}
	if c.Time != 0 {
		f = append(f, "--time "+slurmtime.Format(c.Time))
	}
	return strings.Join(f, " ")
}

// check refuses a change that makes no sense whatever the partition: a
// negative value, or new slices for a run whose steps are in folders of
// their own, each with its slices (a production's, set in its file).
func (c RequestChange) check(l rundir.Layout, set rundir.Settings) error {
	switch {
	case c.Slices < 0 || c.MemPerSliceMB < 0 || c.Time < 0:
		return fmt.Errorf("%w: resume %s: values must be positive", conf.ErrInvalid, c.flags())
	case c.Slices > 0 && !rundir.StepIn(l, set):
		return fmt.Errorf("%w: resume --slices: the run's pipelines each have their own slices (in its production file)",
			conf.ErrInvalid)
	}
	return nil
}

// apply is the request r changed by c.
func (c RequestChange) apply(r rundir.Request) rundir.Request {
	if c.Partition != "" {
		r.Partition = c.Partition
	}
	if c.Slices > 0 {
		r.Slices = c.Slices
	}
	if c.MemPerSliceMB > 0 {
		r.MemPerSliceMB = c.MemPerSliceMB
	}
	if c.Time > 0 {
		r.Time = c.Time
	}
	return r
}

// explain names the flags of c in a planning error err (a limit of the
// partition, an unknown partition): bad input the user typed.
func (c RequestChange) explain(err error) error {
	if err == nil || c.IsZero() || !errors.Is(err, conf.ErrInvalid) {
		return err
	}
	return fmt.Errorf("jobs: resume %s: %w", c.flags(), err)
}

// recordSettings keeps what the next job of the run whose steps are in
// rj asks for (rj.request), and its growth (how many more jobs its jobs
// may submit, and why it grew), in the run's state file, and the request
// in each step's own too (a step in a folder of its own keeps its
// slices): the next resume plans with them and status shows them.
func recordSettings(l rundir.Layout, rj runJob) error {
	if err := updateSettings(l, func(set *rundir.Settings) {
		set.Request, set.AutoGrow = rj.request, rj.set.AutoGrow
		if rj.grown != "" {
			set.Grown = rj.grown
		}
	}); err != nil {
		return err
	}
	for _, st := range rj.steps {
		if st.l == l {
			continue
		}
		if err := updateSettings(st.l, func(set *rundir.Settings) {
			slices := set.Request.Slices
			set.Request = rj.request
			set.Request.Slices = slices
		}); err != nil {
			return err
		}
	}
	return nil
}

// updateSettings changes the settings of the state file in l with
// change, writing them only when they changed.
func updateSettings(l rundir.Layout, change func(*rundir.Settings)) error {
	_, set, err := rundir.ReadSettings(l)
	if err != nil {
		return err
	}
	before, err := rundir.EncodeSettings(set)
	if err != nil {
		return err
	}
	change(&set)
	js, err := rundir.EncodeSettings(set)
	if err != nil || js == before {
		return err
	}
	st, err := state.Open(l.State())
	if err != nil {
		return err
	}
	defer st.Close()
	return st.SetSettings(js)
}

// RunRequest is what a run's next job asks for, as status shows it: the
// run's request, which resume may have changed or grown.
type RunRequest struct {
	Slices        int           `json:"slices,omitempty"` // 0: the policy's
	MemPerSliceMB int           `json:"memPerSliceMB,omitempty"`
	Time          time.Duration `json:"time,omitempty"` // 0: the partition's limit
	// GrowLeft, with growth on, is how many more jobs the run's jobs may
	// submit themselves; Grown says why the request last grew.
	GrowLeft int    `json:"growLeft,omitempty"`
	Grown    string `json:"grown,omitempty"`
}

// runRequest is the request in set as status shows it.
func runRequest(set rundir.Settings) RunRequest {
	r := set.Request
	return RunRequest{Slices: r.Slices, MemPerSliceMB: r.MemPerSliceMB, Time: r.Time, GrowLeft: set.AutoGrow, Grown: set.Grown}
}
