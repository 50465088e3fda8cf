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
// negative value, or new slices for a run whose steps each have their
// own (a production's are set in its file).
func (c RequestChange) check(set rundir.Settings) error {
	switch {
	case c.Slices < 0 || c.MemPerSliceMB < 0 || c.Time < 0:
		return fmt.Errorf("%w: resume %s: values must be positive", conf.ErrInvalid, c.flags())
	case c.Slices > 0 && len(set.Pipelines) > 0:
		return fmt.Errorf("%w: resume --slices: the run is a production, whose pipelines each have their slices (in its production file)",
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

// recordRequest keeps req as the request of the run whose steps are in
// rj, in the run's state file and in each step's own (a step in a folder
// of its own keeps its slices), so that the next resume plans with it
// and status shows it. Nothing is written when the request is the one
// recorded.
func recordRequest(l rundir.Layout, rj runJob, req rundir.Request) error {
	if req == rj.set.Request {
		return nil
	}
	if err := setRequest(l, req); err != nil {
		return err
	}
	for _, st := range rj.steps {
		if st.l == l {
			continue
		}
		r := req
		r.Slices = st.set.Request.Slices
		if err := setRequest(st.l, r); err != nil {
			return err
		}
	}
	return nil
}

// setRequest writes req into the settings of the state file in l.
func setRequest(l rundir.Layout, req rundir.Request) error {
	_, set, err := rundir.ReadSettings(l)
	if err != nil {
		return err
	}
	set.Request = req
	js, err := rundir.EncodeSettings(set)
	if err != nil {
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
}

// runRequest is the request in set as status shows it.
func runRequest(set rundir.Settings) RunRequest {
	r := set.Request
	return RunRequest{Slices: r.Slices, MemPerSliceMB: r.MemPerSliceMB, Time: r.Time}
}
