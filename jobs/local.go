package jobs

// A local run (dpsbatch local) is a run like a submitted one, without
// Slurm: CreateLocal makes its directory as Submit does (createRun,
// fillRun: the policy and visit copies, the state files with every visit
// pending) but plans no allocation and renders no script; ResumeLocal
// readies what is unfinished as Resume does. Each records the attempt as
// a job of the run, rundir.LocalJob, and returns holding the run's lock:
// the caller runs the steps in its own process (injob.RunLocal) as that
// job, then releases the lock. The lock is what tells a local run alive:
// no other command resumes it meanwhile.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/input"
	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/state"
)

// LocalOptions is a new run on this machine.
type LocalOptions struct {
	Input *input.Input // read by the caller (input.ReadInput)
	Dir   string       // the run directory to create
	Name  string       // the run's name and ID; "": Dir's folder name
	// Slices asked for on the command line (0: the policy's).
	Slices int
	// Files, when set, is a folder of the caller's (the built-in example)
	// moved into the new run as RUN-DIR/pipeline: the steps whose policy
	// is in it find {pipelinedir} there.
	Files    string
	SiteFile string // the site file the run names, if any
	// FreezeDry names stages whose every call is captured as it starts,
	// kept in the run for every attempt, as Submit keeps them.
	FreezeDry []string
	Now       func() time.Time
}

// LocalRun is a run ready to run on this machine as job Job (attempt
// Attempt), holding the run's lock until Release.
type LocalRun struct {
	Name, Dir string
	Job       string
	Attempt   int
	Visits    int  // visits to run
	Retried   int  // visits made pending again: failed, interrupted, or with a data ID not done (ResumeLocal)
	Complete  bool // nothing left to run: no job recorded (ResumeLocal)
	// Refreshed lists the folders the pipeline files were copied from
	// again (ResumeLocal with refresh).
	Refreshed []string
	lock      *runLock
}

// Release releases the run's lock.
func (r *LocalRun) Release() { r.lock.unlock() }

// localFiles is where LocalOptions.Files goes in the run directory.
const localFiles = "pipeline"

// CreateLocal creates the directory of a new run on this machine, with
// its first attempt recorded as job rundir.LocalJob(1). A run directory
// that exists already is refused, as Submit refuses a run name in use.
func CreateLocal(o LocalOptions) (*LocalRun, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("%w: run directory: %v", conf.ErrInvalid, err)
	}
	l := rundir.Layout{Dir: dir}
	name := o.Name
	if name == "" {
		name = filepath.Base(dir)
	}
	if err := rundir.CheckName(name); err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("%w: run directory %s exists already: choose another, or resume it (dpsbatch local --resume %s)", conf.ErrInvalid, dir, dir)
	}
	planned, err := localPlan(o.Input)
	if err != nil {
		return nil, err
	}
	rj := newRunJob(rundir.Settings{SiteFile: o.SiteFile, Request: rundir.Request{Slices: o.Slices}}, o.Input, planned, name, l)
	if o.Files != "" {
		movePipelineDir(&rj, o.Files, filepath.Join(dir, localFiles))
	}
	job := rundir.LocalJob(1)
	lk, err := createRun(filepath.Dir(dir), filepath.Base(dir), func(tl rundir.Layout) error {
		if err := fillRun(tl, l, o.Input, rj, o.SiteFile, now()); err != nil {
			return err
		}
		if err := writeFreezeDry(tl, o.Input, o.FreezeDry); err != nil {
			return err
		}
		if o.Files != "" {
			if err := os.Rename(o.Files, filepath.Join(tl.Dir, localFiles)); err != nil {
				return fmt.Errorf("jobs: %w", err)
			}
		}
		return recordLocalJob(rundir.Records(tl, rj.set), job, 1, now())
	})
	if err != nil {
		return nil, err
	}
	return &LocalRun{Name: name, Dir: dir, Job: job, Attempt: 1, Visits: o.Input.Visits(), lock: lk}, nil
}

// localPlan is a local run's plan: no allocation, each step's slices.
func localPlan(in *input.Input) (*RunPlan, error) {
	planned := &RunPlan{Steps: make([]StepPlan, len(in.Steps))}
	for i, st := range in.Steps {
		var err error
		if _, planned.Steps[i], err = stepSlices(in.File, st); err != nil {
			return nil, err
		}
	}
	return planned, nil
}

// movePipelineDir makes the pipeline folders of rj's steps under from
// (the one their files are copied from, PipelineFrom, which resume
// --refresh copies again) name the same place under to.
func movePipelineDir(rj *runJob, from, to string) {
	move := func(dir *string) {
		if rel, err := filepath.Rel(from, *dir); err == nil && !strings.HasPrefix(rel, "..") {
			*dir = filepath.Join(to, rel)
		}
	}
	move(&rj.set.PipelineFrom)
	for i := range rj.steps {
		move(&rj.steps[i].set.PipelineFrom)
	}
}

// ResumeLocal readies the unfinished visits of the run in dir, run on
// this machine, for another attempt there, as Resume does for a job:
// visits left running count as interrupted, failed and interrupted ones
// run again. It waits up to wait for the run's lock (a local run of it
// that is still running holds it). An earlier attempt that recorded no
// end died with its process: its end is recorded. With nothing left to
// run it records no job, releases the lock and says Complete.
func ResumeLocal(ctx context.Context, dir string, wait time.Duration, refresh bool) (*LocalRun, error) {
	l := rundir.Layout{Dir: dir}
	lk, err := lockRun(ctx, l, wait)
	if err != nil {
		return nil, err
	}
	r, err := resumeLocal(l, lk, refresh)
	switch {
	case err != nil:
		lk.unlock()
		return nil, err
	case r.Complete:
		lk.unlock()
		r.lock = nil
	}
	return r, nil
}

// resumeLocal is ResumeLocal under the run's lock lk.
func resumeLocal(l rundir.Layout, lk *runLock, refresh bool) (*LocalRun, error) {
	if err := migrateRun(l); err != nil {
		return nil, err
	}
	run, set, err := readWholeRun(l)
	if err != nil {
		return nil, err
	}
	if local, err := RanLocally(l.Dir); err != nil || !local {
		return nil, fmt.Errorf("%w: run %s was submitted to Slurm: resume it there (dpsbatch resume %s)", conf.ErrInvalid, run.Name, l.Dir)
	}
	r := &LocalRun{Name: run.Name, Dir: l.Dir, lock: lk}
	if refresh {
		if r.Refreshed, err = refreshPipelineFiles(l, set, time.Now()); err != nil {
			return nil, err
		}
	}
	open := false
	steps, err := runSteps(l, set)
	if err != nil {
		return nil, err
	}
	for _, part := range steps {
		pr, err := resumePipeline(part.l, 0, false)
		if err != nil {
			return nil, err
		}
		r.Visits += pr.visits
		r.Retried += pr.retried
		open = open || part.set.Listen && pr.inputOpen
	}
	if r.Visits == 0 && !open {
		r.Complete = true
		return r, nil
	}
	records := rundir.Records(l, set)
	if err := endDeadLocalJobs(records); err != nil {
		return nil, err
	}
	if r.Attempt, err = nextAttempt(l); err != nil {
		return nil, err
	}
	r.Job = rundir.LocalJob(r.Attempt)
	return r, recordLocalJob(records, r.Job, r.Attempt, time.Now())
}

// RanLocally reports whether the run in dir runs on this machine
// (dpsbatch local): every job it records is a local one.
func RanLocally(dir string) (bool, error) {
	st, err := state.OpenReadOnly(rundir.Layout{Dir: dir}.State())
	if err != nil {
		return false, err
	}
	defer st.Close()
	js, err := st.Jobs()
	if err != nil || len(js) == 0 {
		return false, err
	}
	for _, j := range js {
		if !rundir.IsLocalJob(j.ID) {
			return false, nil
		}
	}
	return true, nil
}

// recordLocalJob records job (attempt) in the state files of records, as
// submitted now.
func recordLocalJob(records []rundir.Layout, job string, attempt int, now time.Time) error {
	for _, r := range records {
		err := state.With(r.State(), func(st *state.Store) error {
			return st.AddJob(state.Job{ID: job, Attempt: attempt, Submitted: now, State: state.JobSubmitted})
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// endDeadLocalJobs records the end of the local jobs in the state files
// of records that recorded none: their process died (the caller holds
// the run's lock, which a live one would hold), so a new attempt does not
// wait for them.
func endDeadLocalJobs(records []rundir.Layout) error {
	for _, r := range records {
		err := state.With(r.State(), func(st *state.Store) error {
			js, err := st.Jobs()
			if err != nil {
				return err
			}
			for _, j := range js {
				if !j.Ended.IsZero() || !rundir.IsLocalJob(j.ID) {
					continue
				}
				if err := st.JobEnded(j.ID, state.EndFailed, 1, "its process ended before recording how (killed?)", time.Now()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
