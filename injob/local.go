package injob

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/input"
	"github.com/dpsbatch/dpsbatch/rundir"
)

// LocalOptions is a run on this machine (dpsbatch local): no Slurm, no
// state file, an in-memory broker.
type LocalOptions struct {
	RunID       string
	RunDir      string // each step runs in RunDir/Step.Dir
	Logger      *slog.Logger
	Stop        <-chan struct{} // closed: every step stops at its next visit boundary
	StopSignals *harness.StopSignals
	FreezeDry   []string // stages captured at entry (each step's that it has)
}

// LocalResult is how one step of a local run went.
type LocalResult struct {
	Step    input.Step
	Dir     string           // where it ran
	Summary *harness.Summary // nil when it did not start
	Err     error
}

// localJob is the job ID of a Pipeline outside Slurm: a local run's, and
// `dpsbatch run --state` by hand.
const localJob = "local"

// RunLocal runs every step of in at once, as goroutines of this process
// sharing one in-memory broker, as a batch job runs them as its steps: a
// step feeds its visits as trigger events; one that listens then reads
// trigger events from the broker (another step's event stages) until its
// input closes, which happens once the steps it runs after have ended
// (closeAfter, as in a job). A step that listens and runs after no other
// waits for topics from outside the run: only a stop ends it. It returns
// a result per step, in in's order, and their errors joined.
func RunLocal(ctx context.Context, in *input.Input, o LocalOptions) ([]LocalResult, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := in.CheckFreezeDry(o.FreezeDry); err != nil {
		return nil, err
	}
	mem := events.NewMemory()
	defer mem.Close()
	res := make([]LocalResult, len(in.Steps))
	var stops []func()
	for i, st := range in.Steps {
		st.Policy.Name = st.PipelineName() // a step runs under its entry's name
		res[i] = LocalResult{Step: st, Dir: filepath.Join(o.RunDir, st.Dir)}
		if st.Listen && len(st.After) > 0 {
			stops = append(stops, followAfter(mem, st.Policy, o.RunID, st.After, localJob, 0, log.With("pipeline", st.Name)))
		}
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	var wg sync.WaitGroup
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &res[i]
			stepLog := log
			if r.Step.Name != "" {
				stepLog = log.With("pipeline", r.Step.Name)
			}
			r.Summary, r.Err = runLocalStep(ctx, mem, r.Step, r.Dir, o, stepLog)
			announce(mem, o.RunID, r.Step.Policy.Name, "ended", localJob, 0, nil, log)
		}()
	}
	wg.Wait()
	var errs []error
	for _, r := range res {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("pipeline %s: %w", r.Step.Policy.Name, r.Err))
		}
	}
	return res, errors.Join(errs...)
}

// runLocalStep runs one step on b: a step that does not listen has its
// visits and then a no-more-data published by the harness; one that
// listens has its visits fed here, its input left open.
func runLocalStep(ctx context.Context, b events.Broker, st input.Step, dir string, o LocalOptions, log *slog.Logger) (*harness.Summary, error) {
	if st.Listen {
		for _, v := range st.Visits {
			if err := b.Publish(ctx, v.Event(st.Policy.Trigger.Topic, o.RunID)); err != nil {
				return nil, err
			}
		}
	}
	if err := os.MkdirAll(dir, rundir.DirMode); err != nil {
		return nil, fmt.Errorf("injob: run directory: %w", err)
	}
	return harness.Run(ctx, harness.RunOptions{Ranks: harness.CommLocal, Policy: st.Policy, Visits: st.Visits, RunID: o.RunID,
		RunDir: dir, Slices: st.Slices, SlicesFrom: st.SlicesFrom, Logger: log, Broker: b, Feed: st.Listen, Stop: o.Stop,
		StopSignals: o.StopSignals, FreezeDry: st.FreezeDry(o.FreezeDry)})
}
