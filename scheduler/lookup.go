package scheduler

import (
	"context"
	"errors"
)

// Lookup asks squeue about ids, then accounting (History) about those
// squeue no longer knows. A job neither knows is missing from the answer.
// Without a backend it answers nil: Slurm was not asked.
func Lookup(ctx context.Context, b Backend, ids []string) (map[string]Job, error) {
	if b == nil {
		return nil, nil // not asked: nothing known of any job
	}
	known := map[string]Job{}
	if len(ids) == 0 {
		return known, nil
	}
	q, err := b.Jobs(ctx, ids)
	if err != nil {
		return nil, err
	}
	var gone []string
	for _, id := range ids {
		if j, ok := q[id]; ok {
			known[id] = j
		} else {
			gone = append(gone, id)
		}
	}
	if len(gone) > 0 {
		h, err := b.History(ctx, gone)
		if err != nil && !errors.Is(err, ErrNoAccounting) {
			return nil, err
		}
		for id, j := range h {
			known[id] = j
		}
	}
	return known, nil
}

// Running reports whether a job in Slurm's state s may have work in
// flight: it is RUNNING, or SUSPENDED (its processes stopped mid-work). A
// job pending again after a requeue, completing or ended has none.
func Running(s string) bool { return s == "RUNNING" || s == "SUSPENDED" }

// StartEnded reports whether a start of a job, as accounting lists it,
// has ended: Slurm's REQUEUED (a live state of the job itself, but the
// end of the start) or any ending state.
func (j Job) StartEnded() bool { return j.State == "REQUEUED" || !j.Live() }
