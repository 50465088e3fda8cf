// Package scheduler owns dpsbatch's side of Slurm: planning an allocation
// from a partition's nodes, CPUs and memory (PlanAllocation), and the
// Backend that submits an already rendered job script, queries jobs in the
// queue (Jobs) and in accounting (History), signals and cancels them, and
// discovers the live partitions. The CLI backend drives Slurm's command
// line tools (sbatch, squeue, sinfo, scontrol, scancel, sacct, and
// sacctmgr for the accounts and QoS a user may use: AccountingReader),
// and tries a command again while slurmctld is busy or restarting
// (retry.go). The REST backend talks to slurmrestd through the client in
// scheduler/slurmrest (rest.go); the site file chooses (ForSite). Every
// backend passes the shared suite in scheduler/schedtest against a real
// cluster.
//
// Nothing here waits for a job: callers that wait poll Jobs themselves, at
// an interval of their choosing.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dpsbatch/dpsbatch/site"
)

// ErrNoAccounting is returned by History when the cluster keeps no job
// accounting (no slurmdbd): only Jobs, until Slurm forgets finished jobs,
// knows what became of them.
var ErrNoAccounting = errors.New("scheduler: the cluster has no job accounting")

// Job is what Slurm says about one job.
type Job struct {
	ID   string
	Name string
	// State is Slurm's base state in upper case: PENDING, CONFIGURING,
	// RUNNING, COMPLETING, SUSPENDED, REQUEUED, COMPLETED, FAILED,
	// CANCELLED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, PREEMPTED, BOOT_FAIL,
	// DEADLINE, ...
	State string
	// Reason is why the job is pending or how it ended (Dependency,
	// Resources, NonZeroExitCode, ...); "" for none.
	Reason string
	// ExitCode is the exit status of the job's script; Signal the number
	// of the signal that ended it, 0 if none.
	ExitCode, Signal int
	// Submitted, Started and Ended are zero until they happened.
	Submitted, Started, Ended time.Time
	// Deadline is when a started job that has not ended reaches its time
	// limit (its start plus the limit, as scontrol update moves it);
	// zero for a job with no limit, or not started, or ended.
	Deadline time.Time
	// Expected is, for a pending job, the earliest Slurm expects it to
	// start (a requeued job's begin time, or the backfill estimate);
	// zero when it has none or the job is not pending.
	Expected  time.Time
	Nodes     string // Slurm host list, "" before the job starts
	Partition string
	Source    string // where this came from: "squeue", "sacct", "slurmrestd", ...
}

// terminal holds the states of a job that has ended for good.
var terminal = map[string]bool{
	"COMPLETED": true, "FAILED": true, "CANCELLED": true, "TIMEOUT": true,
	"NODE_FAIL": true, "OUT_OF_MEMORY": true, "PREEMPTED": true,
	"BOOT_FAIL": true, "DEADLINE": true, "REVOKED": true,
}

// Live reports whether the job may still run or is still running:
// pending, configuring, running, completing, suspended, requeued,
// held... Every state that is not an ending one counts as live, including
// states this package does not know, so that a caller never records an
// outcome for a job that has not ended. A job with no state is not live.
func (j Job) Live() bool { return j.State != "" && !terminal[j.State] }

// StartHistory is what a Backend may also offer: every start of each of
// the jobs ids, from accounting, oldest first. Slurm runs a job it
// requeues (a node failure, `scontrol requeue`, preemption) again under
// the same ID; each ended start's State says why it ended (REQUEUED,
// NODE_FAIL, PREEMPTED, ...), and the last is the job as History gives
// it. Without it, or without accounting (ErrNoAccounting), only the
// latest start is known.
type StartHistory interface {
	Starts(ctx context.Context, ids []string) (map[string][]Job, error)
}

// Submission is an already rendered job script and where to run it.
type Submission struct {
	Script []byte // the whole script, #SBATCH lines included
	Dir    string // working directory of the job, absolute
	// Dependency is an sbatch dependency such as afterany:123, optional.
	Dependency string
	// Name, when set, is the job's name, whatever the script says: a
	// caller that looks its job up by name (Named) sets it here, so
	// that a site's own template cannot lose it.
	Name string
}

// Backend is how dpsbatch talks to Slurm. Implementations are safe for
// use by several goroutines. Every method takes a context that bounds it;
// none of them waits for a job to change state.
type Backend interface {
	// Submit queues s and returns the new job's ID.
	Submit(ctx context.Context, s Submission) (jobID string, err error)
	// Jobs asks the controller about the jobs ids in one query, however
	// many there are. Jobs it does not know (never existed, or finished
	// longer ago than MinJobAge) are absent from the map; that is not an
	// error.
	Jobs(ctx context.Context, ids []string) (map[string]Job, error)
	// History asks job accounting (sacct) about the jobs ids; unknown
	// jobs are absent. It returns ErrNoAccounting when the cluster keeps
	// none. Accounting learns of a job's end a few seconds after it, and
	// may for a few seconds more hold the end without the start: Slurm
	// 22.05's sacct then names the job "allocation", with no partition.
	History(ctx context.Context, ids []string) (map[string]Job, error)
	// Named finds the jobs called name that the controller remembers
	// and, where the cluster keeps accounting, those accounting holds
	// that were submitted since since: each job once, the controller's
	// word first. A caller that recorded a name before submitting finds
	// out this way whether the submission reached Slurm. No job is not
	// an error.
	Named(ctx context.Context, name string, since time.Time) ([]Job, error)
	// Cancel cancels job id when signal is "", else sends it the signal
	// (a name such as "USR1" or "TERM") in every job step, the batch
	// script excluded.
	Cancel(ctx context.Context, id string, signal string) error
	// Partitions describes the cluster's partitions as they are now.
	Partitions(ctx context.Context) ([]site.Live, error)
}

// ForSite returns the backend the site file chooses (its scheduler
// section): Slurm's command line tools, or slurmrestd. A nil site is the
// command line tools with their defaults.
func ForSite(s *site.Site) (Backend, error) {
	if s == nil {
		return NewCLI(CLIOptions{})
	}
	sc := s.Scheduler
	if sc.Backend == site.BackendREST {
		if err := restCarries(s.Sbatch); err != nil {
			return nil, fmt.Errorf("%s: sbatch_options: %w", s.Path, err)
		}
		return NewREST(RESTOptions{URL: sc.URL, TokenFile: sc.TokenFile, TokenEnv: sc.TokenEnv, User: sc.User, RetryWait: sc.RetryWait})
	}
	return NewCLI(CLIOptions{RetryWait: sc.RetryWait})
}
