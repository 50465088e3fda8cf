// Package injob is the code that runs inside the allocation: rank 0's side
// of a batch job (InJob: the state file, the feed of visits still to run,
// the time budget, claiming the run from an earlier job, the records of
// Slurm's requeues), the run's broker the job script serves (`dpsbatch
// broker`, ServeBroker), the after rule of a production's steps, and a run
// of every step in this process (RunLocal, `dpsbatch local`).
//
// It never submits, resumes or cancels a job, never reads a production
// file (package input does), and is imported by nothing but the CLI: the
// use cases in package jobs meet it only through the run's directory and
// state file.
package injob

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

// InJob is rank 0's side of a batch job: it opens the run's state file,
// marks visits a dead job left running as interrupted, feeds the visits
// still to run (pending and interrupted, in order) as trigger events,
// records every visit's progress, starts a visit only while the job has
// time for it (see budget), and records how the job ended. The other
// ranks never touch the state file.
//
// `dpsbatch run --state FILE` sets Hook as harness.RunOptions.Rank0 and calls
// End with harness.Run's result, on every rank (End does nothing where Hook
// did not run).
type InJob struct {
	StatePath string
	JobID     string // SLURM_JOB_ID; "" outside Slurm (recorded as "local")
	// StopFile, when set, is watched: once it exists the run stops at
	// the next visit boundary (with Deadline: only if little time is
	// left), and its first line is the reason recorded (the job script
	// writes it when Slurm's time-limit warning comes).
	StopFile string
	// Restart is Slurm's SLURM_RESTART_COUNT (RestartCount): 0 on the
	// job's first start, n once Slurm has requeued it n times and runs it
	// again under the same ID. Each start is recorded on its own.
	Restart int
	// Slurm tells which jobs of the run are still running, so that a
	// starting job leaves their running visits to them and waits for one
	// running visits (claimRun); and, offering scheduler.StartHistory,
	// how a restarted job's earlier starts ended (REQUEUED, NODE_FAIL,
	// PREEMPTED), for their records. nil (outside Slurm): every running
	// visit counts as left by a dead job, and heartbeats alone tell
	// whether another job runs visits.
	Slurm scheduler.Backend
	// Every is how often StopFile is looked at (default 1s), and how
	// often a job waiting for another job of the run to end looks again
	// (default 2s; see claimRun).
	Every time.Duration
	// Deadline, when set, reads the job's end by its time limit (zero
	// for none): from Slurm (SlurmDeadline), when the job starts and
	// again when the stop file appears. With it, the job starts a visit
	// only while it has time for one (see budget), and the stop file
	// stops the run only when the time left is short. Without it, every
	// visit starts and the stop file stops the run at once.
	Deadline func(context.Context) (time.Time, error)

	// Broker, when set, is the run's broker outside Slurm, which the
	// caller serves and closes (RunLocal: the in-memory one its steps
	// share), in place of the run's embedded broker or the site's; the
	// caller then also follows the step's after rule (followAfter) itself,
	// before any step starts.
	Broker events.Broker

	Logger *slog.Logger
	Now    func() time.Time // nil: time.Now
	// BusyTimeout is how long one write of the state file waits for a
	// lock another process holds before it tries again (0: the state
	// package's default). Rank 0 never gives a write up while it lives.
	BusyTimeout time.Duration

	st        *state.Store
	rec       *recorder
	budget    *budget
	broker    *rundir.Served
	announce  func(state string, props map[string]any) // on TopicPipeline
	stopAfter func()                                   // ends closeAfter
	quit      chan struct{}                            // ends the stop-file watcher

	mu  sync.Mutex
	why string // the stop file's reason

	started      time.Time // when Hook ran: the visits since are this job's
	releaseRank0 func()    // the rank-0 lock's release
}

// Hook opens the state and prepares the feed; harness.RunOptions.Rank0.
func (j *InJob) Hook(p *harness.Policy, dr *harness.RunOptions) error {
	if j.Now == nil {
		j.Now = time.Now
	}
	if j.JobID == "" {
		j.JobID = localJob
	}
	j.started = j.Now()
	// Held until End or death: readers tell from it that this pipeline's
	// rank 0 is alive (a production's job outlives one that died).
	if release, err := rundir.HoldRank0(rundir.Layout{Dir: filepath.Dir(j.StatePath)}, j.JobID, 5*time.Second); err != nil {
		j.log().Warn("another rank 0 of this pipeline is alive", "err", err)
	} else {
		j.releaseRank0 = release
	}
	// Persistent: a reader's lock (rollback-journal mode) holds a write
	// back, never fails it; a visit's result is never lost to it.
	st, err := state.OpenWith(j.StatePath, state.Options{BusyTimeout: j.BusyTimeout, Persist: true, Log: j.log()})
	if err != nil {
		return err
	}
	j.st = st
	run, err := st.Run()
	if err != nil {
		return err
	}
	if err := rundir.SamePolicy(run, p); err != nil {
		return err
	}
	set, err := rundir.DecodeSettings(j.StatePath, run.Settings)
	if err != nil {
		return err
	}
	// The broker first: while another job of the run ends, its broker
	// keeps the store, and this job's waits for it before serving.
	b, url, err := j.runBroker(set, p.Name)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	if err := j.claimRun(st, set, host, dr.Stop); err != nil {
		return err
	}
	// After the claim, which forgets an earlier start's broker.
	if err := st.SetJobBroker(j.JobID, url); err != nil && !errors.Is(err, state.ErrNotFound) {
		return err
	}
	if err := j.interruptDead(st); err != nil {
		return err
	}
	ids, err := st.Runnable()
	if err != nil {
		return err
	}
	if j.budget, err = j.openBudget(st, p.VisitTime); err != nil {
		return err
	}
	feed, err := j.feed(set, dr.VisitsPath, p.Trigger.Topic, ids)
	if err != nil {
		return err
	}
	if j.Restart > 0 {
		j.recordRequeues()
	}
	listen := set.Listen && run.InputClosed.IsZero()
	if set.Listen && !listen {
		j.log().Info("the run's input was closed by an earlier job: no more trigger events are awaited", "why", run.InputClosedWhy)
	}
	j.log().Info("job started", "job", j.JobID, "visits", len(feed), "listen", listen, "broker", url,
		"state", j.StatePath, "journal", st.JournalMode())
	jb := &jobBroker{Broker: b, st: st, job: j.JobID, start: j.Restart, trigger: p.Trigger.Topic, selects: p.Trigger.Selects,
		feed: feed, listen: listen, log: j.log(), now: j.Now}
	j.rec = &recorder{st: st, job: j.JobID, now: j.Now, log: j.log(), fed: &jb.fed, budget: j.budget}
	j.announce = func(state string, props map[string]any) {
		announce(jb, dr.RunID, p.Name, state, j.JobID, j.Restart, props, j.log())
	}
	j.announce("started", nil)
	if listen && len(set.After) > 0 && j.Broker == nil {
		j.stopAfter = followAfter(jb, p, dr.RunID, set.After, j.JobID, j.Restart, j.log())
	}
	dr.Broker = jb
	dr.Feed, dr.Recorder = true, j.rec
	dr.Slices, dr.SlicesFrom = set.AskedSlices()
	dr.Heartbeat = set.Heartbeat
	if dr.Heartbeat <= 0 {
		dr.Heartbeat = rundir.DefaultHeartbeat
	}
	if j.StopFile != "" {
		dr.Stop = j.watch(dr.Stop)
	}
	return nil
}

// interruptDead makes the visits that dead jobs left running interrupted,
// so that Runnable hands them out again: those of this job's own earlier
// start (Slurm requeued it) and those of every job Slurm does not have
// running (ended, or pending again: see holdsVisits). A running visit of
// a job Slurm still runs is that job's, and stays running. Without an answer from Slurm
// every running visit counts as a dead job's, as when no Slurm is asked.
func (j *InJob) interruptDead(st *state.Store) error {
	by, err := st.RunningByJob()
	if err != nil || len(by) == 0 {
		return err
	}
	var dead, others []string
	for job := range by {
		if job == j.JobID {
			dead = append(dead, job)
		} else {
			others = append(others, job)
		}
	}
	running := map[string]bool{}
	if j.Slurm != nil && len(others) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		known, err := j.Slurm.Jobs(ctx, others)
		cancel()
		if err != nil {
			j.log().Warn("cannot ask Slurm which jobs still run: every visit recorded running counts as interrupted", "err", err)
		}
		for id, k := range known {
			running[id] = err == nil && k.Live() && scheduler.Running(k.State)
		}
	}
	for _, job := range others {
		if running[job] {
			j.log().Warn("another job of the run is running: its running visits are left to it", "job", job, "visits", by[job])
		} else {
			dead = append(dead, job)
		}
	}
	n, err := st.InterruptRunningOf(dead, "the job that ran it ended before it finished")
	if n > 0 {
		j.log().Warn("visits left running by a job that has ended count as interrupted", "visits", n, "jobs", strings.Join(dead, ","))
	}
	return err
}

// closeAfter waits until every pipeline of after has announced its end in
// this job on TopicPipeline (sub, subscribed before any of them could
// end), then closes this pipeline's input: a no-more-data on its trigger
// topic, behind every trigger those pipelines sent (one stream keeps the
// run's events in order). The no-more-data carries the values the
// pipeline's trigger selects, so that another pipeline sharing the topic
// (which selects other values) is not closed with it, and the job, so
// that a later job of the run ignores it if this one stopped before
// reading it. Ends announced by an earlier job of the run, or by an
// earlier start of this job (Slurm requeues a job under its ID), are not
// counted: announcements carry the job and its start. It runs on its own
// goroutine until ctx ends, and closes sub. A batch job's rank 0 and
// RunLocal both run it.
func closeAfter(ctx context.Context, sub events.Subscription, b events.Broker, p *harness.Policy, runID string, after []string, job string, start int, log *slog.Logger) {
	defer sub.Close()
	left := map[string]bool{}
	for _, a := range after {
		left[a] = true
	}
	for len(left) > 0 {
		e, err := sub.Next(ctx)
		if err != nil {
			return
		}
		if !sameStart(e, job, start) {
			continue
		}
		if name, _ := e.Properties["pipeline"].(string); e.Properties["state"] == "ended" && left[name] {
			delete(left, name)
			log.Info("a pipeline this one runs after has ended", "pipeline", name, "left", len(left))
		}
	}
	props := map[string]any{}
	for k, v := range p.Trigger.Select {
		props[k] = v
	}
	props["after"], props["job"], props["start"] = strings.Join(after, ","), job, start
	err := b.Publish(ctx, events.Event{Topic: p.Trigger.Topic, RunID: runID, Pipeline: p.Name, Kind: events.KindNoMoreData,
		Properties: props})
	if err != nil && ctx.Err() == nil {
		log.Error("could not close the input after the pipelines it runs after", "err", err)
	}
}

// followAfter starts closeAfter for the pipeline p of run runID, whose
// input closes once the pipelines of after have ended in job's start; the
// returned function stops it. It subscribes before it returns: an end
// announced later is not missed.
func followAfter(b events.Broker, p *harness.Policy, runID string, after []string, job string, start int, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := b.Subscribe(ctx, events.TopicPipeline, runID)
	if err != nil {
		log.Error("cannot follow the pipelines this one runs after: its input stays open (dpsbatch finish closes it)", "err", err)
		return cancel
	}
	go closeAfter(ctx, sub, b, p, runID, after, job, start, log)
	return cancel
}

// announce publishes on TopicPipeline that pipeline p of run runID is in
// state (started, ended) in job's start, with props: followAfter hears
// the ends.
func announce(b events.Broker, runID, pipeline, state, job string, start int, props map[string]any, log *slog.Logger) {
	if props == nil {
		props = map[string]any{}
	}
	props["pipeline"], props["state"], props["job"], props["start"] = pipeline, state, job, start
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Publish(ctx, events.Event{Topic: events.TopicPipeline, RunID: runID, Pipeline: pipeline, Properties: props}); err != nil {
		log.Warn("could not announce the pipeline's "+state, "err", err)
	}
}

// feed finds the visits ids names, in order: in the run's visit list, or,
// for visits that arrived as trigger events, in the state file's record of
// the last such event.
func (j *InJob) feed(set rundir.Settings, visitsPath, trigger string, ids []string) ([]harness.Visit, error) {
	if set.Visits != "" {
		visitsPath = filepath.Join(filepath.Dir(j.StatePath), set.Visits)
	}
	var byID map[string]harness.Visit
	if visitsPath != "" && (set.Visits != "" || !set.Listen) {
		var err error
		// The run's own list, checked when the run was created: read
		// as it was then, so that older runs still resume.
		if byID, err = harness.ReadRunVisits(visitsPath); err != nil {
			return nil, err
		}
	}
	feed := make([]harness.Visit, 0, len(ids))
	var sent map[string]harness.Visit // from the events table, read once if needed
	for _, id := range ids {
		v, ok := byID[id]
		if !ok {
			if sent == nil {
				var err error
				if sent, err = j.triggered(trigger); err != nil {
					return nil, err
				}
			}
			if v, ok = sent[id]; !ok {
				return nil, fmt.Errorf("injob: %s: visit %q of the state file is neither in the visit list nor among the trigger events received", j.StatePath, id)
			}
		}
		feed = append(feed, v)
	}
	return feed, nil
}

// triggered reads the trigger events the run received, by visit (the
// last one of each visit wins).
func (j *InJob) triggered(topic string) (map[string]harness.Visit, error) {
	recs, err := j.st.Events(state.EventQuery{Dir: "in", Topic: topic})
	if err != nil {
		return nil, err
	}
	out := map[string]harness.Visit{}
	for _, r := range recs {
		e := events.Event{Topic: r.Topic, Kind: events.Kind(r.Kind), Properties: r.Props}
		if id, ok := e.Visit(); ok && e.IsData() {
			props := map[string]any{}
			for k, v := range r.Props {
				if k != events.PropVisit {
					props[k] = v
				}
			}
			out[id] = harness.Visit{ID: id, Props: props}
		}
	}
	return out, nil
}

// runBroker is the run's broker and where it listens ("" for one this
// process serves itself): Broker when set, else openBroker's.
func (j *InJob) runBroker(set rundir.Settings, pipeline string) (events.Broker, string, error) {
	if j.Broker != nil {
		return j.Broker, "", nil
	}
	b, err := j.openBroker(set, pipeline)
	if err != nil {
		return nil, "", err
	}
	j.broker = b
	return b, b.URL, nil
}

// openBroker connects to the run's broker: the embedded one the job
// script serves for every step (dpsbatch broker), once it says where it
// listens, or the site's external one.
func (j *InJob) openBroker(set rundir.Settings, pipeline string) (*rundir.Served, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	name := "dpsbatch pipeline " + pipeline
	sub := "pipeline." + pipeline
	var b *rundir.Served
	if set.Broker.External() {
		n, err := events.DialNATS(ctx, set.Broker.NATSConfig(name, sub, j.log()))
		if err != nil {
			return nil, err
		}
		b = &rundir.Served{NATS: n, URL: strings.Join(set.Broker.URLs, ",")}
	} else {
		var err error
		if b, err = DialServed(set.RunDir(rundir.Layout{Dir: filepath.Dir(j.StatePath)}), j.JobID, j.Restart, 50*time.Second, name, sub, j.log()); err != nil {
			return nil, fmt.Errorf("injob: the run's broker: %w", err)
		}
	}
	return b, nil
}

// watch returns a stop channel that closes when parent does or when the
// stop file appears.
func (j *InJob) watch(parent <-chan struct{}) <-chan struct{} {
	every := j.Every
	if every <= 0 {
		every = time.Second
	}
	out := make(chan struct{})
	j.quit = make(chan struct{})
	tick := time.NewTicker(every)
	go func() {
		defer tick.Stop()
		seenEmpty := false
		seen := "" // a warning the budget let pass
		for {
			select {
			case <-parent:
				close(out)
				return
			case <-j.quit:
				return
			case <-tick.C:
				data, err := os.ReadFile(j.StopFile)
				if err != nil {
					continue
				}
				why, _, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
				if why == "" && !seenEmpty {
					seenEmpty = true // being written: read it again next tick
					continue
				}
				if why == "" {
					why = "stop requested through " + j.StopFile
				}
				if why == seen {
					continue
				}
				if !j.timeWarning(why) {
					seen = why
					continue
				}
				j.mu.Lock()
				j.why = why
				j.mu.Unlock()
				j.log().Warn("stopping at the next visit boundary", "why", why)
				close(out)
				return
			}
		}
	}()
	return out
}

// Summarize replaces sum's visit counts (run, done, failed, interrupted)
// by what the state file records of the visits this job started: the
// summary says what the file holds, not what the job meant to write. A
// visit whose end could not be recorded (a full disk) counts as run but
// not done, with a warning. `dpsbatch run` calls it on rank 0 before it
// prints sum, and before End; elsewhere it does nothing. If the file
// cannot be read, sum keeps its own counts and the log says so.
func (j *InJob) Summarize(sum *harness.Summary) {
	if j.st == nil || sum == nil {
		return
	}
	c, err := j.st.JobCounts(j.JobID, j.started)
	if err != nil {
		j.log().Warn("the summary's visit counts are this process's: the state file cannot be read", "err", err)
		return
	}
	run := 0
	for _, n := range c {
		run += n
	}
	if n := c[state.Running]; n > 0 {
		j.log().Warn("visits this job started have no recorded end in the state file: they are run again by the next job", "visits", n)
	}
	sum.Visits, sum.Done, sum.Failed, sum.Interrupted = run, c[state.Done], c[state.Failed], c[state.Interrupted]
}

// End records how the job ended and closes the state file. It is called
// on every rank with harness.Run's result; only rank 0, where Hook ran, does
// anything.
func (j *InJob) End(sum *harness.Summary, runErr error) error {
	if j.releaseRank0 != nil {
		defer j.releaseRank0() // after the job's end is recorded
		j.releaseRank0 = nil
	}
	if j.st == nil {
		return nil
	}
	defer func() { j.st.Close(); j.st = nil }()
	if j.quit != nil {
		close(j.quit)
		j.quit = nil
	}
	end, code, reason := state.EndCompleted, harness.ExitCode(runErr), ""
	if j.rec != nil {
		reason = j.rec.stopped()
	}
	j.mu.Lock()
	if j.why != "" {
		reason = j.why
	}
	j.mu.Unlock()
	switch code {
	case harness.ExitOK:
		// Stopped on request (time-limit warning, signal): the visits
		// fed but not started are still pending.
		if reason == "" {
			break
		}
		if c, err := j.st.Counts(); err == nil && c[state.Pending]+c[state.Interrupted] > 0 {
			end = state.EndStopped
		}
	case harness.ExitVisitsFailed:
		end = state.EndVisitsFailed
		if sum != nil {
			reason = fmt.Sprintf("%d visits failed", sum.Failed)
			if n := sum.DataIDs[harness.VisitFailed]; n > 0 {
				reason += fmt.Sprintf(", %d data IDs failed", n)
			}
		}
	case harness.ExitInterrupted:
		end = state.EndStopped
		if reason == "" {
			reason = runErr.Error()
		}
	default:
		end, reason = state.EndFailed, runErr.Error()
	}
	if err := j.st.JobEnded(j.JobID, end, code, reason, j.Now()); err != nil && !errors.Is(err, state.ErrNotFound) {
		return err
	}
	if j.stopAfter != nil {
		j.stopAfter()
	}
	if j.announce != nil {
		j.announce("ended", map[string]any{"outcome": end.String()})
	}
	if j.broker != nil {
		if err := j.broker.Close(); err != nil {
			j.log().Warn("closing the run's broker", "err", err)
		}
		j.broker = nil
	}
	return nil
}

func (j *InJob) log() *slog.Logger {
	if j.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return j.Logger
}

// recorder adapts the state file to harness.Recorder: the harness
// declares the interface, state knows nothing of the harness.
type recorder struct {
	st  *state.Store
	job string
	now func() time.Time
	log *slog.Logger
	// fed is the visit the feed handed out last: runnable by the state
	// file when it was read, so admitted without asking it again.
	fed *atomic.Pointer[string]
	// budget, when not nil, hears how long visits take and says whether
	// there is time for the next.
	budget *budget

	mu  sync.Mutex
	why string
}

func (r *recorder) VisitStarted(v string, at time.Time) error { return r.st.VisitStarted(v, r.job, at) }
func (r *recorder) StageDone(v, stage string, took time.Duration) error {
	return r.st.StageDone(v, stage, took)
}
func (r *recorder) SliceFailed(f harness.SliceFailure) error {
	return r.st.SliceFailed(f.Visit, f.Stage, f.Slice, f.DataID, f.Err, f.Capture)
}

func (r *recorder) VisitEnded(v string, res harness.VisitResult) error {
	var s state.VisitState
	switch res.Outcome {
	case harness.VisitDone:
		s = state.Done
	case harness.VisitInterrupted:
		s = state.Interrupted
	case harness.VisitFailed:
		s = state.Failed
	default:
		return fmt.Errorf("injob: visit %s ended with an unknown outcome %q", v, res.Outcome)
	}
	if r.budget != nil && res.Outcome != harness.VisitInterrupted {
		r.budget.visitTook(res.Took)
	}
	r.st.DataIDsEnded(v, dataIDOutcomes(res.DataIDs))
	r.st.OutputsMade(v, outputFiles(res.Outputs))
	r.st.VisitCapture(v, res.Capture)
	return r.st.VisitEnded(v, s, res.Err, r.now())
}

// outputFiles is the harness's output files of a visit's data IDs as the
// state file records them, sorted by data ID and path.
func outputFiles(byID map[string]map[string]int64) []state.Output {
	var out []state.Output
	for id, sizes := range byID {
		for path, size := range sizes {
			out = append(out, state.Output{DataID: id, Path: path, Size: size})
		}
	}
	slices.SortFunc(out, func(a, b state.Output) int {
		return cmp.Or(strings.Compare(a.DataID, b.DataID), strings.Compare(a.Path, b.Path))
	})
	return out
}

// dataIDOutcomes is the harness's outcomes of a visit's data IDs as the
// state file records them, sorted by data ID.
func dataIDOutcomes(ids map[string]harness.VisitOutcome) []state.DataIDOutcome {
	out := make([]state.DataIDOutcome, 0, len(ids))
	for id, o := range ids {
		out = append(out, state.DataIDOutcome{DataID: id, Outcome: string(o)})
	}
	slices.SortFunc(out, func(a, b state.DataIDOutcome) int { return strings.Compare(a.DataID, b.DataID) })
	return out
}

// DoneDataIDs is the data IDs of the visit the state file records done.
func (r *recorder) DoneDataIDs(v string) ([]string, error) { return r.st.DoneDataIDs(v) }

// AdmitVisit runs a trigger's visit unless the state file records it
// done; a visit it has not heard of (sent by a producer, not in the visit
// list) is added to it first.
func (r *recorder) AdmitVisit(v string) (bool, string, error) {
	if r.fed != nil {
		if f := r.fed.Load(); f != nil && *f == v {
			return true, "", nil
		}
	}
	s, err := r.st.VisitState(v)
	switch {
	case errors.Is(err, state.ErrNoSuchVisit):
		_, err := r.st.AddVisit(v)
		return err == nil, "", err
	case err != nil:
		return false, "", err
	case s == state.Done:
		return false, "already done (state file)", nil
	}
	return true, "", nil
}

// EventDropped records that the Pipeline dropped an event on topic as
// malformed (the event itself was recorded as received, before).
func (r *recorder) EventDropped(topic, why string) {
	recordEvent(r.st, r.log, state.EventRecord{At: r.now(), Dir: state.DirIn, Topic: topic, Job: r.job, Dropped: why})
}

// Heartbeat records the Pipeline's heartbeat in the job's row.
func (r *recorder) Heartbeat(at time.Time, visit string) {
	if err := r.st.Heartbeat(r.job, at, visit); err != nil && !errors.Is(err, state.ErrNotFound) {
		r.log.Warn("could not record the heartbeat", "err", err)
	}
}

// RunStopped keeps why the run stopped early, for the job's record.
func (r *recorder) RunStopped(why string) {
	r.mu.Lock()
	r.why = why
	r.mu.Unlock()
}

func (r *recorder) stopped() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.why
}

// EventSkipped and EventsUndecodable are not recorded: the feed records
// every event it receives.
func (r *recorder) EventSkipped(topic, visit, why string) {}
func (r *recorder) EventsUndecodable(n int)               {}

var (
	_ harness.Recorder      = (*recorder)(nil)
	_ harness.EventRecorder = (*recorder)(nil)
	_ harness.VisitGate     = (*recorder)(nil)
)
