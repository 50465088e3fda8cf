package monitor

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/harness/comm"
	"github.com/dpsbatch/dpsbatch/jobs"
	"github.com/dpsbatch/dpsbatch/state"
)

// Snapshot is what a run looks like at one time: its status as
// jobs.Status computes it (with Slurm's word on its jobs), and the visits
// its state files record, by pipeline ("" for a run of one pipeline; a
// production's pipelines by their names). Evaluate reads nothing else.
type Snapshot struct {
	At     time.Time
	Status jobs.RunStatus
	Visits map[string][]state.Visit
}

// Condition is a rule that holds for a run at a snapshot's time: its
// rule, the pipeline of a production it is about, the job it names, and
// the evidence. Job is part of what the condition is about (a second
// job losing its heartbeat is a second condition) except for the rules
// over a pipeline's visits (failure_rate, no_progress), where it is the
// job that ran the latest of them.
type Condition struct {
	Rule, Pipeline, Job, Evidence string
	perJob                        bool
}

// key tells one condition from another across snapshots.
func (c Condition) key() string {
	k := c.Rule + "\x00" + c.Pipeline
	if c.perJob {
		k += "\x00" + c.Job
	}
	return k
}

// startGrace is how long a job's Pipeline may take to heartbeat for the
// first time, beyond the heartbeat rule's limit.
const startGrace = time.Minute

// Evaluate returns the conditions r finds in s, in the order of the
// rules and the run's pipelines. It is a pure function of its arguments.
func Evaluate(r Rules, s Snapshot) []Condition {
	var out []Condition
	for _, p := range parts(s) {
		if !r.Heartbeat.Off {
			out = append(out, silentJobs(r.Heartbeat, s.At, p)...)
		}
		if !r.SliceLost.Off {
			out = append(out, lostSlices(p)...)
		}
		if !r.FailureRate.Off {
			out = append(out, failureRate(r.FailureRate, p)...)
		}
		if !r.NoProgress.Off {
			out = append(out, noProgress(r.NoProgress, s.At, p)...)
		}
	}
	if !r.EndedEarly.Off {
		out = append(out, endedEarly(s.Status)...)
	}
	return out
}

// part is one pipeline of a run: the run itself, or one of a
// production's, with its status and visits.
type part struct {
	name   string
	st     *jobs.RunStatus
	visits []state.Visit
}

func parts(s Snapshot) []part {
	if len(s.Status.Pipelines) == 0 {
		return []part{{st: &s.Status, visits: s.Visits[""]}}
	}
	var out []part
	for i := range s.Status.Pipelines {
		ps := &s.Status.Pipelines[i]
		out = append(out, part{name: ps.Pipeline, st: ps, visits: s.Visits[ps.Pipeline]})
	}
	return out
}

// silentJobs: a job Slurm has running whose Pipeline has not heartbeaten
// for r.Missed of the run's intervals (none yet: since its start, with
// startGrace more).
func silentJobs(r HeartbeatRule, at time.Time, p part) []Condition {
	var out []Condition
	for _, j := range p.st.Jobs {
		if !j.Live || j.State != "RUNNING" || recordedEnd(j) {
			continue
		}
		limit, last, since := time.Duration(r.Missed)*p.st.Heartbeat, j.Heartbeat, "no heartbeat for"
		if last.IsZero() {
			limit, last, since = limit+startGrace, j.Started, "no heartbeat since the job started,"
		}
		if last.IsZero() || at.Sub(last) <= limit {
			continue
		}
		ev := fmt.Sprintf("%s %s (interval %s, alert after %d missed)", since, round(at.Sub(last)), p.st.Heartbeat, r.Missed)
		if j.HeartbeatVisit != "" {
			ev += "; visit " + j.HeartbeatVisit + " was in flight"
		}
		out = append(out, Condition{Rule: RuleHeartbeat, Pipeline: p.name, Job: j.ID, Evidence: ev, perJob: true})
	}
	return out
}

// lostSlices: a job whose communicator aborted (a Slice's process died
// or hung, or its node went away), as a visit it cut short or the end
// its Pipeline recorded says.
func lostSlices(p part) []Condition {
	marker := comm.ErrAborted.Error()
	var out []Condition
	seen := map[string]bool{}
	add := func(job, ev string) {
		if job != "" && !seen[job] {
			seen[job] = true
			out = append(out, Condition{Rule: RuleSliceLost, Pipeline: p.name, Job: job, Evidence: ev, perJob: true})
		}
	}
	for _, v := range p.visits {
		if v.State != state.Done && strings.Contains(v.Err, marker) {
			add(v.Job, fmt.Sprintf("visit %s: %s", v.ID, v.Err))
		}
	}
	for _, j := range p.st.Jobs {
		if strings.Contains(j.Reason, marker) {
			add(j.ID, fmt.Sprintf("job %s ended %s: %s", j.ID, j.State, j.Reason))
		}
	}
	return out
}

// failureRate: more than r.Above of the last r.Visits ended visits (done
// or failed, by their end) failed; a run of fewer visits is judged once
// they have all ended.
func failureRate(r FailureRateRule, p part) []Condition {
	var ended []state.Visit
	for _, v := range p.visits {
		if (v.State == state.Done || v.State == state.Failed) && !v.Ended.IsZero() {
			ended = append(ended, v)
		}
	}
	window := min(r.Visits, p.st.Visits)
	if window == 0 || len(ended) < window {
		return nil
	}
	slices.SortStableFunc(ended, func(a, b state.Visit) int { return b.Ended.Compare(a.Ended) })
	var failed []state.Visit
	for _, v := range ended[:window] {
		if v.State == state.Failed {
			failed = append(failed, v)
		}
	}
	if float64(len(failed)) <= r.Above*float64(window) {
		return nil
	}
	last := failed[0]
	ev := fmt.Sprintf("%d of the last %d visits failed (alert above %g%%); latest: visit %s: %s",
		len(failed), window, 100*r.Above, last.ID, last.Err)
	return []Condition{{Rule: RuleFailureRate, Pipeline: p.name, Job: last.Job, Evidence: ev}}
}

// noProgress: a job Slurm has running, with visits left to run, has
// ended no visit for r.Window (counted from its start at the earliest).
// A run listening for triggers with nothing in flight is waiting, not
// stuck.
func noProgress(r NoProgressRule, at time.Time, p part) []Condition {
	j := runningJob(p.st.Jobs)
	c := p.st.Counts
	if j == nil || c[state.Pending]+c[state.Running]+c[state.Interrupted] == 0 {
		return nil
	}
	last, what := j.Started, "since job "+j.ID+" started"
	var inFlight []string
	for _, v := range p.visits {
		if v.Ended.After(last) {
			last, what = v.Ended, "since visit "+v.ID+" ended"
		}
		if v.State == state.Running && v.Job == j.ID {
			inFlight = append(inFlight, fmt.Sprintf("visit %s (for %s)", v.ID, round(at.Sub(v.Started))))
		}
	}
	if last.IsZero() || at.Sub(last) <= r.Window {
		return nil
	}
	ev := fmt.Sprintf("no visit ended for %s (%s; window %s)", round(at.Sub(last)), what, r.Window)
	if len(inFlight) > 0 {
		ev += "; in flight: " + strings.Join(inFlight, ", ")
	}
	return []Condition{{Rule: RuleNoProgress, Pipeline: p.name, Job: j.ID, Evidence: ev}}
}

// endedEarly: no job of the run is live and visits are left, so its last
// job ended early: stopped, cancelled, failed or died.
func endedEarly(rs jobs.RunStatus) []Condition {
	if rs.Live || rs.Outcome != jobs.OutcomeUnfinished || len(rs.Jobs) == 0 {
		return nil
	}
	j := rs.Jobs[len(rs.Jobs)-1]
	c := rs.Counts
	left := c[state.Pending] + c[state.Running] + c[state.Interrupted]
	ev := fmt.Sprintf("job %s ended %s with %d of %d visits left (%d pending, %d interrupted)",
		j.ID, j.State, left, rs.Visits, c[state.Pending], c[state.Interrupted]+c[state.Running])
	if j.Reason != "" {
		ev += ": " + j.Reason
	}
	if j.Died {
		ev += "; its Pipeline recorded no end (killed, out of memory, or a node failure?)"
	}
	return []Condition{{Rule: RuleEndedEarly, Job: j.ID, Evidence: ev, perJob: true}}
}

// runningJob is the job Slurm has running (holding visits), if any.
func runningJob(js []jobs.JobStatus) *jobs.JobStatus {
	for i := range js {
		if js[i].Live && js[i].State == "RUNNING" {
			return &js[i]
		}
	}
	return nil
}

// recordedEnd reports whether the job's Pipeline recorded its end.
func recordedEnd(j jobs.JobStatus) bool {
	_, err := state.ParseJobEnd(j.Recorded)
	return err == nil
}

// round is d to the second, or to the millisecond below a second.
func round(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}
