package jobs

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/input"
	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/internal/slurmtime"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/site"
	"github.com/dpsbatch/dpsbatch/state"
)

// Growth (resume --auto, resume --grow): a run with growth on asks for
// more after a job that ran short. A job ran out of time when Slurm ended
// it TIMEOUT, or when its rank 0 recorded that it stopped because its time
// limit was near (rundir.TimeLimitNear: Slurm's warning, or the time
// budget); its steps were killed for memory when Slurm ended it
// OUT_OF_MEMORY, or when slurmstepd wrote in the job's log that it killed
// a step of the job over its memory limit (OverMemoryKill) or that the
// kernel's out-of-memory handler killed some of its processes (cgroups).
// The successor then asks for the site's factor (scheduler.grow) more
// time, or more memory per slice, up to the partition's limits.

// shortfall is what a job ran short of, and how it showed.
type shortfall struct {
	time, memory bool
	why          string
}

// memoryKilled matches slurmstepd's words in a job's log for a step of
// job %s killed for memory: by OverMemoryKill, or by cgroup's OOM killer.
const memoryKilled = `StepId=%[1]s\.\S+ exceeded memory limit|oom-kill event\(s\) in StepId=%[1]s\.`

// shortOf says what job js of the run in l, whose steps' state files are
// records, ran short of.
func shortOf(l rundir.Layout, records []rundir.Layout, js JobStatus) shortfall {
	var s shortfall
	switch js.State {
	case "TIMEOUT":
		s.time, s.why = true, fmt.Sprintf("job %s ran out of time (Slurm: TIMEOUT)", js.ID)
	case "OUT_OF_MEMORY":
		s.memory, s.why = true, fmt.Sprintf("job %s ran out of memory (Slurm: OUT_OF_MEMORY)", js.ID)
	}
	if line := killedForMemory(l.SlurmLog(js.ID), js.ID); line != "" && !s.memory {
		s.memory, s.why = true, fmt.Sprintf("job %s: a step was killed for memory (%s)", js.ID, line)
	}
	if reason := stoppedForTime(records, js.ID); reason != "" && !s.time && !s.memory {
		s.time, s.why = true, fmt.Sprintf("job %s stopped with visits left: %s", js.ID, reason)
	}
	return s
}

// killedForMemory is the first line of the log of job id, since its
// latest start, in which slurmstepd says it killed a step of the job for
// memory; "" when none (or no log).
func killedForMemory(log, id string) string {
	f, err := os.Open(log)
	if err != nil {
		return ""
	}
	defer f.Close()
	re := regexp.MustCompile(fmt.Sprintf(memoryKilled, regexp.QuoteMeta(id)))
	start := "job " + id + " starts on "
	found := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		switch line := sc.Text(); {
		case strings.Contains(line, start) && strings.HasPrefix(line, "dpsbatch: "):
			found = "" // a requeued job's earlier start
		case found == "" && re.MatchString(line):
			found = strings.TrimSpace(line)
		}
	}
	return found
}

// stoppedForTime is the reason rank 0 recorded in one of records when job
// id stopped because its time limit was near; "" when it did not.
func stoppedForTime(records []rundir.Layout, id string) string {
	for _, r := range records {
		st, err := state.OpenReadOnly(r.State())
		if err != nil {
			continue
		}
		js, err := st.Jobs()
		st.Close()
		if err != nil {
			continue
		}
		for _, j := range js {
			if j.ID == id && j.State == string(state.EndStopped) && strings.HasPrefix(j.Reason, rundir.TimeLimitNear) {
				return j.Reason
			}
		}
	}
	return ""
}

// growRequest is req grown by the factors g for what a job ran short of
// (s), from what it was planned (plan, on partition p), up to p's
// limits; and why, with what grew or why it could not (already at a
// limit, no factor).
func growRequest(req rundir.Request, plan scheduler.Plan, p site.Partition, g site.Grow, s shortfall) (rundir.Request, string) {
	var grew []string
	if s.time {
		t, what := growTime(plan.Time, p.MaxTime, g.Time)
		if t > 0 {
			req.Time = t
		}
		grew = append(grew, what)
	}
	if s.memory {
		mb, what := growMemory(plan, p, g.Memory)
		if mb > 0 {
			req.MemPerSliceMB = mb
		}
		grew = append(grew, what)
	}
	return req, s.why + ": " + strings.Join(grew, "; ")
}

// growTime is time limit cur grown by factor, up to max (0: none), and
// what it did; 0 when it cannot grow.
func growTime(cur, max time.Duration, factor float64) (time.Duration, string) {
	switch {
	case factor == 0:
		return 0, "time not grown (the site's scheduler.grow has no time factor)"
	case cur == 0:
		return 0, "time not grown (the job had no time limit)"
	case max > 0 && cur >= max:
		return 0, "time not grown: already the partition's max_time " + slurmtime.Format(max)
	}
	t := time.Duration(math.Ceil(float64(cur)*factor/float64(time.Minute))) * time.Minute
	if max > 0 && t > max {
		t = max
	}
	return t, fmt.Sprintf("time %s -> %s", slurmtime.Format(cur), slurmtime.Format(t))
}

// growMemory is the memory per slice of plan grown by factor, up to a
// node of p, and what it did; 0 when it cannot grow. A plan that asked
// for no memory had a CPU's share of a node's.
func growMemory(plan scheduler.Plan, p site.Partition, factor float64) (int, string) {
	cur := plan.MemPerCPUMB * plan.CPUsPerTask
	if cur == 0 && p.MemoryMB > 0 && p.CPUsPerNode > 0 {
		cur = p.MemoryMB / p.CPUsPerNode * max(plan.CPUsPerTask, 1)
	}
	switch {
	case factor == 0:
		return 0, "memory not grown (the site's scheduler.grow has no memory factor)"
	case cur == 0:
		return 0, "memory not grown (the site file gives the partition no memory)"
	case cur >= p.MemoryMB:
		return 0, fmt.Sprintf("memory not grown: already a node's %dM", p.MemoryMB)
	}
	mb := min(int(math.Ceil(float64(cur)*factor)), p.MemoryMB)
	return mb, fmt.Sprintf("memory per slice %dM -> %dM", cur, mb)
}

// checkGrowth refuses growth without a number of jobs; for resume --auto
// it says why nothing is to be submitted when the run's jobs may submit
// no more.
func checkGrowth(o ResumeOptions, set rundir.Settings) (skip string, err error) {
	switch {
	case o.Grow && o.AutoResume < 1:
		return "", fmt.Errorf("%w: --grow needs --auto-resume N: how many jobs may each submit the next", conf.ErrInvalid)
	case o.Auto && set.AutoGrow < 1:
		return "the run's jobs may submit no more jobs (growth off, or every one submitted)", nil
	}
	return "", nil
}

// growFactors is what a run of steps grows by: the site's factors, each
// replaced by the largest any step's policy gives (grow). With growth on
// and no factor, the run is bad input.
func growFactors(s *site.Site, steps []input.Step, on bool) (site.Grow, error) {
	g := s.Scheduler.Grow
	var t, m float64
	for _, st := range steps {
		t, m = max(t, st.Policy.GrowTime), max(m, st.Policy.GrowMemory)
	}
	if t > 0 {
		g.Time = t
	}
	if m > 0 {
		g.Memory = m
	}
	if on && !g.On() {
		return g, fmt.Errorf("%w: growth: neither the site file %s (scheduler.grow) nor the policy (grow) sets a factor, such as grow: {time: 2, memory: 1.5}",
			conf.ErrInvalid, s.Path)
	}
	return g, nil
}

// liveJobs are the run's jobs that are pending or running, but except
// (the job that runs resume --auto at its end), as "ID state".
func liveJobs(rs RunStatus, except string) []string {
	var live []string
	for _, j := range rs.Jobs {
		if j.Live && j.ID != except {
			live = append(live, j.ID+" "+strings.ToLower(j.State))
		}
	}
	return live
}

// growth sets how many more jobs the next may submit itself (growth on:
// Auto counts one spent, Grow starts AutoResume; otherwise none), and,
// when the ending job (o.Job, else the run's latest) ran short of time or
// memory, plans the next job again asking for more.
func growth(o ResumeOptions, l rundir.Layout, run state.Run, set rundir.Settings, rs RunStatus, rj runJob, planned *RunPlan) (runJob, *RunPlan, error) {
	left := 0
	switch {
	case o.Auto:
		left = set.AutoGrow - 1
	case o.Grow:
		left = o.AutoResume
	}
	rj.set.AutoGrow = left
	js, ok := endingJob(rs, o.Job)
	if !o.Grow && !o.Auto || !ok {
		return rj, planned, nil
	}
	s := shortOf(l, rundir.Records(l, set), js)
	if !s.time && !s.memory {
		return rj, planned, nil
	}
	part, err := o.Site.Partition(rj.request.Partition)
	if err != nil {
		return rj, planned, err
	}
	req, why := growRequest(rj.request, planned.Plan, *part, rj.factors, s)
	o.Change.Time, o.Change.MemPerSliceMB = req.Time, req.MemPerSliceMB
	grown, replanned, err := planResume(o, l, run, set)
	if err != nil {
		return rj, planned, fmt.Errorf("jobs: growing the run's request (%s): %w", why, err)
	}
	grown.set.AutoGrow, grown.grown, grown.factors = left, why, rj.factors
	return grown, replanned, nil
}

// endingJob is the job id of rs, else its latest job (none: false).
func endingJob(rs RunStatus, id string) (JobStatus, bool) {
	for _, j := range rs.Jobs {
		if j.ID == id {
			return j, true
		}
	}
	if id != "" || len(rs.Jobs) == 0 {
		return JobStatus{}, false
	}
	return rs.Jobs[len(rs.Jobs)-1], true
}
