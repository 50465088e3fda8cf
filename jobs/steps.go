package jobs

// A run's steps as its directory keeps them. A run of one step (a
// policy) is laid out in the run directory itself; a run of several (a
// production) keeps each step in a folder of its own:
//
//	RUN-DIR/production.yaml        the production file, as submitted
//	RUN-DIR/state.db               the run and its jobs (no visits)
//	RUN-DIR/scripts, logs, broker  the job scripts, Slurm's logs, the run's broker
//	RUN-DIR/pipelines/NAME/        pipeline.yaml, the visit list, state.db, outputs
//
// Every job is recorded in every distinct state file of the run (records):
// each step's rank 0 records its own start, heartbeats and end in its own
// file, and the run's state file knows the job's broker.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/input"
	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/site"
	"github.com/dpsbatch/dpsbatch/state"
)

// runStep is one step of a run's jobs: a pipeline in its directory.
type runStep struct {
	name  string          // the production's name for it; "" in a run of one policy
	l     rundir.Layout   // the run directory, or RUN-DIR/pipelines/NAME
	run   state.Run       // as its state file records it
	set   rundir.Settings // its own settings
	asked int             // slices asked for at submit (0: the policy's)
	tasks int             // its Pipeline rank and its slices, once planned
}

// runSteps reads the steps of the run in l from their state files.
func runSteps(l rundir.Layout, set rundir.Settings) ([]runStep, error) {
	var out []runStep
	for _, d := range rundir.StepDirs(l, set) {
		run, ss, err := rundir.ReadSettings(d.Layout)
		if err != nil {
			return nil, err
		}
		out = append(out, runStep{name: d.Name, l: d.Layout, run: run, set: ss, asked: d.Asked})
	}
	return out, nil
}

// fromEachStep opens, read-only, the state file of each step of the run
// in dir, in the steps' order, and returns in turn what read makes of
// each.
func fromEachStep[T any](dir string, read func(d rundir.StepDir, st *state.Store) ([]T, error)) ([]T, error) {
	l := rundir.Layout{Dir: dir}
	_, set, err := rundir.ReadSettings(l)
	if err != nil {
		return nil, err
	}
	out := []T{}
	for _, d := range rundir.StepDirs(l, set) {
		got, err := fromStep(d, read)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

func fromStep[T any](d rundir.StepDir, read func(d rundir.StepDir, st *state.Store) ([]T, error)) ([]T, error) {
	st, err := state.OpenReadOnly(d.Layout.State())
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return read(d, st)
}

// loadSteps loads the policy copy of each step (checked unchanged since
// submit, and validated) as the steps to plan again.
func loadSteps(steps []runStep) ([]input.Step, error) {
	out := make([]input.Step, len(steps))
	for i, st := range steps {
		p, err := harness.Load(st.l.Policy(), rundir.RunCopy(st.run, st.set))
		if err != nil {
			return nil, err
		}
		out[i] = input.Step{Name: st.name, Policy: p, Slices: st.asked, Listen: st.set.Listen, After: st.set.After}
	}
	return out, nil
}

// checkLauncher refuses a run of several steps, which run as concurrent
// srun steps of one job, on a site whose launcher is mpirun.
func checkLauncher(s *site.Site, file string, steps int) error {
	if steps > 1 && s.Launcher.Kind == "mpirun" {
		return fmt.Errorf("%w: %s is a production, whose pipelines run as concurrent srun steps, but the site's launcher is mpirun (%s: launcher.kind): use srun",
			conf.ErrInvalid, file, s.Path)
	}
	return nil
}

// createState creates the state file of l for run r, with visits ids.
func createState(l rundir.Layout, r state.Run, ids []string) error {
	return state.CreateWithVisits(l.State(), r, ids)
}

// copyFile copies src to dst (mode 0644).
func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	return nil
}

// visitsExt is the extension a visit list's copy keeps: a format-telling
// one, or none, so that ReadVisits tells the format from the content as
// it did for the original.
func visitsExt(path string) string {
	ext := strings.ToLower(filepath.Ext(path))
	switch ext {
	case ".csv", ".jsonl", ".ndjson", ".json":
		return ext
	}
	return ""
}

// readWholeRun reads the run in l and its settings for a command that
// takes a run as a whole (resume, the relay commands), refusing the
// directory of one step of a run.
func readWholeRun(l rundir.Layout) (state.Run, rundir.Settings, error) {
	run, set, err := rundir.ReadSettings(l)
	if err == nil && set.PartOf != "" {
		err = fmt.Errorf("%w: %s is one pipeline of the production run %s (%s): give the command that run",
			conf.ErrInvalid, l.Dir, filepath.Base(set.PartOf), set.PartOf)
	}
	return run, set, err
}
