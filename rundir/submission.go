package rundir

import (
	"crypto/rand"
	"fmt"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/state"
)

// NewSubmission draws the token of a submission of the run's attempt.
func NewSubmission(run string, attempt int, now time.Time) state.Submission {
	token := fmt.Sprintf("a%d-%s", attempt, strings.ToLower(rand.Text()[:10]))
	return state.Submission{Token: token, Attempt: attempt, Name: run + ":" + token, Recorded: now}
}

// TokenOf is the submission token in a job's Slurm name, "" if it has
// none (a job submitted by an older dpsbatch, or by hand).
func TokenOf(jobName string) string {
	i := strings.LastIndexByte(jobName, ':')
	if i < 0 {
		return ""
	}
	return jobName[i+1:]
}

// LocalJob is the job ID of a run's attempt on this machine (dpsbatch
// local): the use case records it as submit records a Slurm job, and its
// steps' rank 0 run as it.
func LocalJob(attempt int) string { return fmt.Sprintf("%s-%d", localJobPrefix, attempt) }

// localJobPrefix begins the ID of every job outside Slurm: "local" alone
// is that of `dpsbatch run --state` by hand.
const localJobPrefix = "local"

// IsLocalJob reports whether job id ran outside Slurm (LocalJob, or
// "local"): Slurm is never asked about it.
func IsLocalJob(id string) bool {
	return id == localJobPrefix || strings.HasPrefix(id, localJobPrefix+"-")
}
