package jobs

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/site"
	"github.com/dpsbatch/dpsbatch/state"
)

// ResumeOptions is a new job for what a run left unfinished.
type ResumeOptions struct {
	Site    *site.Site
	Backend scheduler.Backend
	Dir     string // the run directory
	// MaxAttempts leaves out visits already tried that many times
	// (0: no limit); they stay failed or interrupted and are reported.
	MaxAttempts int
	AutoResume  int
	DryRun      bool
	// Refresh takes a new copy of the files of the pipeline's folder the
	// policy names under {pipelinedir} before the new job (a dry run
	// copies nothing).
	Refresh bool
	// WaitLock is how long to wait while another command holds the
	// run's lock (0: DefaultLockWait); then Resume fails with
	// ErrRunLocked naming the holder.
	WaitLock time.Duration
	// Change is what the next job asks for instead of the run's request
	// (checked against the partition's limits first: bad input changes
	// nothing); it is recorded as the run's request once submitted.
	Change RequestChange
	// Grow turns growth on (the site's scheduler.grow): instead of
	// chained follow-ons, each job submits the next itself at its end,
	// up to AutoResume of them, each with more time or memory when the
	// job before ran short; this one too, when the run's last job did.
	Grow bool
	// Auto is `resume --auto`, which a job of a run with growth on runs
	// at its end: Job is that job, not counted live. It submits nothing
	// when the run's jobs may submit no more (growth is off, or spent).
	Auto bool
	Job  string
	Out  io.Writer
	Now  func() time.Time

	lock *runLock // held from the first look at the run to the last submission
}

// ResumeResult adds to Submitted what resume found.
type ResumeResult struct {
	Submitted
	Retried   int      `json:"retried"`             // visits made pending again: failed, interrupted, or with a data ID not done
	Exhausted []string `json:"exhausted,omitempty"` // visits at --max-attempts, left as they are
	Complete  bool     `json:"complete,omitempty"`  // nothing left to run: nothing submitted
	// Grown says why the job asks for more than the one before.
	Grown string `json:"grown,omitempty"`
	// Skipped says why resume --auto submitted nothing.
	Skipped string `json:"skipped,omitempty"`
	// Refreshed lists the folders the pipeline files were copied from
	// again (Refresh).
	Refreshed []string `json:"refreshed,omitempty"`
}

// Resume submits a new job (and AutoResume follow-ons) for the run's
// unfinished visits: pending ones, interrupted ones, failed ones and done
// ones with a data ID not done, as long as they have had fewer than
// MaxAttempts tries. A visit run again runs only its data IDs not done,
// unless its policy says failure.redo: visit. Visits a dead job
// left running count as interrupted. It refuses (ErrRunLive) while a job
// of the run is pending or running, and changes nothing then. When every
// visit is done it submits nothing and says so.
//
// Unless DryRun, it holds the run's lock (lockRun) from its first look at
// the run to its last submission, waiting WaitLock for another holder;
// under it, it brings the run's state files to this dpsbatch's schema
// and adopts a job that a command killed mid-submission left unrecorded
// (settleSubmissions), which counts as live while Slurm runs it.
func Resume(ctx context.Context, o ResumeOptions) (*ResumeResult, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	if o.MaxAttempts < 0 || o.AutoResume < 0 {
		return nil, fmt.Errorf("%w: --max-attempts and --auto-resume must be 0 or more", conf.ErrInvalid)
	}
	l := rundir.Layout{Dir: o.Dir}
	if !o.DryRun {
		lk, err := lockRun(ctx, l, o.WaitLock)
		if err != nil {
			return nil, err
		}
		defer lk.unlock()
		o.lock = lk
		if err := migrateRun(l); err != nil {
			return nil, err
		}
	}
	run, set, err := readWholeRun(l)
	if err != nil {
		return nil, err
	}
	if skip, err := checkGrowth(o, set); err != nil {
		return nil, err
	} else if skip != "" {
		return &ResumeResult{Submitted: Submitted{Run: run.Name, Dir: o.Dir}, Skipped: skip}, nil
	}
	// Planned first: bad input (a change over the partition's limits)
	// changes nothing.
	rj, planned, err := planResume(o, l, run, set)
	if err != nil {
		return nil, err
	}
	if !o.DryRun {
		if err := settleSubmissions(ctx, o.Backend, l, rundir.Records(l, set)); err != nil {
			return nil, err
		}
	}
	wait := endingWait
	if o.Auto {
		wait = 0 // the ending job is the one asking
	}
	rs, err := statusOnceEnded(ctx, o.Backend, o.Dir, wait)
	if err != nil {
		return nil, err
	}
	if live := liveJobs(rs[0], o.Job); len(live) > 0 {
		return nil, fmt.Errorf("%w: run %s: job %s (dpsbatch cancel %s, or wait for it)", ErrRunLive, rs[0].Run, strings.Join(live, ", "), rs[0].Run)
	}
	if !o.DryRun {
		RecordUsage(ctx, o.Backend, rs)
	}
	var refreshed []string
	if o.Refresh && !o.DryRun {
		if refreshed, err = refreshPipelineFiles(l, set, now()); err != nil {
			return nil, err
		}
		if rj, planned, err = planResume(o, l, run, set); err != nil { // the files as copied again
			return nil, err
		}
	}
	if rj, planned, err = growth(o, l, run, set, rs[0], rj, planned); err != nil {
		return nil, err
	}
	if o.Grow || o.Auto {
		o.AutoResume = 0 // each job submits the next
	}
	res, err := resumeJob(ctx, o, rj, planned, now)
	if res != nil {
		res.Refreshed = refreshed
	}
	return res, err
}

// planResume plans the run's next job as the run's request, changed by
// o.Change, asks: its steps and their allocation, and the request.
func planResume(o ResumeOptions, l rundir.Layout, run state.Run, set rundir.Settings) (runJob, *RunPlan, error) {
	if err := o.Change.check(l, set); err != nil {
		return runJob{}, nil, err
	}
	steps, err := runSteps(l, set)
	if err != nil {
		return runJob{}, nil, err
	}
	req := o.Change.apply(set.Request)
	if o.Change.Slices > 0 { // one step, in the run directory (check)
		steps[0].asked = req.Slices
	}
	loaded, err := loadSteps(steps)
	if err != nil {
		return runJob{}, nil, err
	}
	factors, err := growFactors(o.Site, loaded, o.Grow || o.Auto)
	if err != nil {
		return runJob{}, nil, err
	}
	if err := checkLauncher(o.Site, l.ProductionCopy(), len(steps)); err != nil {
		return runJob{}, nil, err
	}
	planned, err := planSteps(o.Site, run.Name, l.ProductionCopy(), loaded, req)
	if err != nil {
		return runJob{}, nil, o.Change.explain(err)
	}
	for i := range steps {
		steps[i].tasks = planned.Steps[i].Tasks
	}
	return runJob{name: run.Name, set: set, request: req, factors: factors, plan: planned.Plan, steps: steps}, planned, nil
}

// resumeJob readies the state file of each step of rj for a new job, and
// submits it (and AutoResume follow-ons) unless nothing is left: no visit
// to run, and no listening step whose input is still open. With DryRun it
// changes nothing and prints what would run.
func resumeJob(ctx context.Context, o ResumeOptions, rj runJob, planned *RunPlan, now func() time.Time) (*ResumeResult, error) {
	l := rundir.Layout{Dir: o.Dir}
	attempt, err := nextAttempt(l)
	if err != nil {
		return nil, err
	}
	tmpl, err := loadTemplate(o.Site)
	if err != nil {
		return nil, err
	}
	scripts, err := renderChain(tmpl, o.Site, l, rj, attempt, o.AutoResume)
	if err != nil {
		return nil, err
	}
	res := &ResumeResult{Submitted: Submitted{Run: rj.name, Dir: o.Dir, Attempt: attempt, Plan: rj.plan,
		Script: l.Script(attempt), State: l.State(), DryRun: o.DryRun}, Grown: rj.grown}
	open := false // some listening step's input is still open
	for _, part := range rj.steps {
		r, err := resumePipeline(part.l, o.MaxAttempts, o.DryRun)
		if err != nil {
			return nil, err
		}
		res.Visits += r.visits
		res.Retried += r.retried
		for _, v := range r.exhausted {
			if part.name != "" {
				v = part.name + ":" + v
			}
			res.Exhausted = append(res.Exhausted, v)
		}
		open = open || part.set.Listen && r.inputOpen
	}
	res.Steps = rj.stepPlans()
	if o.DryRun {
		if o.MaxAttempts > 0 && o.Out != nil { // at most: some failed ones may be at the limit
			fmt.Fprintf(o.Out, "at most %d visits would run (--max-attempts %d may leave some out)\n", res.Visits, o.MaxAttempts)
		}
		printDry(o.Out, &res.Submitted, planned, scripts)
		return res, nil
	}
	if res.Visits == 0 && !open {
		res.Complete = true
		return res, nil
	}
	if err := rundir.CheckBrokerSpace(l.Dir, rj.set.Broker); err != nil {
		return nil, err
	}
	if err := writeScripts(l, scripts, attempt); err != nil {
		return nil, err
	}
	if err := recordSettings(l, rj); err != nil {
		return nil, err
	}
	if err := submitChain(ctx, o.Backend, o.lock, l, rundir.Records(l, rj.set), scripts, attempt, now, &res.Submitted); err != nil {
		return nil, err
	}
	return res, nil
}

// migrateRun opens the run's state files once for writing, which brings
// a file written by an older dpsbatch to this one's schema (a reader
// does so only once every job of the file recorded its end; resume runs
// with no job live, under the run lock): the run's own, then each of its
// steps' own.
func migrateRun(l rundir.Layout) error {
	st, err := state.Open(l.State())
	if err != nil {
		return err
	}
	st.Close()
	_, set, err := rundir.ReadSettings(l)
	if err != nil {
		return err
	}
	for _, r := range rundir.Records(l, set)[1:] {
		st, err := state.Open(r.State())
		if err != nil {
			return err
		}
		st.Close()
	}
	return nil
}

// pipelineResume is what resume found in one state file.
type pipelineResume struct {
	visits    int // to run
	retried   int
	exhausted []string
	inputOpen bool // no no-more-data has closed its input
}

// resumePipeline readies the state file of step l for a new job: visits left running count as
// interrupted, failed and interrupted ones, and done ones with a data ID
// not done, are retried (up to maxAttempts). With dryRun it only counts what would run.
func resumePipeline(l rundir.Layout, maxAttempts int, dryRun bool) (pipelineResume, error) {
	var r pipelineResume
	st, err := state.Open(l.State())
	if err != nil {
		return r, err
	}
	defer st.Close()
	run, err := st.Run()
	if err != nil {
		return r, err
	}
	r.inputOpen = run.InputClosed.IsZero()
	if dryRun {
		counts, err := st.Counts()
		if err != nil {
			return r, err
		}
		left, err := st.DoneWithDataIDsLeft()
		if err != nil {
			return r, err
		}
		r.visits = counts[state.Pending] + counts[state.Interrupted] + counts[state.Running] + counts[state.Failed] + left
		return r, nil
	}
	if _, err := st.InterruptRunning("the job that ran it ended before it finished"); err != nil {
		return r, err
	}
	if r.retried, r.exhausted, err = st.Retry(maxAttempts); err != nil {
		return r, err
	}
	ids, err := st.Runnable()
	if err != nil {
		return r, err
	}
	r.visits = len(ids)
	return r, nil
}

// nextAttempt is the attempt number of the run's next job: after every
// job and every submission that may have become one.
func nextAttempt(l rundir.Layout) (int, error) {
	st, err := state.OpenReadOnly(l.State())
	if err != nil {
		return 0, err
	}
	defer st.Close()
	return st.NextAttempt()
}

// endingWait is how long resume waits for Slurm to let go of jobs whose
// rank 0 has recorded their end (COMPLETING: the epilog, the last steps'
// exit) before it calls them live: wait returns as soon as the state file
// decides the run's outcome, and a resume straight after it would
// otherwise be refused.
const endingWait = 2 * time.Minute

// statusOnceEnded is the run's Status, asked again every second for up
// to wait while every job Slurm still lists as live has recorded its end.
func statusOnceEnded(ctx context.Context, b scheduler.Backend, dir string, wait time.Duration) ([]RunStatus, error) {
	deadline := time.Now().Add(wait)
	for {
		rs, err := Status(ctx, b, []string{dir})
		if err != nil || !rs[0].Live || !onlyEnding(rs[0].Jobs) || time.Now().After(deadline) {
			return rs, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// onlyEnding reports whether every live job of js has recorded its end
// (and was not requeued, which would start it again).
func onlyEnding(js []JobStatus) bool {
	for _, j := range js {
		if j.Live && (!recordedEnd(j.Recorded) || j.Requeued != nil) {
			return false
		}
	}
	return true
}
