package injob

import (
	"context"
	"errors"
	"os"
	"strconv"
	"time"

	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

// RestartCount is Slurm's SLURM_RESTART_COUNT in this process's
// environment: 0 on a job's first start (unset), n once Slurm has
// requeued the job n times.
func RestartCount() int {
	n, err := strconv.Atoi(os.Getenv("SLURM_RESTART_COUNT"))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// recordRequeues asks Slurm's accounting, when j.Slurm is set, how the
// job's earlier starts ended, and records its word (NODE_FAIL, ...) as
// their states, keeping their reasons (what each start recorded).
// Hook calls it on a restart, after recording the start. Accounting that
// cannot answer leaves the starts recorded as requeued, with a warning.
func (j *InJob) recordRequeues() {
	j.log().Warn("Slurm requeued this job: it starts again under the same ID", "job", j.JobID, "restart", j.Restart)
	h, ok := j.Slurm.(scheduler.StartHistory)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	all, err := h.Starts(ctx, []string{j.JobID})
	if err != nil {
		level := j.log().Warn
		if errors.Is(err, scheduler.ErrNoAccounting) {
			level = j.log().Info
		}
		level("could not ask Slurm why it requeued the job: its earlier starts stay recorded as requeued", "err", err)
		return
	}
	for restart, k := range endedStarts(all[j.JobID], j.Restart) {
		if err := j.st.SetStartEnd(j.JobID, restart, k.State, "", k.Ended); err != nil && !errors.Is(err, state.ErrNotFound) {
			j.log().Warn("could not record how an earlier start ended", "restart", restart, "err", err)
		}
	}
}

// endedStarts pairs the starts accounting lists for a job (oldest first,
// the one with restart count latest last, or an ended one after it) with
// their restart counts, and keeps those before latest that ended.
func endedStarts(lines []scheduler.Job, latest int) map[int]scheduler.Job {
	out := map[int]scheduler.Job{}
	last := len(lines) - 1
	if last >= 0 && !lines[last].StartEnded() {
		// The running start is the latest: the lines before it are the
		// earlier ones, in order.
		for i := 0; i < last; i++ {
			if r := latest - (last - i); r >= 0 && lines[i].StartEnded() {
				out[r] = lines[i]
			}
		}
		return out
	}
	for i, k := range lines {
		if i < latest && k.StartEnded() {
			out[i] = k
		}
	}
	return out
}
