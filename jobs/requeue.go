package jobs

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

// Slurm requeues a job (a node failure, `scontrol requeue`, preemption) by
// ending its start and running it again, later, under the same ID and log.
// The state file records each start on its own (state.JobStart); the
// job's own record is its latest start's. This file holds what the job
// and status make of it.

// requeueWords says in words why Slurm ended a start it requeued, from
// its state.
func requeueWords(slurmState string) string {
	switch slurmState {
	case "NODE_FAIL":
		return "node failure"
	case "PREEMPTED":
		return "preempted"
	case "REQUEUED":
		return "requeued (scontrol requeue, or Slurm itself)"
	}
	return strings.ToLower(slurmState)
}

// StartStatus is one start of a job, as the state file recorded it.
type StartStatus struct {
	// Restart is Slurm's SLURM_RESTART_COUNT of the start: 0 the first.
	Restart int       `json:"restart"`
	Host    string    `json:"host,omitempty"`
	Started time.Time `json:"started,omitzero"`
	Ended   time.Time `json:"ended,omitzero"`
	// State is how it ended: as rank 0 recorded it, or, for a start that
	// Slurm requeued, Slurm's word (REQUEUED, NODE_FAIL, PREEMPTED).
	State  string `json:"state,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Requeue is a job that Slurm requeued after it started and that waits,
// pending, to start again under the same ID.
type Requeue struct {
	// Why is Slurm's reason: its accounting's word for how the last
	// start ended (REQUEUED, NODE_FAIL, PREEMPTED) when the cluster keeps
	// accounting, else what the start recorded.
	Why        string `json:"why"`
	SlurmState string `json:"slurmState,omitempty"`
	// Waiting is why Slurm holds it now (BeginTime: the requeue's delay).
	Waiting string `json:"waiting,omitempty"`
	// Earliest is the earliest Slurm expects it to start again; zero if
	// it did not say.
	Earliest time.Time `json:"earliestStart,omitzero"`
	// Starts is how many times it started so far; the next is one more.
	Starts int `json:"starts"`
}

// attachStarts gives each job of rs the starts recorded for it, when it
// has more than one.
func attachStarts(rs *RunStatus, starts []state.JobStart) {
	by := map[string][]StartStatus{}
	for _, s := range starts {
		by[s.Job] = append(by[s.Job], StartStatus{Restart: s.Restart, Host: s.Host, Started: s.Started, Ended: s.Ended,
			State: s.State, Reason: s.Reason})
	}
	for i := range rs.Jobs {
		if ss := by[rs.Jobs[i].ID]; len(ss) > 1 {
			rs.Jobs[i].Starts = ss
		}
	}
}

// pendingStates are the live states of a job waiting to start.
var pendingStates = map[string]bool{"PENDING": true, "REQUEUED": true, "REQUEUE_HOLD": true, "REQUEUE_FED": true}

// settleRequeue reads a requeue in what Slurm says of a job (k) against
// what the run recorded (j), before settle judges the job: a job waiting
// to start after it started (recorded) was requeued; a job that Slurm
// started after its recorded end started again, and has not reported
// (running, or ended before its Pipeline did). Either way what the run
// recorded is an earlier start's and is set aside (its end, reason,
// heartbeat and broker), and the job's Recorded is state.Requeued: no
// end of this start, so a running one may be silent and an ended one
// died.
func settleRequeue(j *JobStatus, k scheduler.Job) {
	switch {
	case k.Live() && pendingStates[k.State] && !j.Started.IsZero():
		why := "no end"
		if recordedEnd(j.Recorded) {
			why = j.Recorded
			if j.Reason != "" {
				why += ": " + j.Reason
			}
		}
		j.Requeued = &Requeue{Why: "Slurm requeued the job (the start recorded " + why + ")", Earliest: k.Expected,
			Starts: max(1, len(j.Starts)), Waiting: k.Reason}
	case recordedEnd(j.Recorded) && startedAgain(k) && !j.Ended.IsZero() && k.Started.After(j.Ended):
		j.Started = k.Started
	default:
		return
	}
	j.Recorded, j.Reason, j.Ended = state.Requeued, "", time.Time{}
	j.Heartbeat, j.HeartbeatVisit, j.Broker = time.Time{}, "", ""
}

// startedAgain reports whether Slurm's k is of a start that ran: it has
// a start time and nodes. A job cancelled while it waited to start has a
// start (and an end) at the cancel, on no node.
func startedAgain(k scheduler.Job) bool { return !k.Started.IsZero() && k.Nodes != "" }

// requeueReasons asks Slurm's accounting, when b offers it, why it
// requeued the runs' jobs that wait to start again: one call for all.
// Without accounting the recorded reason stays.
func requeueReasons(ctx context.Context, b scheduler.Backend, runs []RunStatus) {
	h, ok := b.(scheduler.StartHistory)
	if !ok {
		return
	}
	var waiting []*JobStatus
	var ids []string
	var visit func(rs *RunStatus)
	visit = func(rs *RunStatus) {
		for i := range rs.Jobs {
			if rs.Jobs[i].Requeued != nil {
				waiting = append(waiting, &rs.Jobs[i])
				ids = append(ids, rs.Jobs[i].ID)
			}
		}
		for i := range rs.Pipelines {
			visit(&rs.Pipelines[i])
		}
	}
	for i := range runs {
		visit(&runs[i])
	}
	if len(ids) == 0 {
		return
	}
	all, err := h.Starts(ctx, ids)
	if err != nil {
		return
	}
	for _, j := range waiting {
		lines := all[j.ID]
		for i := len(lines) - 1; i >= 0; i-- {
			if lines[i].StartEnded() {
				j.Requeued.SlurmState = lines[i].State
				j.Requeued.Why = requeueWords(lines[i].State)
				break
			}
		}
	}
}

// anyRequeued reports whether a job of js waits to start again.
func anyRequeued(js []JobStatus) bool {
	for _, j := range js {
		if j.Requeued != nil {
			return true
		}
	}
	return false
}

// runningRate is done visits per second of the time a job of the run was
// running between the first done visit's start and the last one's end:
// the union of the recorded starts, so that the wait of a requeued or
// resumed job is not counted. A start without a recorded end counts up
// to the last done visit. Without starts it is the whole span.
func runningRate(done int, first, last time.Time, starts []state.JobStart) float64 {
	if done <= 1 || !last.After(first) {
		return 0
	}
	type span struct{ from, to time.Time }
	var spans []span
	for _, s := range starts {
		from, to := s.Started, s.Ended
		if from.IsZero() {
			continue
		}
		if to.IsZero() || to.After(last) {
			to = last
		}
		if from.Before(first) {
			from = first
		}
		if to.After(from) {
			spans = append(spans, span{from, to})
		}
	}
	sort.Slice(spans, func(a, b int) bool { return spans[a].from.Before(spans[b].from) })
	var running time.Duration
	var end time.Time
	for _, s := range spans {
		if s.from.Before(end) {
			s.from = end
		}
		if s.to.After(s.from) {
			running += s.to.Sub(s.from)
			end = s.to
		}
	}
	if running <= 0 {
		running = last.Sub(first)
	}
	return float64(done) / running.Seconds()
}
