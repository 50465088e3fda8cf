package injob

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/dpsbatch/dpsbatch/capture"
	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/state"
)

// LocalOptions is a run on this machine (dpsbatch local): no Slurm, an
// in-memory broker, the run's state files kept as a batch job keeps them.
type LocalOptions struct {
	// Job is the job ID the run's use case recorded for this attempt
	// (rundir.LocalJob): every step's rank 0 runs as it.
	Job         string
	Logger      *slog.Logger
	Stop        <-chan struct{} // closed: every step stops at its next visit boundary
	StopSignals *harness.StopSignals
}

// LocalResult is how one step of a local run went.
type LocalResult struct {
	Name    string           // the production's name for the step; "" in a run of one policy
	Policy  *harness.Policy  // the step's policy, under its name in the run
	Dir     string           // where it ran
	Summary *harness.Summary // nil when it did not start
	Err     error
}

// localJob is the job ID of a Pipeline outside Slurm that no use case
// recorded: `dpsbatch run --state` by hand.
const localJob = "local"

// localStep is a step of a local run, read from the run directory.
type localStep struct {
	LocalResult
	set       rundir.Settings
	freezeDry []string // the stages captured at entry (capture.ReadStages)
}

// RunLocal runs every step of the run in dir at once, as goroutines of
// this process sharing one in-memory broker, as a batch job runs them as
// its steps: each step's rank 0 is an InJob over the step's state file,
// as job o.Job, so that it runs the visits still to run (pending,
// interrupted), records their progress and its events, and records how
// it ended. A step that listens then reads trigger events from the broker
// (another step's event stages) until its input closes, which happens
// once the steps it runs after have ended (closeAfter, as in a job). A
// step that listens and runs after no other waits for topics from outside
// the run: only a stop ends it. It returns a result per step, in the
// run's order, and their errors joined.
func RunLocal(ctx context.Context, dir string, o LocalOptions) ([]LocalResult, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := rundir.Layout{Dir: dir}
	run, set, err := rundir.ReadSettings(l)
	if err != nil {
		return nil, err
	}
	steps, err := localSteps(l, set)
	if err != nil {
		return nil, err
	}
	if !rundir.StepIn(l, set) { // the run's own state file records the job's start, as ServeBroker does
		if err := withJob(l, func(st *state.Store) error { return startJob(st, o.Job, 0) }); err != nil {
			return nil, err
		}
	}
	mem := events.NewMemory()
	defer mem.Close()
	defer followAfters(mem, steps, run.ID, o.Job, log)()
	var wg sync.WaitGroup
	for i := range steps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runLocalStep(ctx, mem, &steps[i], run.ID, o, log)
		}()
	}
	wg.Wait()
	res := make([]LocalResult, len(steps))
	var errs []error
	for i, s := range steps {
		res[i] = s.LocalResult
		if s.Err != nil {
			errs = append(errs, fmt.Errorf("pipeline %s: %w", s.Policy.Name, s.Err))
		}
	}
	return res, errors.Join(errs...)
}

// localSteps reads the steps of the run in l, whose settings are set:
// each one's settings, its policy copy (checked unchanged since the run
// was created, under its name in the run) and the stages it freeze-dries.
func localSteps(l rundir.Layout, set rundir.Settings) ([]localStep, error) {
	var out []localStep
	for _, d := range rundir.StepDirs(l, set) {
		run, ss, err := rundir.ReadSettings(d.Layout)
		if err != nil {
			return nil, err
		}
		lo := rundir.RunCopy(run, ss)
		lo.Name = d.Name
		p, err := harness.Load(d.Layout.Policy(), lo)
		if err != nil {
			return nil, err
		}
		freeze, err := capture.ReadStages(d.Layout.Dir)
		if err != nil {
			return nil, err
		}
		out = append(out, localStep{LocalResult: LocalResult{Name: d.Name, Policy: p, Dir: d.Layout.Dir}, set: ss, freezeDry: freeze})
	}
	return out, nil
}

// followAfters starts the after rule of every step that listens and runs
// after others (followAfter), all before any step starts, so that no end
// is missed; the returned function stops them.
func followAfters(b events.Broker, steps []localStep, runID, job string, log *slog.Logger) (stop func()) {
	var stops []func()
	for _, s := range steps {
		if s.set.Listen && len(s.set.After) > 0 {
			stops = append(stops, followAfter(b, s.Policy, runID, s.set.After, job, 0, log.With("pipeline", s.Name)))
		}
	}
	return func() {
		for _, stop := range stops {
			stop()
		}
	}
}

// runLocalStep runs step s on b with an InJob as its rank 0, which feeds
// its visits still to run and records them in its state file, and
// records how it ended; s keeps its summary and error. Its end is
// announced on b in any case, for the steps that run after it.
func runLocalStep(ctx context.Context, b events.Broker, s *localStep, runID string, o LocalOptions, log *slog.Logger) {
	if s.Name != "" {
		log = log.With("pipeline", s.Name)
	}
	j := &InJob{StatePath: rundir.Layout{Dir: s.Dir}.State(), JobID: o.Job, Broker: b, Logger: log}
	slices, from := s.set.AskedSlices()
	s.Summary, s.Err = harness.Run(ctx, harness.RunOptions{Ranks: harness.CommLocal, Policy: s.Policy, RunID: runID,
		RunDir: s.Dir, Slices: slices, SlicesFrom: from, Logger: log, Rank0: j.Hook, Stop: o.Stop, StopSignals: o.StopSignals,
		FreezeDry: s.freezeDry})
	j.Summarize(s.Summary)
	announced := j.announce != nil
	if err := j.End(s.Summary, s.Err); err != nil {
		s.Err = errors.Join(s.Err, fmt.Errorf("injob: recording the end in the state file: %w", err))
	}
	if !announced {
		announce(b, runID, s.Policy.Name, "ended", o.Job, 0, nil, log)
	}
}
