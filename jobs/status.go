package jobs

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/internal/enum"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

// JobStatus is one Slurm job of a run, as best known: from Slurm while it
// remembers the job (squeue), then from accounting (sacct), else from
// what rank 0 recorded in the state file.
type JobStatus struct {
	ID        string    `json:"id"`
	Attempt   int       `json:"attempt"`
	State     string    `json:"state"`            // Slurm's state, or the state file's
	Source    string    `json:"source"`           // squeue, sacct or state
	Live      bool      `json:"live"`             // pending or running
	ExitCode  int       `json:"exitCode"`         // as Slurm or rank 0 saw it
	Reason    string    `json:"reason,omitempty"` // Slurm's reason, or why rank 0 stopped
	Recorded  string    `json:"recorded,omitempty"`
	Submitted time.Time `json:"submitted"`
	Started   time.Time `json:"started,omitzero"`
	Ended     time.Time `json:"ended,omitzero"`
	// Died says the job ended without rank 0 recording how: killed, out
	// of memory, a node failure, or cancelled before it started.
	Died bool `json:"died,omitempty"`
	// KilledForMemory, for a job that died, is slurmstepd's line in the
	// job's log saying it killed a step of the job for memory.
	KilledForMemory string `json:"killedForMemory,omitempty"`
	// Broker is where the job's broker listens (relay commands use it).
	Broker string `json:"broker,omitempty"`
	// Heartbeat is the Pipeline's last heartbeat, with the visit then in
	// flight while that visit still runs ("" once it has ended).
	Heartbeat      time.Time `json:"heartbeat,omitzero"`
	HeartbeatVisit string    `json:"heartbeatVisit,omitempty"`
	// Silent says Slurm has the job running but its Pipeline has not
	// said it is alive for more than three heartbeats (or not once since
	// the job started): it may be hung, stopped or cut off.
	Silent bool `json:"silent,omitempty"`
	// Starts is every start of the job, oldest first, when Slurm
	// requeued it (ran it again under the same ID); the job's own fields
	// are its latest start's.
	Starts []StartStatus `json:"starts,omitempty"`
	// Requeued is set while a job Slurm requeued waits to start again.
	Requeued *Requeue `json:"requeued,omitempty"`
	// Usage is what the job used, from accounting, once stored
	// (RecordUsage).
	Usage *JobUsage `json:"usage,omitempty"`
}

// RunStatus is a run's progress.
type RunStatus struct {
	Run       string `json:"run"`
	Dir       string `json:"runDir"`
	Pipeline  string `json:"pipeline"`
	Partition string `json:"partition"`
	// Request is what the run's next job asks for (resume may change it).
	Request RunRequest               `json:"request"`
	Created time.Time                `json:"created"`
	Visits  int                      `json:"visits"`
	Counts  map[state.VisitState]int `json:"counts"`
	Jobs    []JobStatus              `json:"jobs"`
	Live    bool                     `json:"live"` // a job of the run is pending or running
	Outcome Outcome                  `json:"outcome"`
	Rate    float64                  `json:"visitsPerSecond,omitempty"` // done visits per second of the run so far
	ETA     time.Duration            `json:"eta,omitempty"`
	Journal string                   `json:"journal"` // the state file's journal mode and why
	FS      string                   `json:"fileSystem"`
	// Listen: the run reads trigger events after its visit list, until
	// a no-more-data closes its input (InputClosed, with why).
	Listen         bool          `json:"listen,omitempty"`
	InputClosed    time.Time     `json:"inputClosed,omitzero"`
	InputClosedWhy string        `json:"inputClosedWhy,omitempty"`
	Heartbeat      time.Duration `json:"heartbeatInterval"`
	// DroppedEvents counts the events the run's Pipeline dropped:
	// messages that did not decode as events, and events malformed for
	// their receiver (dpsbatch events lists each, with why).
	DroppedEvents int `json:"droppedEvents"`
	// DiskFull is set when a job died without recording why and the
	// run directory's file system is full, or nearly: a likely cause.
	DiskFull *DiskSpace `json:"diskFull,omitempty"`
	// Pipelines, for a run whose steps have folders of their own (a
	// production's): each step's own status (its Pipeline is the
	// production's name for it), in the run's order. The run's Visits,
	// Counts and Rate are their sums; its Jobs are the run's, each
	// recorded as ended once every step recorded its end in it (the
	// first that did not complete tells how), silent when one of the
	// steps is.
	Pipelines []RunStatus `json:"pipelines,omitempty"`
	// Unreadable, in a list of runs (Runs), says why the run's state
	// file or settings could not be read; the other fields are then
	// empty but for Run and Dir.
	Unreadable string `json:"unreadable,omitempty"`
	// Failures, only when asked for (status --failures, from Failures):
	// each failed visit's error and every slice failure recorded.
	Failures []Failure `json:"failures,omitempty"`
	// Outputs, only when asked for (status --outputs, from Outputs): the
	// declared output files the run's data IDs made.
	Outputs []Output `json:"outputs,omitempty"`
	// Usage is what the run's jobs used in all, from accounting, over
	// those whose usage is stored (RecordUsage); UsageNote says why it
	// could not be asked or stored.
	Usage     *RunUsage `json:"usage,omitempty"`
	UsageNote string    `json:"usageNote,omitempty"`

	// DataIDs counts the data IDs of the visits that ran by their
	// latest outcome (done, failed, interrupted, skipped), and
	// FailedDataIDs lists the first failed ones of each state file
	// (status --failures lists all): a failed data ID counts even when
	// its visit carried on and is done.
	DataIDs       map[string]int  `json:"dataIds,omitempty"`
	FailedDataIDs []DataIDFailure `json:"failedDataIds,omitempty"`

	// runningBy is how many visits the state file records running, by
	// the job that started them: see showDeadRunning.
	runningBy map[string]int
	// own is the visit counts of the run's own state file (Counts adds
	// its steps' in folders of their own).
	own map[state.VisitState]int
	// usage is the jobs' usage the state file holds; memPerSlice what
	// each slice asked for, in megabytes.
	usage       []state.JobUsage
	memPerSlice int
	// rank0: a rank 0 records the run's own state file (a step lives in
	// the run directory), so its jobs' heartbeats tell whether they are
	// silent.
	rank0 bool
}

// Outcome is where a run stands, from its visits and its jobs. The zero
// Outcome is none: Status and Wait always set one.
type Outcome string

// The outcomes of a run.
const (
	OutcomeRunning    Outcome = "running"    // a job of the run runs
	OutcomePending    Outcome = "pending"    // a job of the run is queued
	OutcomeDone       Outcome = "done"       // every visit done, and every data ID
	OutcomeFailed     Outcome = "failed"     // every visit ran, some (or some data IDs) failed
	OutcomeUnfinished Outcome = "unfinished" // no job live, visits left
)

// outcomes is every Outcome.
var outcomes = []Outcome{OutcomeRunning, OutcomePending, OutcomeDone, OutcomeFailed, OutcomeUnfinished}

// ParseOutcome returns the outcome named word, or an error quoting it.
func ParseOutcome(word string) (Outcome, error) {
	o, err := enum.Parse("run outcome", word, outcomes)
	if err != nil {
		return "", fmt.Errorf("jobs: %w", err)
	}
	return o, nil
}

func (o Outcome) String() string { return string(o) }

// MarshalText writes o's name.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o), nil }

// UnmarshalText reads a name ParseOutcome knows.
func (o *Outcome) UnmarshalText(b []byte) (err error) {
	*o, err = ParseOutcome(string(b))
	return err
}

// DiskSpace is the space of the file system that holds a run directory.
type DiskSpace struct {
	Dir  string `json:"dir"`
	Free uint64 `json:"freeBytes"` // available to an ordinary user
	Size uint64 `json:"sizeBytes"`
}

// Status reads the runs in dirs and asks Slurm about all their jobs at
// once: one squeue call however many runs, and one sacct call for the
// jobs Slurm has forgotten (when the cluster has accounting).
func Status(ctx context.Context, b scheduler.Backend, dirs []string) ([]RunStatus, error) {
	return statuses(ctx, b, dirs, false)
}

// statuses is Status; with listing, a run that cannot be read is listed
// as Unreadable, with why, instead of failing the whole list.
func statuses(ctx context.Context, b scheduler.Backend, dirs []string, listing bool) ([]RunStatus, error) {
	out, ask, err := readRuns(dirs, listing)
	if err != nil {
		return nil, err
	}
	known, err := scheduler.Lookup(ctx, b, ask)
	if err != nil {
		return nil, err
	}
	settleAll(out, known)
	requeueReasons(ctx, b, out)
	return out, nil
}

// readRuns reads the runs in dirs from their state files, and lists
// their jobs, ended ones too (Slurm or sacct knows how they ended).
func readRuns(dirs []string, listing bool) (out []RunStatus, jobs []string, err error) {
	out = make([]RunStatus, 0, len(dirs))
	for _, d := range dirs {
		rs, err := readRun(d)
		if err != nil && listing {
			out = append(out, RunStatus{Run: filepath.Base(d), Dir: d, Unreadable: err.Error()})
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		for _, j := range rs.Jobs {
			if !rundir.IsLocalJob(j.ID) { // a local run's: the state file alone knows
				jobs = append(jobs, j.ID)
			}
		}
		out = append(out, rs)
	}
	return out, jobs, nil
}

func settleAll(runs []RunStatus, known map[string]scheduler.Job) {
	for i := range runs {
		if runs[i].Unreadable == "" {
			settle(&runs[i], known)
		}
	}
}

// redrawGap is the least time between two of Watch's calls: a run
// finishing a thousand visits a second is shown twenty times a second.
const redrawGap = 50 * time.Millisecond

// Watch calls show with the status of the runs in dirs at once, within
// about redrawGap of each change to their state files (with Slurm's last
// answer about their jobs), and each time it asks Slurm (every
// slurmEvery), until Slurm says no job of the runs is live, show fails or
// ctx ends.
func Watch(ctx context.Context, b scheduler.Backend, dirs []string, slurmEvery time.Duration, show func([]RunStatus) error) error {
	changed, err := Changes(ctx, dirs...)
	if err != nil {
		changed = nil // no notices here: Slurm's pace only
	}
	var known map[string]scheduler.Job
	var asked time.Time
	for {
		out, ask, err := readRuns(dirs, false)
		if err != nil {
			return err
		}
		fresh := time.Since(asked) >= slurmEvery
		if fresh {
			if known, err = scheduler.Lookup(ctx, b, ask); err != nil {
				return err
			}
			asked = time.Now()
		}
		settleAll(out, known)
		if fresh {
			requeueReasons(ctx, b, out)
		}
		if err := show(out); err != nil {
			return err
		}
		if fresh && !slices.ContainsFunc(out, func(rs RunStatus) bool { return rs.Live }) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
			time.Sleep(redrawGap)
		case <-time.After(slurmEvery - time.Since(asked)):
		}
	}
}

// readRun reads one run's state file, without asking Slurm.
func readRun(dir string) (RunStatus, error) {
	l := rundir.Layout{Dir: dir}
	st, err := state.OpenReadOnly(l.State())
	if err != nil {
		return RunStatus{}, err
	}
	defer st.Close()
	run, err := st.Run()
	if err != nil {
		return RunStatus{}, err
	}
	counts, err := st.Counts()
	if err != nil {
		return RunStatus{}, err
	}
	jobs, err := st.Jobs()
	if err != nil {
		return RunStatus{}, err
	}
	dropped, err := st.DroppedEvents()
	if err != nil {
		return RunStatus{}, err
	}
	starts, err := st.JobStarts()
	if err != nil {
		return RunStatus{}, err
	}
	runningBy, err := st.RunningByJob()
	if err != nil {
		return RunStatus{}, err
	}
	usage, err := st.Usage()
	if err != nil {
		return RunStatus{}, err
	}
	rs := RunStatus{DroppedEvents: dropped, runningBy: runningBy, usage: usage, Run: run.Name, Dir: dir, Pipeline: run.Pipeline, Partition: run.Partition, Created: run.Created,
		own: map[state.VisitState]int{}, Journal: st.JournalMode(), FS: st.FileSystem(),
		InputClosed: run.InputClosed, InputClosedWhy: run.InputClosedWhy, Heartbeat: rundir.DefaultHeartbeat}
	set, err := rundir.DecodeSettings(l.State(), run.Settings)
	if err != nil {
		return RunStatus{}, err
	}
	rs.Listen, rs.memPerSlice = set.Listen, set.Request.MemPerSliceMB
	rs.Request = runRequest(set)
	if set.Request.Partition != "" {
		rs.Partition = set.Request.Partition
	}
	if set.Heartbeat > 0 {
		rs.Heartbeat = set.Heartbeat
	}
	for s, n := range counts {
		rs.own[s] = n
	}
	if err := readDataIDs(st, &rs); err != nil {
		return RunStatus{}, err
	}
	for _, j := range jobs {
		rs.Jobs = append(rs.Jobs, JobStatus{ID: j.ID, Attempt: j.Attempt, State: j.State, Source: "state",
			ExitCode: j.ExitCode, Reason: j.Reason, Recorded: j.State, Submitted: j.Submitted, Started: j.Started, Ended: j.Ended,
			Broker: j.Broker, Heartbeat: j.Heartbeat, HeartbeatVisit: stillRunning(st, j.HeartbeatVisit)})
	}
	sort.Slice(rs.Jobs, func(a, b int) bool { return rs.Jobs[a].Attempt < rs.Jobs[b].Attempt })
	attachStarts(&rs, starts)
	showUsage(&rs)
	done, first, last, err := st.Progress()
	if err != nil {
		return RunStatus{}, err
	}
	rs.Rate = runningRate(done, first, last, starts)
	rs.rank0 = rundir.StepIn(l, set)
	for _, d := range rundir.StepsApart(l, set) {
		ps, err := readRun(d.Layout.Dir)
		if err != nil {
			return RunStatus{}, fmt.Errorf("jobs: production %s: pipeline %s: %w", run.Name, d.Name, err)
		}
		ps.Pipeline = d.Name
		rs.Pipelines = append(rs.Pipelines, ps)
	}
	sumSteps(&rs)
	return rs, nil
}

// sumSteps makes a run's status from its own state file's and those of
// its steps in folders of their own (Pipelines): visits, counts and rates
// summed (the steps run at once), and each job as its steps recorded it.
func sumSteps(rs *RunStatus) {
	sumCounts(rs)
	sumDataIDs(rs)
	for _, ps := range rs.Pipelines {
		rs.DroppedEvents += ps.DroppedEvents
		rs.Rate += ps.Rate
		rs.Listen = rs.Listen || ps.Listen
	}
	for i := range rs.Jobs {
		mergeJob(&rs.Jobs[i], rs.Pipelines)
	}
}

// sumCounts sets the run's visit counts: its own state file's and its
// steps'.
func sumCounts(rs *RunStatus) {
	rs.Counts, rs.Visits = map[state.VisitState]int{}, 0
	for k, n := range rs.own {
		rs.Counts[k] += n
		rs.Visits += n
	}
	for _, ps := range rs.Pipelines {
		for k, n := range ps.Counts {
			rs.Counts[k] += n
			rs.Visits += n
		}
	}
}

// mergeJob records job j as the steps with state files of their own
// recorded it: ended once every one of them recorded its end (the first
// that did not complete tells how).
func mergeJob(j *JobStatus, steps []RunStatus) {
	var ends, why []string
	var worst state.JobEnd
	for _, ps := range steps {
		pj := jobByID(ps.Jobs, j.ID)
		if pj == nil {
			continue
		}
		end, err := state.ParseJobEnd(pj.Recorded)
		if err != nil { // no end recorded
			continue
		}
		ends = append(ends, ps.Pipeline)
		if end.Worse(worst) {
			worst = end
			j.ExitCode = pj.ExitCode
		}
		if end != state.EndCompleted {
			why = append(why, fmt.Sprintf("%s %s", ps.Pipeline, strings.ToLower(end.String())))
			if pj.Reason != "" {
				why[len(why)-1] += ": " + pj.Reason
			}
		}
		if pj.Ended.After(j.Ended) {
			j.Ended = pj.Ended
		}
		if pj.Heartbeat.After(j.Heartbeat) {
			j.Heartbeat, j.HeartbeatVisit = pj.Heartbeat, ps.Pipeline+" "+pj.HeartbeatVisit
		}
	}
	switch {
	case len(ends) > 0 && len(ends) == len(steps):
		j.State, j.Recorded, j.Reason = worst.String(), worst.String(), strings.Join(why, "; ")
	case len(ends) > 0 && j.Reason == "":
		j.Reason = "ended: " + strings.Join(ends, ", ")
	}
}

func jobByID(js []JobStatus, id string) *JobStatus {
	for i := range js {
		if js[i].ID == id {
			return &js[i]
		}
	}
	return nil
}

// settle merges what Slurm said about the run's jobs and works out the
// run's outcome; its steps in folders of their own first, each on its own.
func settle(rs *RunStatus, known map[string]scheduler.Job) {
	for i := range rs.Pipelines {
		settle(&rs.Pipelines[i], known)
	}
	for i := range rs.Jobs {
		j := &rs.Jobs[i]
		if k, ok := known[j.ID]; ok {
			settleRequeue(j, k)
			j.State, j.Source, j.Live = k.State, k.Source, k.Live()
			if !j.Live {
				j.ExitCode = k.ExitCode
				if k.Reason != "" && k.Reason != "None" {
					j.Reason = k.Reason + "; " + j.Reason
				}
				if j.Ended.IsZero() && !k.Ended.IsZero() {
					j.Ended = k.Ended
				}
			}
		} else if rundir.IsLocalJob(j.ID) && localLive(rs, *j) {
			j.State, j.Live = "RUNNING", true
		}
		// Ended in Slurm's eyes, yet rank 0 recorded no end.
		j.Died = !j.Live && j.Source != "state" && j.Recorded != "" && !recordedEnd(j.Recorded)
		if rs.rank0 {
			j.Silent = j.Live && j.State == "RUNNING" && !recordedEnd(j.Recorded) && silent(*j, known[j.ID], rs.Heartbeat, clock())
		}
		for _, ps := range rs.Pipelines {
			if pj := jobByID(ps.Jobs, j.ID); pj != nil {
				j.Silent = j.Silent || pj.Silent
				j.Died = j.Died || pj.Died
			}
		}
		if j.Died {
			j.KilledForMemory = killedForMemory(rundir.Layout{Dir: rs.Dir}.SlurmLog(j.ID), j.ID)
		}
		if j.Live {
			rs.Live = true
		}
	}
	showDeadRunning(rs, known != nil)
	sumCounts(rs)
	if rs.DiskFull == nil && anyDied(rs) {
		rs.DiskFull = fullDisk(rs.Dir)
	}
	c := rs.Counts
	// Decided by the state files (finalInState): Slurm still ending a job
	// that recorded its end changes nothing.
	decided := finalInState(*rs)
	switch {
	case rs.Live && !decided && anyRunning(rs.Jobs):
		rs.Outcome = OutcomeRunning
	case rs.Live && !decided:
		rs.Outcome = OutcomePending
	case c[state.Done] == rs.Visits && rs.DataIDs[state.DataIDFailed] == 0:
		rs.Outcome = OutcomeDone
	case c[state.Done]+c[state.Failed] == rs.Visits:
		rs.Outcome = OutcomeFailed
	default:
		rs.Outcome = OutcomeUnfinished
	}
	// A time left only while a job runs: a queued run's would count the
	// time it waits as if it were working.
	if anyHoldsVisits(rs.Jobs) && rs.Rate > 0 {
		left := rs.Visits - c[state.Done] - c[state.Failed]
		rs.ETA = time.Duration(float64(left) / rs.Rate * float64(time.Second))
	}
}

// holdsVisits reports whether a job, as Slurm has it, may have visits in
// flight: it is RUNNING (or SUSPENDED, its processes stopped mid-visit).
// A job pending again after a requeue, completing or ended holds none.
func holdsVisits(j JobStatus) bool {
	return j.Live && scheduler.Running(j.State)
}

func anyHoldsVisits(js []JobStatus) bool {
	for _, j := range js {
		if holdsVisits(j) {
			return true
		}
	}
	return false
}

// showDeadRunning shows the visits recorded running by a job that no
// longer runs them as interrupted, as the next job of the run will record
// them: their job is not running in Slurm (ended, or pending again after
// a requeue), or it is but the pipeline's rank 0 is gone (rank0Gone: a
// production's job runs on while one pipeline's rank 0 has died). A job
// Slurm was not asked about (asked false) counts as ended only once it
// recorded its end. A visit of a job the run does not list stays as
// recorded. The state file is not changed: readers never write it.
func showDeadRunning(rs *RunStatus, asked bool) {
	gone, looked := false, false
	for job, n := range rs.runningBy {
		j := jobByID(rs.Jobs, job)
		if j == nil || n == 0 {
			continue
		}
		dead := false
		switch {
		case holdsVisits(*j):
			if !looked {
				gone, looked = rundir.Rank0Gone(rundir.Layout{Dir: rs.Dir}), true
			}
			dead = gone
		case j.Live, asked, recordedEnd(j.Recorded):
			dead = true
		}
		if dead {
			rs.own[state.Running] -= n
			rs.own[state.Interrupted] += n
		}
	}
}

// localLive reports whether local job j of rs (dpsbatch local) still
// runs: it started and recorded no end, and a rank 0 of it holds the
// rank-0 lock of rs's own step, or of one of its steps apart (settled
// first). Its process holds the lock until it ends, however it ends.
func localLive(rs *RunStatus, j JobStatus) bool {
	if recordedEnd(j.Recorded) || j.Started.IsZero() {
		return false
	}
	if rs.rank0 {
		return !rundir.Rank0Gone(rundir.Layout{Dir: rs.Dir})
	}
	for _, ps := range rs.Pipelines {
		if pj := jobByID(ps.Jobs, j.ID); pj != nil && pj.Live {
			return true
		}
	}
	return false
}

// anyDied reports whether a job of the run, or of one of its pipelines,
// ended without recording why.
func anyDied(rs *RunStatus) bool {
	for _, j := range rs.Jobs {
		if j.Died {
			return true
		}
	}
	return false
}

// fullDisk returns the space of dir's file system when it is full or
// nearly (less than 4 MiB or 1% of it free to an ordinary user), else nil.
func fullDisk(dir string) *DiskSpace {
	var fs unix.Statfs_t
	if dir == "" || unix.Statfs(dir, &fs) != nil {
		return nil
	}
	free, size := fs.Bavail*uint64(fs.Bsize), fs.Blocks*uint64(fs.Bsize)
	if free >= 4<<20 && free >= size/100 {
		return nil
	}
	return &DiskSpace{Dir: dir, Free: free, Size: size}
}

// stillRunning is visit, the one in flight at a job's last heartbeat,
// while the state file still has it running; "" once it has ended (the
// heartbeat is then in no visit the run still runs).
func stillRunning(st *state.Store, visit string) string {
	if visit == "" {
		return ""
	}
	if s, err := st.VisitState(visit); err != nil || s != state.Running {
		return ""
	}
	return visit
}

// clock is what status judges heartbeats by; tests replace it.
var clock = time.Now

// silent reports whether a running job's Pipeline has missed more than
// three heartbeats: since its last one, or (none yet) since the later of
// Slurm's start and rank 0's, with a minute's grace for starting up.
func silent(j JobStatus, k scheduler.Job, every time.Duration, at time.Time) bool {
	limit := 3 * every
	if !j.Heartbeat.IsZero() {
		return at.Sub(j.Heartbeat) > limit
	}
	started := j.Started
	if k.Started.After(started) {
		started = k.Started
	}
	return !started.IsZero() && at.Sub(started) > limit+time.Minute
}

// recordedEnd reports whether a job's recorded state is an end rank 0
// recorded (a state.JobEnd).
func recordedEnd(recorded string) bool {
	_, err := state.ParseJobEnd(recorded)
	return err == nil
}

func anyRunning(js []JobStatus) bool {
	for _, j := range js {
		if j.Live && j.State != "PENDING" && j.Requeued == nil {
			return true
		}
	}
	return false
}

// Cancel cancels every live job of the run (the job and its pending
// follow-ons). Rank 0 of a running job hears SIGTERM, stops at the visit
// boundary and records it. It returns the jobs it cancelled.
func Cancel(ctx context.Context, b scheduler.Backend, dir string) ([]string, error) {
	rs, err := Status(ctx, b, []string{dir})
	if err != nil {
		return nil, err
	}
	var done []string
	// Follow-ons first, so none starts when the one before ends.
	for i := len(rs[0].Jobs) - 1; i >= 0; i-- {
		j := rs[0].Jobs[i]
		if !j.Live {
			continue
		}
		if rundir.IsLocalJob(j.ID) {
			return done, fmt.Errorf("%w: run %s runs on this machine (dpsbatch local, job %s): stop it there (Ctrl-C)", conf.ErrInvalid, rs[0].Run, j.ID)
		}
		if err := b.Cancel(ctx, j.ID, ""); err != nil {
			return done, err
		}
		done = append(done, j.ID)
	}
	// And those a command killed mid-submission left unrecorded.
	lost, err := unrecordedJobs(ctx, b, rundir.Layout{Dir: dir})
	for _, id := range lost {
		if err := b.Cancel(ctx, id, ""); err != nil {
			return done, err
		}
		done = append(done, id)
	}
	return done, err
}

// WaitOptions paces Wait.
type WaitOptions struct {
	// Every is how often the state file is read at least (default 1s):
	// it is also read as soon as it changes (Changes). Slurm is asked at
	// most every SlurmEvery (default 2s, doubling up to slurmEveryMax
	// while nothing changes), and at once when the state file says a job
	// ended.
	Every, SlurmEvery time.Duration
	// Progress, when set, hears each new status.
	Progress func(RunStatus)
}

// slurmEveryMax is the longest Wait goes without asking Slurm: a job
// that dies without recording its end is noticed within it.
const slurmEveryMax = 10 * time.Second

// Wait blocks until the run's outcome is final and returns its last
// status, with ErrIncomplete when visits were left unfinished and
// harness.ErrVisitsFailed when every visit ran but some failed. The
// outcome is final once no job of the run is live in Slurm's eyes, or as
// soon as the state file alone decides it (finalInState): Slurm may then
// still be ending the job (COMPLETING), and resume waits for that.
func Wait(ctx context.Context, b scheduler.Backend, dir string, o WaitOptions) (RunStatus, error) {
	if o.Every <= 0 {
		o.Every = time.Second
	}
	if o.SlurmEvery <= 0 {
		o.SlurmEvery = 2 * time.Second
	}
	changed, err := Changes(ctx, dir)
	if err != nil {
		changed = nil // no notices here: read every o.Every
	}
	every := o.SlurmEvery
	var asked time.Time
	lastEnds := -1
	var merged RunStatus // the last status merged with Slurm's answer
	for {
		rs, err := readRun(dir)
		if err != nil {
			return merged, err
		}
		if finalInState(rs) {
			settle(&rs, nil)
			if o.Progress != nil {
				o.Progress(rs)
			}
			return rs, outcomeErr(rs)
		}
		ends := 0
		for _, j := range rs.Jobs {
			if recordedEnd(j.Recorded) {
				ends++
			}
		}
		if ends != lastEnds || time.Since(asked) >= every {
			if ends == lastEnds {
				every = min(2*every, max(slurmEveryMax, o.SlurmEvery))
			} else {
				every = o.SlurmEvery
			}
			lastEnds = ends
			var ask []string
			for _, j := range rs.Jobs {
				ask = append(ask, j.ID)
			}
			known, err := scheduler.Lookup(ctx, b, ask)
			if err != nil {
				return rs, err
			}
			asked = time.Now()
			settle(&rs, known)
			merged = rs
			if o.Progress != nil {
				o.Progress(rs)
			}
			if !rs.Live {
				ended := []RunStatus{rs}
				RecordUsage(ctx, b, ended)
				return ended[0], outcomeErr(ended[0])
			}
			if ends == len(rs.Jobs) && !anyRequeued(rs.Jobs) {
				// Every job recorded its end but Slurm still has one
				// finishing: look again soon. (A requeued job's end
				// is its earlier start's: it waits to start again.)
				lastEnds = -1
			}
		}
		select {
		case <-ctx.Done():
			return merged, ctx.Err()
		case <-changed:
		case <-time.After(o.Every):
		}
	}
}

// finalInState reports whether the run's state files alone decide its
// outcome: every job recorded its end (rank 0's, every step's) and every
// visit is done or failed, with no input left open. Nothing Slurm says
// can change that outcome; a visit left to run could still be run by a
// requeued start or a follow-on job, which only Slurm knows of.
func finalInState(rs RunStatus) bool {
	if len(rs.Jobs) == 0 {
		return false
	}
	for _, j := range rs.Jobs {
		if !recordedEnd(j.Recorded) {
			return false
		}
	}
	c := rs.Counts
	return rs.Visits > 0 && c[state.Done]+c[state.Failed] == rs.Visits && !inputOpen(rs)
}

// inputOpen reports whether a step of the run still reads trigger events
// (it listens, and no no-more-data has closed its input).
func inputOpen(rs RunStatus) bool {
	if len(rs.Pipelines) == 0 {
		return rs.Listen && rs.InputClosed.IsZero()
	}
	for _, ps := range rs.Pipelines {
		if inputOpen(ps) {
			return true
		}
	}
	return false
}

func outcomeErr(rs RunStatus) error {
	switch rs.Outcome {
	case OutcomeDone:
		return nil
	case OutcomeFailed:
		return fmt.Errorf("%w: run %s: %d of %d visits%s", harness.ErrVisitsFailed, rs.Run, rs.Counts[state.Failed], rs.Visits, failedDataIDsNote(rs))
	}
	return fmt.Errorf("%w: run %s: %s (dpsbatch resume %s)", ErrIncomplete, rs.Run, countsLine(rs), rs.Run)
}

// countsLine is "3 done, 2 pending, ..." in a fixed order.
func countsLine(rs RunStatus) string {
	s := ""
	for _, k := range []state.VisitState{state.Done, state.Failed, state.Running, state.Interrupted, state.Pending} {
		if n := rs.Counts[k]; n > 0 {
			if s != "" {
				s += ", "
			}
			s += fmt.Sprintf("%d %s", n, k)
		}
	}
	return s
}
