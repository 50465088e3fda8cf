package jobs

// A production's run: submit and resume. Its directory holds the
// production's own files and one sub-directory per pipeline, each laid
// out as a single pipeline's run:
//
//	RUN-DIR/production.yaml        the production file, as submitted
//	RUN-DIR/state.db               the run and its jobs (no visits)
//	RUN-DIR/scripts, logs, broker  the job scripts, Slurm's logs, the run's broker
//	RUN-DIR/pipelines/NAME/        pipeline.yaml, the visit list, state.db, outputs
//
// Every job is recorded in every one of these state files: each
// pipeline's rank 0 records its own start, heartbeats and end in its own
// file, and the production's state file knows the job's broker.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/state"
)

// The fixed names a production's run directory adds.
const (
	ProductionFile = "production.yaml"
	PipelinesDir   = "pipelines"
)

// Production is the copy of the production file in a production's run.
func (l Layout) Production() string { return filepath.Join(l.Dir, ProductionFile) }

// Pipeline is the directory of pipeline name of a production's run.
func (l Layout) Pipeline(name string) Layout {
	return Layout{Dir: filepath.Join(l.Dir, PipelinesDir, name)}
}

// records lists the state files every job of the run is recorded in.
func records(l Layout, set settings) []Layout {
	out := []Layout{l}
	for _, e := range set.Pipelines {
		out = append(out, l.Pipeline(e.Name))
	}
	return out
}

// checkProductionOptions refuses the submit options that a production
// file sets per pipeline, and a launcher that cannot run concurrent steps.
func checkProductionOptions(o SubmitOptions, file string) error {
	var bad []string
	if o.Visits != "" {
		bad = append(bad, "--visits (give each pipeline its visits in the file)")
	}
	if o.Listen {
		bad = append(bad, "--listen (a pipeline without visits, or with after, listens)")
	}
	if o.Request.Slices != 0 {
		bad = append(bad, "--slices (give each pipeline its slices in the file)")
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s is a production: %s do not apply", conf.ErrInvalid, file, strings.Join(bad, ", "))
	}
	if o.Site.Launcher.Kind == "mpirun" {
		return fmt.Errorf("%w: %s is a production, whose pipelines run as concurrent srun steps, but the site's launcher is mpirun (%s: launcher.kind): use srun",
			conf.ErrInvalid, file, o.Site.Path)
	}
	return nil
}

// submitProduction is Submit for a production file (o.Policy).
func submitProduction(ctx context.Context, o SubmitOptions, now func() time.Time) (*Submitted, error) {
	if err := checkProductionOptions(o, o.Policy); err != nil {
		return nil, err
	}
	prod, err := LoadProduction(o.Policy)
	if err != nil {
		return nil, err
	}
	if err := checkCommon(o); err != nil {
		return nil, err
	}
	planned, err := PlanProduction(o.Site, prod, o.Request)
	if err != nil {
		return nil, err
	}
	name, bin, l, err := newRun(o, prod.Name, now)
	if err != nil {
		return nil, err
	}
	set := settings{Binary: bin, SiteFile: o.Site.Path, Request: o.Request, Broker: brokerOf(o.Site),
		Heartbeat: o.Heartbeat, hold: o.Hold}
	rj := runJob{name: name, plan: planned.Plan}
	visits := 0
	for i, pp := range prod.Pipelines {
		set.Pipelines = append(set.Pipelines, prodEntry{Name: pp.Name, Slices: pp.Slices})
		ps := settings{PipelineDir: pp.Policy.Dir, Binary: bin, SiteFile: o.Site.Path, Request: o.Request,
			Broker: brokerOf(o.Site), Listen: prod.Listening(pp.Name), Heartbeat: o.Heartbeat,
			Production: l.Dir, After: pp.After}
		ps.Request.Slices = planned.Steps[i].Slices
		if pp.Slices != 0 {
			ps.SlicesFrom = fmt.Sprintf("the slices of production entry %q", pp.Name)
		}
		if pp.VisitsPath != "" {
			ps.Visits = filepath.Base(l.Visits(visitsExt(pp.VisitsPath)))
		}
		rj.steps = append(rj.steps, runStep{name: pp.Name, l: l.Pipeline(pp.Name), set: ps, tasks: planned.Steps[i].Tasks})
		visits += len(pp.Visits)
	}
	rj.set = set
	tmpl, err := loadTemplate(o.Site)
	if err != nil {
		return nil, err
	}
	sub := &Submitted{Run: name, Dir: l.Dir, Attempt: 1, Visits: visits, Plan: planned.Plan,
		Script: l.Script(1), State: l.State(), DryRun: o.DryRun, Steps: planned.Steps, Note: prod.ExternalNote()}
	scripts, err := renderChain(tmpl, o.Site, l, rj, 1, o.AutoResume)
	if err != nil {
		return nil, err
	}
	if o.DryRun {
		printDry(o.Out, sub, &Planned{Plan: planned.Plan, Slices: planned.Plan.Tasks - len(planned.Steps)}, scripts)
		return sub, nil
	}

	created := now()
	lk, err := createRun(o.Site.RunsRoot, name, func(tl Layout) error {
		if err := populate(tl, "", "", ""); err != nil {
			return err
		}
		if err := copyFile(o.Policy, tl.Production()); err != nil {
			return err
		}
		settingsJSON, err := encodeSettings(set)
		if err != nil {
			return err
		}
		if err := createState(tl, state.Run{ID: name, Name: name, Dir: l.Dir, Pipeline: prod.Name, Site: o.Site.Path,
			Partition: planned.Plan.Partition, Created: created, Settings: settingsJSON}, nil); err != nil {
			return err
		}
		for i, pp := range prod.Pipelines {
			st := rj.steps[i]
			pl := tl.Pipeline(pp.Name)
			if err := populate(pl, pp.PolicyPath, pp.VisitsPath, st.set.Visits); err != nil {
				return err
			}
			js, err := encodeSettings(st.set)
			if err != nil {
				return err
			}
			ids := make([]string, len(pp.Visits))
			for k, v := range pp.Visits {
				ids[k] = v.ID
			}
			if err := createState(pl, state.Run{ID: name, Name: name, Dir: st.l.Dir, Pipeline: pp.Name,
				PolicySum: pp.Policy.Checksum, Site: o.Site.Path, Partition: planned.Plan.Partition, Created: created,
				Settings: js}, ids); err != nil {
				return err
			}
		}
		return writeScripts(tl, scripts, 1)
	})
	if err != nil {
		return nil, err
	}
	if err := submitNew(ctx, o.Backend, lk, l, records(l, set), scripts, now, sub); err != nil {
		return nil, err
	}
	return sub, nil
}

// createState creates the state file of l for run r, with visits ids.
func createState(l Layout, r state.Run, ids []string) error {
	st, err := state.Create(l.State(), r)
	if err != nil {
		return err
	}
	if len(ids) > 0 {
		if err := st.AddVisits(ids); err != nil {
			st.Close()
			return err
		}
	}
	return st.Close()
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

// loadRunProduction rebuilds a production's run from its directory, for
// resume: each pipeline's policy copy (checked unchanged since submit,
// and validated) and its settings, in the production's order.
func loadRunProduction(l Layout, run state.Run, set settings) (*Production, []settings, error) {
	pipes, err := runPipelines(l, set, true)
	if err != nil {
		return nil, nil, err
	}
	prod := &Production{File: l.Production(), Dir: l.Dir, Name: run.Pipeline}
	sets := make([]settings, len(pipes))
	for i, rp := range pipes {
		prod.Pipelines = append(prod.Pipelines, ProductionPipeline{Name: rp.name, PolicyPath: rp.p.File,
			Slices: set.Pipelines[i].Slices, After: rp.set.After, Policy: rp.p})
		sets[i] = rp.set
	}
	return prod, sets, nil
}

// resumeProduction is Resume for a production's run, once no job of it is
// live: every pipeline's step runs again (one whose work is complete ends
// at once, and its end lets the pipelines after it close their input).
func resumeProduction(ctx context.Context, o ResumeOptions, run state.Run, set settings, now func() time.Time) (*ResumeResult, error) {
	l := Layout{Dir: o.Dir}
	if err := checkProductionOptions(SubmitOptions{Site: o.Site}, l.Production()); err != nil {
		return nil, err
	}
	prod, sets, err := loadRunProduction(l, run, set)
	if err != nil {
		return nil, err
	}
	planned, err := PlanProduction(o.Site, prod, set.Request)
	if err != nil {
		return nil, err
	}
	rj := runJob{name: run.Name, set: set, plan: planned.Plan}
	for i, pp := range prod.Pipelines {
		rj.steps = append(rj.steps, runStep{name: pp.Name, l: l.Pipeline(pp.Name), set: sets[i], tasks: planned.Steps[i].Tasks})
	}
	return resumeJob(ctx, o, rj, &Planned{Plan: planned.Plan, Slices: planned.Plan.Tasks - len(planned.Steps)}, rj.steps, now)
}

// pipelineResume is what resume found in one state file.
type pipelineResume struct {
	visits    int // to run
	retried   int
	exhausted []string
	inputOpen bool // no no-more-data has closed its input
}

// resumePipeline readies the state file of l for a new job, as Resume
// does for a single pipeline's run: visits left running count as
// interrupted, failed and interrupted ones are retried (up to
// maxAttempts). With dryRun it only counts what would run.
func resumePipeline(l Layout, maxAttempts int, dryRun bool) (pipelineResume, error) {
	var r pipelineResume
	st, err := state.Open(l.State())
	if err != nil {
		return r, err
	}
	defer st.Close()
	run, err := st.Run()
	if err != nil {
		return r, err
	}
	r.inputOpen = run.InputClosed.IsZero()
	if dryRun {
		counts, err := st.Counts()
		if err != nil {
			return r, err
		}
		r.visits = counts[state.Pending] + counts[state.Interrupted] + counts[state.Running] + counts[state.Failed]
		return r, nil
	}
	if _, err := st.InterruptRunning("the job that ran it ended before it finished"); err != nil {
		return r, err
	}
	if r.retried, r.exhausted, err = st.Retry(maxAttempts); err != nil {
		return r, err
	}
	ids, err := st.Runnable()
	if err != nil {
		return r, err
	}
	r.visits = len(ids)
	return r, nil
}

// nextAttempt is the attempt number of the run's next job: after every
// job and every submission that may have become one.
func nextAttempt(l Layout) (int, error) {
	st, err := state.OpenReadOnly(l.State())
	if err != nil {
		return 0, err
	}
	defer st.Close()
	return st.NextAttempt()
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

// notAPart refuses the run of one pipeline of a production where a
// command (resume, the relay commands) takes the production's run as a
// whole.
func notAPart(l Layout, set settings) error {
	if set.Production == "" {
		return nil
	}
	return fmt.Errorf("%w: %s is one pipeline of the production run %s (%s): give the command that run",
		conf.ErrInvalid, l.Dir, filepath.Base(set.Production), set.Production)
}
