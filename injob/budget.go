package injob

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

// A batch job's time budget. Slurm ends a job at its time limit; the
// warning signal it sends before (--signal) may come up to a minute early
// or late, so it cannot tell how much time is left. The job reads its real
// end from Slurm when it starts, and before each visit the Pipeline asks
// the budget whether there is time for one more: there is while the time
// left is at least StopMargin plus the time a visit is expected to take,
// which is the slowest recent visit (the 95th percentile of the last
// recentVisits visits' times, this job's and earlier jobs' of the run),
// or, before any visit has been timed, the policy's visit_time, else
// DefaultVisitTime. Slurm's warning only makes the job read its end again
// (an operator may have moved the limit) and stop if the time left is
// short by the same rule.

// StopMargin is the time a job keeps, on top of one visit's, between its
// last visit and its time limit: to record its end, stop its broker and
// exit before Slurm's SIGTERM.
const StopMargin = 10 * time.Second

// DefaultVisitTime is the time one visit is expected to take while none
// of the run's visits has been timed and its policy gives no visit_time.
const DefaultVisitTime = 30 * time.Second

// recentVisits is how many of the latest visit times the budget keeps.
const recentVisits = 100

// budget says whether a job has time for one more visit. Its methods are
// safe for concurrent use: the Pipeline's loop asks and reports visit
// times, the stop-file watcher reads the end again.
type budget struct {
	// deadline reads the job's end by its time limit from Slurm (zero
	// when it has none).
	deadline  func(context.Context) (time.Time, error)
	now       func() time.Time
	margin    time.Duration
	guess     time.Duration // the expected visit time before any is known
	guessFrom string        // where guess comes from, for messages

	mu    sync.Mutex
	end   time.Time       // zero: no time limit, or not known
	times []time.Duration // the latest visit times, at most recentVisits
	next  int             // where the next time goes in times once full
}

// newBudget makes the budget of a job of a run whose policy expects
// visitTime per visit (0: it does not say), knowing the times of the
// run's latest visits (newest first).
func newBudget(deadline func(context.Context) (time.Time, error), now func() time.Time, visitTime time.Duration, recent []time.Duration) *budget {
	b := &budget{deadline: deadline, now: now, margin: StopMargin, guess: DefaultVisitTime, guessFrom: "the default"}
	if visitTime > 0 {
		b.guess, b.guessFrom = visitTime, "the policy's visit_time"
	}
	recent = recent[:min(len(recent), recentVisits)]
	for i := len(recent) - 1; i >= 0; i-- { // oldest first
		b.visitTook(recent[i])
	}
	return b
}

// readEnd asks Slurm for the job's end by its time limit.
func (b *budget) readEnd(ctx context.Context) error {
	if b.deadline == nil {
		return errors.New("injob: the job's end time is not known here (not a Slurm job)")
	}
	end, err := b.deadline(ctx)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.end = end
	b.mu.Unlock()
	return nil
}

// visitTook adds the time of a visit that ran to its end.
func (b *budget) visitTook(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.times) < recentVisits {
		b.times = append(b.times, d)
		return
	}
	b.times[b.next] = d
	b.next = (b.next + 1) % recentVisits
}

// expected is the time one visit is expected to take, and where that
// figure comes from. b.mu is held.
func (b *budget) expected() (time.Duration, string) {
	n := len(b.times)
	if n == 0 {
		return b.guess, b.guessFrom
	}
	sorted := slices.Sorted(slices.Values(b.times))
	i := (95*n+99)/100 - 1 // the 95th percentile: ceil(0.95 n)
	return sorted[i], fmt.Sprintf("the slowest of the last %d visits (95th percentile)", n)
}

// short says why there is no time for one more visit, or "" when there
// is (or the job has no time limit).
func (b *budget) short() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.end.IsZero() {
		return ""
	}
	left := b.end.Sub(b.now())
	visit, from := b.expected()
	if left >= b.margin+visit {
		return ""
	}
	return fmt.Sprintf(rundir.TimeLimitNear+": %s left before %s, less than one visit (%s, %s) and the %s margin",
		max(left, 0).Round(time.Second), b.end.Format(time.RFC3339), visit.Round(time.Millisecond), from, b.margin)
}

// left is the time left before the job's end; ok is false when it has
// no time limit or the end is not known.
func (b *budget) left() (left time.Duration, end time.Time, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.end.IsZero() {
		return 0, time.Time{}, false
	}
	return b.end.Sub(b.now()), b.end, true
}

// SlurmDeadline returns how job jobID reads its end by its time limit
// from Slurm (b.Jobs: squeue): the zero time when the job has no limit.
// `dpsbatch run` gives it to InJob.Deadline inside a Slurm job.
func SlurmDeadline(b scheduler.Backend, jobID string) func(context.Context) (time.Time, error) {
	return func(ctx context.Context) (time.Time, error) {
		js, err := b.Jobs(ctx, []string{jobID})
		if err != nil {
			return time.Time{}, err
		}
		j, ok := js[jobID]
		if !ok || j.State != "RUNNING" {
			return time.Time{}, fmt.Errorf("injob: Slurm does not list job %s as running (%s)", jobID, j.State)
		}
		return j.Deadline, nil
	}
}

// openBudget makes the job's budget: the end time read from Slurm, the
// run's latest visit times from its state file. A job that cannot read
// its end runs without a budget (the time-limit warning then stops it
// at once), and says so.
func (j *InJob) openBudget(st *state.Store, visitTime time.Duration) (*budget, error) {
	recent, err := st.RecentVisitTimes(recentVisits)
	if err != nil {
		return nil, err
	}
	b := newBudget(j.Deadline, j.Now, visitTime, recent)
	if j.Deadline == nil {
		return b, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.readEnd(ctx); err != nil {
		j.log().Warn("cannot read the job's end time from Slurm: visits are started without a time budget", "err", err)
		return b, nil
	}
	left, end, ok := b.left()
	if !ok {
		j.log().Info("the job has no time limit")
		return b, nil
	}
	b.mu.Lock()
	visit, from := b.expected()
	b.mu.Unlock()
	j.log().Info("time budget", "end", end.Format(time.RFC3339), "left", left.Round(time.Second),
		"visit", visit.Round(time.Millisecond), "visitFrom", from, "margin", b.margin)
	if why := b.short(); why != "" {
		j.log().Warn("the job has less time than one visit takes: it runs no visit", "why", why)
	}
	return b, nil
}

// timeWarning handles Slurm's time-limit warning (the stop file): it
// reads the job's end again and says whether to stop now, which it does
// when the time left is short by the budget's rule, or when the end
// cannot be read.
func (j *InJob) timeWarning(why string) (stop bool) {
	if j.budget == nil || j.Deadline == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := j.budget.readEnd(ctx); err != nil {
		j.log().Warn("Slurm's time-limit warning: cannot read the job's end time again: stopping", "err", err)
		return true
	}
	if short := j.budget.short(); short != "" {
		j.log().Warn("Slurm's time-limit warning: stopping at the next visit boundary", "why", short)
		return true
	}
	left, end, _ := j.budget.left()
	j.log().Info("Slurm's time-limit warning came early: the job has time for more visits; it stops when its time budget says",
		"warning", why, "end", end.Format(time.RFC3339), "left", left.Round(time.Second))
	return false
}

// TimeForVisit answers the Pipeline before each visit (a
// harness.VisitGate): a reason to stop when the job has no time for it.
func (r *recorder) TimeForVisit(visit string) string {
	if r.budget == nil {
		return ""
	}
	return r.budget.short()
}
