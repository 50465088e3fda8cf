// Package retry runs an operation again while it fails for a reason that
// passes, after growing pauses, within a bound on the total wait. It knows
// nothing of what the operation is or which failures pass: the caller
// says (Policy.Do's again). Used by the scheduler's Slurm command runner
// and its slurmrestd client.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// MaxPause is the longest pause between two tries.
const MaxPause = 8 * time.Second

// Policy says how long an operation is tried again.
type Policy struct {
	// Bound is the most from the first try to the last: a try that would
	// start after it is not made. Zero or less: no retries.
	Bound time.Duration
	// First is the first pause; each next one is twice the last, up to
	// MaxPause, each with up to a quarter more at random so that many
	// clients do not come back at once.
	First time.Duration
}

// Do calls try until it returns nil, an error for which again reports
// false, or the next pause would end past the bound or the context's end.
// try is given the error of the try before it (nil the first time). It
// returns how many tries were made, the time from the first try to the
// last one's end, and the last error.
func (p Policy) Do(ctx context.Context, again func(error) bool, try func(prev error) error) (tries int, spent time.Duration, err error) {
	start, pause := time.Now(), p.First
	for tries = 1; ; tries++ {
		if err = try(err); err == nil || !again(err) {
			return tries, time.Since(start), err
		}
		wait := pause + rand.N(pause/4+1)
		if time.Since(start)+wait > p.Bound {
			return tries, time.Since(start), err
		}
		select {
		case <-ctx.Done():
			return tries, time.Since(start), err
		case <-time.After(wait):
		}
		pause = min(2*pause, MaxPause)
	}
}
