package injob

// One job of a run runs its visits at a time. The run lock keeps two
// commands from submitting at once, but two jobs of a run can still start
// together: an auto-resume follow-on and a job submitted by hand, a job
// Slurm requeued. A job's rank 0 claims the run in the state file before
// it touches a visit (state.ClaimRun): while another job of the run is
// running visits — its start recorded, its end not, its heartbeat (or
// start) recent, and Slurm, when it can be asked, not saying it ended —
// it waits for that job to end, then runs what is left. Asked to stop
// while it waits, it ends having run none, and records why.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

// silentBeats is how many heartbeat intervals a job's Pipeline may stay
// silent before another job stops taking it for alive.
const silentBeats = 3

// claimRun records this job as the one running the run's visits, first
// recording the job itself if its submitter did not (recordSelf), and
// waits while another job of the run is running them. stop (may be nil)
// and the stop file end the wait: the error then wraps
// harness.ErrInterrupted and names the other job.
func (j *InJob) claimRun(st *state.Store, set rundir.Settings, host string, stop <-chan struct{}) error {
	beat := set.Heartbeat
	if beat <= 0 {
		beat = rundir.DefaultHeartbeat
	}
	fresh := silentBeats*beat + 10*time.Second
	var ended []string // jobs Slurm says have ended, whatever their rows say
	every := j.Every
	if every <= 0 {
		every = 2 * time.Second
	}
	waiting := ""
	for {
		other, ok, err := st.ClaimRun(j.JobID, j.Restart, host, j.Now(), fresh, ended)
		if errors.Is(err, state.ErrNotFound) {
			// No row for this job: its submitter died before recording it.
			var added bool
			added, err = recordSelf(st, j.JobID, host, j.Now())
			switch {
			case errors.Is(err, state.ErrNotFound):
				return nil // not a submitted job of the run (run by hand): nothing to claim
			case err == nil && added:
				j.log().Warn("this job was not recorded by whoever submitted it (killed mid-submission?): it recorded itself", "job", j.JobID)
			}
			if err == nil {
				continue
			}
		}
		if err != nil {
			return err
		}
		if ok {
			if waiting != "" {
				j.log().Info("the other job of the run has ended: this job runs what is left", "other", waiting)
			}
			return nil
		}
		if j.slurmEnded(other.ID) {
			ended = append(ended, other.ID)
			continue
		}
		if waiting != other.ID {
			waiting = other.ID
			last := other.Started
			if other.Heartbeat.After(last) {
				last = other.Heartbeat
			}
			j.log().Warn("another job of the run is running its visits: this job waits for it to end before running any",
				"other", other.ID, "attempt", other.Attempt, "host", other.Host, "lastHeard", j.Now().Sub(last).Round(time.Second).String(),
				"visit", other.HeartbeatVisit)
		}
		// Alive while it waits (status would call it silent otherwise);
		// with no start recorded it does not count as running visits.
		if err := st.Heartbeat(j.JobID, j.Now(), ""); err != nil {
			j.log().Warn("could not record the heartbeat", "err", err)
		}
		select {
		case <-stop:
			return j.gaveUp(other)
		case <-time.After(every):
		}
		if j.StopFile != "" {
			if _, err := os.Stat(j.StopFile); err == nil {
				return j.gaveUp(other)
			}
		}
	}
}

func (j *InJob) gaveUp(other state.Job) error {
	err := fmt.Errorf("injob: %w: stopped while waiting for job %s of the run, which was running its visits: this job ran none",
		harness.ErrInterrupted, other.ID)
	j.log().Warn(err.Error())
	return err
}

// slurmEnded reports whether Slurm (when j.Slurm is set) says job id
// runs no visits: ended, completing, or pending again after a requeue
// (holdsVisits); false when it cannot tell.
func (j *InJob) slurmEnded(id string) bool {
	if j.Slurm == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	known, err := scheduler.Lookup(ctx, j.Slurm, []string{id})
	if err != nil {
		j.log().Warn("cannot ask Slurm whether the other job of the run still runs", "other", id, "err", err)
		return false
	}
	sj, ok := known[id]
	return ok && !(sj.Live() && scheduler.Running(sj.State))
}

// recordSelf records job id in st when it finds no row of its own (its
// submitter died before recording it, and no command has adopted it
// since): under the submission its Slurm name carries (SLURM_JOB_NAME),
// else as the attempt the job script says (DPSBATCH_ATTEMPT); an error
// wrapping state.ErrNotFound when it has neither (a job run by hand). Its
// start is the caller's to record (state.ClaimRun).
func recordSelf(st *state.Store, id, host string, at time.Time) (bool, error) {
	attempt, _ := strconv.Atoi(os.Getenv("DPSBATCH_ATTEMPT"))
	return st.AdoptJob(rundir.TokenOf(os.Getenv("SLURM_JOB_NAME")), state.Job{ID: id, Attempt: attempt, Submitted: at,
		Host: host, State: state.JobSubmitted})
}
