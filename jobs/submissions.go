package jobs

// Submissions: a job is recorded before sbatch is called, under a token
// drawn for it that the job carries in its Slurm name (RUN:TOKEN; not in
// --comment, which reaches sacct only with AccountingStoreFlags=
// job_comment). A command killed between sbatch and recording the job
// leaves a submission without a job; the next command that takes the run
// lock asks Slurm for jobs of that name (squeue, then sacct) and adopts
// the one it finds, or voids the submission when Slurm never had it. A
// job that starts and finds no row for its own ID records itself
// (recordSelf). So one attempt never has two jobs.

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

// settleSubmissions finds out what became of the run's submissions that
// have no job recorded (their submitter died between sbatch and recording
// the job): Slurm's job of that name is adopted in every state file of
// record, and a submission Slurm never had is voided. The caller holds
// the run lock, which sbatch inherits: no sbatch of the run is still
// running.
func settleSubmissions(ctx context.Context, b scheduler.Backend, l rundir.Layout, record []rundir.Layout) error {
	st, err := state.OpenReadOnly(l.State())
	if err != nil {
		return err
	}
	subs, err := st.Submissions()
	st.Close()
	if err != nil {
		return err
	}
	for _, sub := range subs {
		if sub.Job != "" || sub.Void != "" {
			continue
		}
		found, err := b.Named(ctx, sub.Name, sub.Recorded)
		if err != nil {
			return fmt.Errorf("jobs: cannot tell whether attempt %d's submission (job name %s) reached Slurm: %w", sub.Attempt, sub.Name, err)
		}
		for _, r := range record {
			if err := settleOne(r, sub, found); err != nil {
				return err
			}
		}
	}
	return nil
}

// unrecordedJobs lists the live jobs of the run's submissions that have
// no job recorded, asking Slurm by name; it changes nothing (Cancel
// cancels them without taking the run lock).
func unrecordedJobs(ctx context.Context, b scheduler.Backend, l rundir.Layout) ([]string, error) {
	st, err := state.OpenReadOnly(l.State())
	if err != nil {
		return nil, err
	}
	subs, err := st.Submissions()
	st.Close()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, sub := range subs {
		if sub.Job != "" || sub.Void != "" {
			continue
		}
		found, err := b.Named(ctx, sub.Name, sub.Recorded)
		if err != nil {
			return ids, err
		}
		for _, j := range found {
			if j.Live() {
				ids = append(ids, j.ID)
			}
		}
	}
	return ids, nil
}

// earliest is the job Slurm gave the smallest ID, of one or more: job
// IDs are decimal numbers, compared as numbers ("99" before "100").
func earliest(found []scheduler.Job) scheduler.Job {
	return slices.MinFunc(found, func(a, b scheduler.Job) int {
		return cmp.Or(cmp.Compare(len(a.ID), len(b.ID)), strings.Compare(a.ID, b.ID))
	})
}

// settleOne records in r's state file what Slurm said of sub: its job
// (the earliest, should there be several), or that it has none.
func settleOne(r rundir.Layout, sub state.Submission, found []scheduler.Job) error {
	st, err := state.Open(r.State())
	if err != nil {
		return err
	}
	defer st.Close()
	if len(found) == 0 {
		return st.VoidSubmission(sub.Token, "Slurm has no job of its name: its submitter ended before sbatch accepted it")
	}
	j := earliest(found)
	submitted := j.Submitted
	if submitted.IsZero() {
		submitted = sub.Recorded
	}
	_, err = st.AdoptJob(sub.Token, state.Job{ID: j.ID, Attempt: sub.Attempt, Submitted: submitted, State: state.JobSubmitted})
	return err
}

// submitOne records sub in every state file of sts, submits s under its
// name, and records the job Slurm gave it; a submission sbatch refused is
// voided. The run lock, held by the caller, is shared with sbatch.
func submitOne(ctx context.Context, b scheduler.Backend, lk *runLock, sts []*state.Store, sub state.Submission, s scheduler.Submission) (string, error) {
	for _, st := range sts {
		if err := st.RecordSubmission(sub); err != nil {
			return "", err
		}
	}
	s.Name = sub.Name
	var id string
	err := lk.sharing(func() error {
		var err error
		id, err = b.Submit(ctx, s)
		return err
	})
	if err != nil {
		// sbatch may have failed after Slurm accepted the job (killed,
		// timed out waiting for the answer): ask Slurm by name.
		found, nerr := b.Named(context.WithoutCancel(ctx), sub.Name, sub.Recorded)
		if nerr != nil {
			return "", err // the next command settles it, under the lock
		}
		if len(found) > 0 {
			id = found[0].ID
			err = nil
		}
	}
	if err != nil {
		for _, st := range sts {
			st.VoidSubmission(sub.Token, "sbatch refused it: "+err.Error())
		}
		return "", err
	}
	for _, st := range sts {
		if _, err := st.AdoptJob(sub.Token, state.Job{ID: id, Attempt: sub.Attempt, Submitted: sub.Recorded, State: state.JobSubmitted}); err != nil {
			return id, fmt.Errorf("jobs: recording job %s in %s: %w", id, st.Path(), err)
		}
	}
	return id, nil
}
