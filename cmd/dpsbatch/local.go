package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/examples"
	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/injob"
	"github.com/dpsbatch/dpsbatch/input"
	"github.com/dpsbatch/dpsbatch/jobs"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/site"
)

type localOptions struct {
	policy, visits string
	runDir, runID  string
	resume         string // a local run to resume
	refresh        bool   // with resume: copy the pipeline files again
	slices         int
	json           bool // print the summary as JSON
	freezeDry      []string
}

func localCommand() *cli.Command {
	return &cli.Command{
		Name:      "local",
		Usage:     "run a pipeline or a production on this machine (no Slurm, no MPI, an in-memory broker)",
		ArgsUsage: "[PIPELINE|PRODUCTION]",
		Description: "Runs every visit of the visit file through the pipeline, with the Pipeline and the Slices\n" +
			"as goroutines of this process. Without PIPELINE it runs the built-in example (ccdproc), copied\n" +
			"into the run directory first. A production file runs all its pipelines at once, each in\n" +
			"RUN-DIR/pipelines/NAME, talking through an in-memory broker; each prints its summary.\n\n" +
			"The run directory is a run's like submit's (under the site's runs root with --site, else\n" +
			"under runs/): its state file records every visit and event, so status, events and report\n" +
			"work on it, and --resume RUN (or `dpsbatch resume RUN`) runs here again what it left\n" +
			"unfinished: pending, interrupted and failed visits, never a done one.\n\n" +
			"The visit file is CSV with a header row or JSON lines, with a visitId column or key; the\n" +
			"other columns become properties on every clipboard.\n\n" +
			"With --json, stdout is one JSON object: the run's summary (visits run, done and failed, per-stage times);\n" +
			"for a production, its name and steps, a summary per pipeline.\n" +
			"Exit status: 0 every visit succeeded, 3 some failed, 2 bad input, 130 interrupted, 1 other errors.\n" +
			"A first Ctrl-C stops at the end of the current visit; a second one interrupts it.",
		Flags: []cli.Flag{
			siteFlag(),
			&cli.StringFlag{Name: "visits", Usage: "visit file (CSV or JSON lines); required with PIPELINE"},
			&cli.StringFlag{Name: "run-dir", Usage: "run directory, created (default: RUNS-ROOT/RUN-ID)"},
			&cli.StringFlag{Name: "run-id", Aliases: []string{"name"}, Usage: "the run's name, carried by every event and log record (default: PIPELINE-DATE-TIME)"},
			&cli.StringFlag{Name: "resume", Usage: "run again here what the local run RUN left unfinished"},
			&cli.IntFlag{Name: "slices", Usage: "number of slices, overriding the policy"},
			&cli.BoolFlag{Name: "json", Usage: "print the run's summary as JSON"},
			freezeDryFlag(),
		},
		Action: func(c *cli.Context) error {
			o := localOptions{policy: c.Args().First(), visits: c.String("visits"), runDir: c.String("run-dir"),
				runID: c.String("run-id"), resume: c.String("resume"), slices: c.Int("slices"), json: c.Bool("json"),
				freezeDry: c.StringSlice("freeze-dry")}
			switch {
			case c.NArg() > 1:
				return badInput("local takes at most one PIPELINE argument, got %d", c.NArg())
			case o.resume != "" && (o.policy != "" || o.visits != "" || o.runDir != "" || o.runID != "" || o.slices != 0 || len(o.freezeDry) > 0):
				return badInput("local --resume RUN takes no PIPELINE, --visits, --run-dir, --run-id, --slices or --freeze-dry: the run has them")
			}
			return runLocal(c, o)
		},
	}
}

func runLocal(c *cli.Context, o localOptions) error {
	log, err := newLogger(c, stderr)
	if err != nil {
		return err
	}
	s, err := loadSite(c, false)
	if err != nil {
		return err
	}
	lr, note, err := prepareLocal(c, s, o)
	if err != nil {
		return err
	}
	defer lr.Release()
	if lr.Complete {
		if !o.json {
			fmt.Fprintf(c.App.Writer, "run %s: nothing left to run\n", lr.Name)
		}
		return nil
	}
	noted := new(harness.StopSignals)
	ctx, stop, done := stopOnSignals(c.Context, noted, nil, os.Interrupt, syscall.SIGTERM)
	defer done()

	run, set, err := rundir.ReadSettings(rundir.Layout{Dir: lr.Dir})
	if err != nil {
		return err
	}
	endProgress := func() {}
	if !o.json {
		printLocalStart(c.App.Writer, lr, run.Pipeline, len(set.Pipelines), note)
		endProgress = showProgress(c.App.Writer, lr.Dir)
	}
	res, err := injob.RunLocal(ctx, lr.Dir, injob.LocalOptions{Job: lr.Job, Logger: log, Stop: stop, StopSignals: noted})
	endProgress()
	if o.json {
		if v := summarizeRun(lr, run.Pipeline, res); v != nil {
			err = errors.Join(err, printJSON(c.App.Writer, v))
		}
		return err
	}
	for _, r := range res {
		if r.Summary == nil {
			continue
		}
		if r.Name != "" {
			fmt.Fprintf(c.App.Writer, "pipeline %s: ", r.Name)
		}
		r.Summary.Print(c.App.Writer)
	}
	return err
}

// prepareLocal creates the local run o asks for, or readies the one it
// resumes, and returns it holding the run's lock, with the note its
// input carries (a production's topics from outside).
func prepareLocal(c *cli.Context, s *site.Site, o localOptions) (*jobs.LocalRun, string, error) {
	if o.resume != "" {
		dir, err := jobs.ResolveRun(s, o.resume)
		if err != nil {
			return nil, "", err
		}
		lr, err := jobs.ResumeLocal(c.Context, dir, 0, o.refresh)
		if lr != nil && !o.json {
			for _, from := range lr.Refreshed {
				fmt.Fprintf(c.App.Writer, "pipeline files copied again from %s\n", from)
			}
		}
		return lr, "", err
	}
	in, files, err := readLocalInput(s, &o)
	if files != "" {
		defer os.RemoveAll(files) // moved into the run once it is made
	}
	if err != nil {
		return nil, "", err
	}
	siteFile := ""
	if s != nil {
		siteFile = s.Path
	}
	lr, err := jobs.CreateLocal(jobs.LocalOptions{Input: in, Dir: o.runDir, Name: o.runID, Slices: o.slices,
		Files: files, SiteFile: siteFile, FreezeDry: o.freezeDry})
	return lr, in.Note, err
}

// readLocalInput reads the input of a new local run and settles its run
// ID and directory in o. The built-in example is extracted first, into a
// folder beside the run directory (files) that the run then takes in.
func readLocalInput(s *site.Site, o *localOptions) (in *input.Input, files string, err error) {
	name := examples.Default
	if o.policy != "" {
		if in, err = input.ReadInput(o.policy, input.InputOptions{Visits: o.visits, Slices: o.slices}); err != nil {
			if errors.Is(err, input.ErrNoVisits) {
				return nil, "", badInput("--visits is required with a PIPELINE (the built-in example brings its own)")
			}
			return nil, "", err
		}
		name = in.Name
	}
	if o.runID == "" {
		o.runID = name + "-" + time.Now().Format("20060102-150405")
	}
	// The run ID names the run directory: the run-name rules apply
	// before anything is made or printed.
	if err := rundir.CheckName(o.runID); err != nil {
		return nil, "", fmt.Errorf("--run-id: %w", err)
	}
	if o.runDir == "" {
		root := "runs"
		if s != nil {
			root = s.RunsRoot
		}
		o.runDir = filepath.Join(root, o.runID)
	}
	if in == nil {
		if in, files, err = extractExample(o); err != nil {
			return nil, files, err
		}
	}
	return in, files, in.CheckFreezeDry(o.freezeDry)
}

// extractExample writes the built-in example into a new folder beside
// o's run directory and reads it.
func extractExample(o *localOptions) (*input.Input, string, error) {
	parent, err := filepath.Abs(filepath.Dir(o.runDir))
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(parent, rundir.DirMode); err != nil {
		return nil, "", err
	}
	files, err := os.MkdirTemp(parent, "."+filepath.Base(o.runDir)+".example-")
	if err != nil {
		return nil, "", err
	}
	if o.policy, o.visits, err = examples.Extract(examples.Default, files); err != nil {
		return nil, files, err
	}
	in, err := input.ReadInput(o.policy, input.InputOptions{Visits: o.visits, Slices: o.slices})
	return in, files, err
}

// printLocalStart says what a local run is about to run: pipeline, or a
// production of steps pipelines.
func printLocalStart(w io.Writer, lr *jobs.LocalRun, pipeline string, steps int, note string) {
	what := pipeline
	if steps > 0 {
		what = fmt.Sprintf("production %s (%d pipelines)", pipeline, steps)
	}
	fmt.Fprintf(w, "run %s: %d visits of %s, run directory %s\n", lr.Name, lr.Visits, what, lr.Dir)
	if lr.Retried > 0 {
		fmt.Fprintf(w, "attempt %d: %d visits run again (failed, interrupted, or with a data ID not done)\n", lr.Attempt, lr.Retried)
	}
	if note != "" {
		fmt.Fprintf(w, "note: %s; only a stop (Ctrl-C) ends the pipelines that wait for them\n", note)
	}
}

// localProduction is what local --json prints for a run of named steps
// (a production): the summary of each, in the production's order.
type localProduction struct {
	Run      string     `json:"run"`
	Dir      string     `json:"runDir"`
	Pipeline string     `json:"pipeline"` // the production's name
	Steps    []localRun `json:"steps"`
}

// summarizeRun is what local --json prints: a run of one policy's
// summary, or that of the production called pipeline.
func summarizeRun(lr *jobs.LocalRun, pipeline string, res []injob.LocalResult) any {
	runs := []localRun{}
	for _, r := range res {
		if r.Summary != nil {
			runs = append(runs, summarize(lr.Name, r.Dir, r.Policy, r.Summary))
		}
	}
	if len(res) == 1 && res[0].Name == "" {
		if len(runs) == 0 {
			return nil
		}
		return runs[0]
	}
	return localProduction{Run: lr.Name, Dir: lr.Dir, Pipeline: pipeline, Steps: runs}
}

// localRun is what local --json prints: the run's summary. Times are in
// seconds.
type localRun struct {
	Run         string        `json:"run"`
	Dir         string        `json:"runDir"`
	Pipeline    string        `json:"pipeline"`
	Visits      int           `json:"visits"` // visits started
	Done        int           `json:"done"`
	Failed      int           `json:"failed"`
	Interrupted int           `json:"interrupted"`
	Stages      []stageTimes  `json:"stages"` // in the pipeline's order, those that ran
	FailedList  []failedVisit `json:"failedVisits"`
	// SliceFailures counts the slice clipboards that failed a stage.
	SliceFailures int `json:"sliceFailures"`
	// DataIDs counts the data IDs by outcome (done, failed, interrupted,
	// skipped), whatever their visits'; FailedDataIDs names the failed.
	DataIDs       map[string]int `json:"dataIds"`
	FailedDataIDs []failedDataID `json:"failedDataIds"`
	// Events passed over or dropped by the run's trigger.
	MalformedEvents     int     `json:"malformedEvents"`
	UndecodableMessages int     `json:"undecodableMessages"`
	SkippedEvents       int     `json:"skippedEvents"`
	Stopped             string  `json:"stopped,omitempty"` // why the run stopped early
	Elapsed             float64 `json:"elapsedSeconds"`
}

// stageTimes is the time a stage took over the visits it completed.
type stageTimes struct {
	Stage  string  `json:"stage"`
	Visits int     `json:"visits"`
	Total  float64 `json:"totalSeconds"`
	Mean   float64 `json:"meanSeconds"`
}

type failedDataID struct {
	Visit  string `json:"visit"`
	DataID string `json:"dataId"`
	Stage  string `json:"stage"`
	Error  string `json:"error"`
}

type failedVisit struct {
	Visit  string `json:"visit"`
	Reason string `json:"reason"`
}

// summarize turns a finished local run's summary into what --json prints.
func summarize(runID, dir string, p *harness.Policy, s *harness.Summary) localRun {
	r := localRun{Run: runID, Dir: dir, Pipeline: p.Name, Visits: s.Visits, Done: s.Done, Failed: s.Failed,
		Interrupted: s.Interrupted, Stages: []stageTimes{}, FailedList: []failedVisit{}, SliceFailures: s.SliceFailureCount,
		MalformedEvents: s.Malformed, UndecodableMessages: s.Undecodable, SkippedEvents: s.Skipped, Stopped: s.Stopped,
		Elapsed: s.Elapsed.Seconds()}
	for _, st := range p.Stages {
		n, total := s.Stage(st.Name)
		if n == 0 {
			continue
		}
		r.Stages = append(r.Stages, stageTimes{Stage: st.Name, Visits: n, Total: total.Seconds(), Mean: total.Seconds() / float64(n)})
	}
	for _, v := range s.FailedVisits {
		r.FailedList = append(r.FailedList, failedVisit{Visit: v, Reason: s.Reasons[v]})
	}
	r.DataIDs, r.FailedDataIDs = map[string]int{}, []failedDataID{}
	for o, n := range s.DataIDs {
		r.DataIDs[string(o)] = n
	}
	for _, f := range s.FailedDataIDs {
		r.FailedDataIDs = append(r.FailedDataIDs, failedDataID{Visit: f.Visit, DataID: f.DataID, Stage: f.Stage, Error: f.Err})
	}
	return r
}

// loadValid loads a policy and validates it as new input.
func loadValid(path string) (*harness.Policy, error) {
	p, err := harness.Load(path, harness.LoadOptions{})
	if err != nil {
		return nil, err
	}
	if err := p.CheckDataIDValues(); err != nil {
		return nil, err
	}
	return p, nil
}
