// Package state owns the state file of a run: one SQLite database per run
// that records the run itself (Run), the Slurm jobs it was run as (Job)
// and each start of them (JobStart: Slurm runs a requeued job again under
// the same ID), every visit of its visit list with its state and attempts
// (Visit), the time each stage took per visit, the slices that failed, and
// the events the run received and sent (EventRecord). It owns the file's schema and
// its migrations, the choice of journal mode for the file system the file
// lives on, and the queries that status and resume need.
//
// Who writes: one writer at a time. `dpsbatch submit` creates the file
// (Create) and `dpsbatch resume` opens it (Open) while no job of the run is
// live; while a job runs, only its Pipeline (rank 0) has it open for
// writing. Readers (`dpsbatch status`) open it with OpenReadOnly at any
// time: their queries are short single statements, each its own read
// transaction (no reader holds a lock across two queries), and every open
// connection waits for a busy file (busy_timeout) instead of failing. The
// job's Pipeline opens the file persistent (OpenWith, Options.Persist): in
// rollback-journal mode a reader's shared lock holds its commit back, and
// it then tries again, with a warning in the job's log, for as long as
// it lives, so that no visit's result is lost to a lock.
// The front end records a Submission before each sbatch and its job once
// known (AdoptJob); a job's rank 0 claims the run (ClaimRun) before it
// runs a visit, so that two jobs of a run never run visits at once; where
// flock is missing, the run's lock is a row taken by TakeLock.
//
// Crash safety: each VisitStarted and each VisitEnded is one committed
// transaction, so a writer killed at any instant leaves a readable file in
// which a visit recorded done was done before it was recorded. A visit
// left running by a dead writer is turned back into interrupted by the
// next job's InterruptRunningOf (scoped to the jobs that no longer run),
// or by InterruptRunning at a resume, and Runnable hands it out again;
// until then readers present it as interrupted themselves (RunningByJob
// tells them whose it is). Every other write
// (AddVisit, Heartbeat, RecordEvent, CloseInput, ...) is one transaction
// too.
//
// Growth: the visit list, the stage times (one row per stage per visit
// attempt), the slice failures and the events (one row per event recorded,
// never pruned) grow the file, as do the job starts (one row per start);
// a job's heartbeat and broker address overwrite its row and do not.
//
// Secrets: nothing here is a secret, and nothing secret may be stored. A
// broker address is refused if it carries user information (a token, a
// user and password): see SetJobBroker.
//
// The journal mode is chosen from the file system of the file's folder
// (see JournalMode): WAL with synchronous=NORMAL on local file systems;
// DELETE with synchronous=FULL on network and cluster file systems (NFS,
// Lustre, GPFS, CIFS/SMB, BeeGFS, Ceph, 9p, AFS, FUSE, and anything not
// known to be local), where WAL's shared memory does not work. An admin or
// a test overrides the choice with the environment variable
// DPSBATCH_STATE_JOURNAL=wal or DPSBATCH_STATE_JOURNAL=delete.
//
// state imports nothing of dpsbatch but internal helpers: package jobs
// adapts a Store to the harness's Recorder.
package state

import (
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/enum"
)

// Sentinel errors, for errors.Is.
var (
	// ErrExists: Create found a file (or a leftover journal) at the path,
	// or AddJob a job with the same ID.
	ErrExists = errors.New("already exists")
	// ErrNotFound: Open or OpenReadOnly found no file at the path, or a
	// job method no job with that ID.
	ErrNotFound = errors.New("not found")
	// ErrNewerSchema: the file was written by a newer dpsbatch, whose
	// schema this one does not know. The error names both versions.
	ErrNewerSchema = errors.New("state file has a newer schema")
	// ErrOldSchema: OpenReadOnly found a file at an older schema and
	// could not bring it forward (as Open does) to read it.
	ErrOldSchema = errors.New("state file has an older schema")
	// ErrNotStateFile: the file is an SQLite database, but not a dpsbatch
	// state file.
	ErrNotStateFile = errors.New("not a dpsbatch state file")
	// ErrNoSuchVisit: a visit method was given an ID that is not in the
	// run's visit list.
	ErrNoSuchVisit = errors.New("no such visit")
	// ErrAlreadyDone: VisitStarted was called for a visit recorded done.
	// A finished visit is never run again.
	ErrAlreadyDone = errors.New("visit already done")
	// ErrReadOnly: a write method was called on a Store from OpenReadOnly.
	ErrReadOnly = errors.New("opened read-only")
)

// VisitState is where a visit is in its life. A visit starts pending;
// VisitStarted makes it running; VisitEnded makes it done, failed or
// interrupted; InterruptRunningOf (or InterruptRunning) makes the running
// visits of a dead job interrupted; Retry makes failed and interrupted visits pending again.
// Done is final.
type VisitState string

// The visit states.
const (
	Pending     VisitState = "pending"     // not run yet, or to be run again
	Running     VisitState = "running"     // started by a job and not ended
	Done        VisitState = "done"        // ran to the end: never run again
	Failed      VisitState = "failed"      // ran and failed: resume may retry it
	Interrupted VisitState = "interrupted" // stopped before its end: run again
)

// visitStates is every state, by the small integer the file stores.
var visitStates = []VisitState{Pending, Running, Done, Failed, Interrupted}

// ParseVisitState returns the visit state named word, or an error quoting
// it. The zero VisitState is no state.
func ParseVisitState(word string) (VisitState, error) {
	st, err := enum.Parse("visit state", word, visitStates)
	if err != nil {
		return "", fmt.Errorf("state: %w", err)
	}
	return st, nil
}

func (st VisitState) String() string { return string(st) }

// MarshalText writes st's name.
func (st VisitState) MarshalText() ([]byte, error) { return []byte(st), nil }

// UnmarshalText reads a name ParseVisitState knows.
func (st *VisitState) UnmarshalText(b []byte) (err error) {
	*st, err = ParseVisitState(string(b))
	return err
}

// code is the integer the file stores for st, or -1.
func (st VisitState) code() int {
	for i, s := range visitStates {
		if s == st {
			return i
		}
	}
	return -1
}

// Run is what the state file records about its run, at Create; Settings
// (SetSettings) and InputClosed (CloseInput, ReopenInput) change later.
type Run struct {
	ID        string // unique run ID (required)
	Name      string // the operator's name for the run
	Dir       string // the run's folder
	Pipeline  string // path of the pipeline policy
	PolicySum string // checksum of the policy as submitted
	Site      string // path of the site file
	Partition string // Slurm partition
	Created   time.Time
	// Settings is free JSON the front end keeps with the run (the plan,
	// for example); "" or a valid JSON text.
	Settings string
	// InputClosed is when a no-more-data event reached the run (zero while
	// its input is open), InputClosedWhy what closed it: see CloseInput.
	InputClosed    time.Time
	InputClosedWhy string
}

// Job is one Slurm job of the run. State, ExitCode and Reason are Slurm's
// words (PENDING, COMPLETED, TIMEOUT, ...), recorded as the front end
// learns them.
type Job struct {
	ID        string // Slurm job ID
	Attempt   int    // 1 for the first job of the run, 2 for the first resume, ...
	Submitted time.Time
	Started   time.Time // zero until the job reports in
	Ended     time.Time // zero while live
	State     string
	ExitCode  int
	Reason    string
	Host      string // where rank 0 runs
	// Broker is the URL (nats://host:port) where the job's broker listens,
	// "" if it has none or it is not known yet: see SetJobBroker. It never
	// holds user information.
	Broker string
	// Heartbeat is rank 0's last heartbeat (zero if none yet) and
	// HeartbeatVisit the visit it was running then ("" when idle): see
	// Heartbeat.
	Heartbeat      time.Time
	HeartbeatVisit string
}

// Visit is one visit of the run as recorded.
type Visit struct {
	ID       string
	Seq      int // 1-based position in the visit list
	State    VisitState
	Attempts int    // how many times it was started
	Job      string // the job that started it last
	Started  time.Time
	Ended    time.Time // zero while running or never ended
	Err      string    // why it failed or was interrupted
	Capture  string    // the capture of its failure on the Pipeline, relative to the run directory
}

// Failure is one slice of a visit that failed at one stage, as SliceFailed
// recorded it.
type Failure struct {
	Visit   string
	Attempt int // the visit's attempt it failed in
	Stage   string
	Slice   int // rank
	DataID  string
	Err     string
	Capture string // the failed call's capture, relative to the run directory ("" for none)
}

// nanos is how times are stored: Unix nanoseconds, NULL for the zero time.
func nanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

// fromNanos reverses nanos.
func fromNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64)
}

// str reads a nullable text column.
func str(s sql.NullString) string { return s.String }

// wrap prefixes err with the package and the file's path, keeping it for
// errors.Is.
func (s *Store) wrap(what string, err error) error {
	return fmt.Errorf("state: %s: %s: %w", s.path, what, err)
}
