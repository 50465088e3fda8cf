package slurmrest

import (
	"context"
	"fmt"
	"time"
)

// Usage is what accounting recorded a job used: its elapsed time, the
// memory it asked for, and each step's time, CPU time and peak memory
// (FinishedUsage).
type Usage struct {
	JobID string
	// State is the job's state in accounting; Started and Ended are zero
	// until they happened.
	State          string
	Started, Ended time.Time
	Elapsed        time.Duration
	CPUs           int   // allocated
	ReqMemMB       int64 // the memory the job asked for, in all; 0: none recorded
	Steps          []StepUsage
}

// StepUsage is one step of a job (batch, extern, 0, 1, ...) as accounting
// recorded it.
type StepUsage struct {
	ID, Name string
	State    string
	Elapsed  time.Duration
	// CPU is the user and system time of the step's tasks, to the
	// microsecond.
	CPU   time.Duration
	Tasks int
	// MaxRSS is the largest resident memory of one task, in bytes, and
	// the node it ran on; 0 when the step was not sampled.
	MaxRSS     int64
	MaxRSSNode string
}

// FinishedUsage asks accounting about job id with its steps; ErrNoJob
// when it has none, ErrNoAccounting when the server does not serve
// accounting. A job Slurm requeued is its latest start.
func (c *Client) FinishedUsage(ctx context.Context, id string) (Usage, error) {
	if err := checkID(id); err != nil {
		return Usage{}, err
	}
	us, err := get(ctx, c, true, "/job/"+id, nil, func(a *api) func([]byte) ([]Usage, error) { return a.dbUsage })
	if isNothingFound(err) || err == nil && len(us) == 0 {
		return Usage{}, fmt.Errorf("%w: %s", ErrNoJob, id)
	}
	if err != nil {
		return Usage{}, err
	}
	return us[len(us)-1], nil
}
