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
	"github.com/dpsbatch/dpsbatch/rundir"
)

type localOptions struct {
	policy, visits string
	runDir, runID  string
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
			"The visit file is CSV with a header row or JSON lines, with a visitId column or key; the\n" +
			"other columns become properties on every clipboard.\n\n" +
			"With --json, stdout is one JSON object: the run's summary (visits run, done and failed, per-stage times);\n" +
			"for a production, its name and steps, a summary per pipeline.\n" +
			"Exit status: 0 every visit succeeded, 3 some failed, 2 bad input, 130 interrupted, 1 other errors.\n" +
			"A first Ctrl-C stops at the end of the current visit; a second one interrupts it.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "visits", Usage: "visit file (CSV or JSON lines); required with PIPELINE"},
			&cli.StringFlag{Name: "run-dir", Usage: "run directory for outputs (default: runs/RUN-ID)"},
			&cli.StringFlag{Name: "run-id", Usage: "run ID carried by every event and log record (default: PIPELINE-DATE-TIME)"},
			&cli.IntFlag{Name: "slices", Usage: "number of slices, overriding the policy"},
			&cli.BoolFlag{Name: "json", Usage: "print the run's summary as JSON"},
			freezeDryFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return badInput("local takes at most one PIPELINE argument, got %d", c.NArg())
			}
			return runLocal(c, localOptions{policy: c.Args().First(), visits: c.String("visits"),
				runDir: c.String("run-dir"), runID: c.String("run-id"), slices: c.Int("slices"),
				json: c.Bool("json"), freezeDry: c.StringSlice("freeze-dry")})
		},
	}
}

func runLocal(c *cli.Context, o localOptions) error {
	log, err := newLogger(c, stderr)
	if err != nil {
		return err
	}
	example := o.policy == ""
	stamp := time.Now().Format("20060102-150405")
	var in *input.Input
	if !example {
		if in, err = input.ReadInput(o.policy, input.InputOptions{Visits: o.visits, Slices: o.slices}); err != nil {
			if errors.Is(err, input.ErrNoVisits) {
				return badInput("--visits is required with a PIPELINE (the built-in example brings its own)")
			}
			return err
		}
	}
	if o.runID == "" {
		name := examples.Default
		if in != nil {
			name = in.Name
		}
		o.runID = name + "-" + stamp
	}
	// The run ID names the run directory: the run-name rules apply
	// before anything is made or printed, as do --freeze-dry's stages.
	if err := rundir.CheckName(o.runID); err != nil {
		return fmt.Errorf("--run-id: %w", err)
	}
	if in != nil {
		if err := in.CheckFreezeDry(o.freezeDry); err != nil {
			return err
		}
	}
	if o.runDir == "" {
		o.runDir = filepath.Join("runs", o.runID)
	}
	if example {
		if o.policy, o.visits, err = examples.Extract(examples.Default, filepath.Join(o.runDir, "pipeline")); err != nil {
			return err
		}
		if in, err = input.ReadInput(o.policy, input.InputOptions{Visits: o.visits, Slices: o.slices}); err != nil {
			return err
		}
	}

	noted := new(harness.StopSignals)
	ctx, stop, done := stopOnSignals(c.Context, noted, nil, os.Interrupt, syscall.SIGTERM)
	defer done()

	if !o.json {
		printLocalStart(c.App.Writer, o, in)
	}
	res, err := injob.RunLocal(ctx, in, injob.LocalOptions{RunID: o.runID, RunDir: o.runDir, Logger: log, Stop: stop, StopSignals: noted, FreezeDry: o.freezeDry})
	if o.json {
		if v := summarizeRun(o, in, res); v != nil {
			err = errors.Join(err, printJSON(c.App.Writer, v))
		}
		return err
	}
	for _, r := range res {
		if r.Summary == nil {
			continue
		}
		if r.Step.Name != "" {
			fmt.Fprintf(c.App.Writer, "pipeline %s: ", r.Step.Name)
		}
		r.Summary.Print(c.App.Writer)
	}
	return err
}

// printLocalStart says what a local run is about to run.
func printLocalStart(w io.Writer, o localOptions, in *input.Input) {
	visits := 0
	for _, st := range in.Steps {
		visits += len(st.Visits)
	}
	what := in.Name
	if len(in.Steps) > 1 || in.Steps[0].Name != "" {
		what = fmt.Sprintf("production %s (%d pipelines)", in.Name, len(in.Steps))
	}
	fmt.Fprintf(w, "run %s: %d visits of %s, run directory %s\n", o.runID, visits, what, o.runDir)
	if in.Note != "" {
		fmt.Fprintf(w, "note: %s; only a stop (Ctrl-C) ends the pipelines that wait for them\n", in.Note)
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
// summary, or a production's.
func summarizeRun(o localOptions, in *input.Input, res []injob.LocalResult) any {
	runs := []localRun{}
	for _, r := range res {
		if r.Summary != nil {
			runs = append(runs, summarize(o.runID, r.Dir, r.Step.Policy, r.Summary))
		}
	}
	if len(res) == 1 && res[0].Step.Name == "" {
		if len(runs) == 0 {
			return nil
		}
		return runs[0]
	}
	return localProduction{Run: o.runID, Dir: o.runDir, Pipeline: in.Name, Steps: runs}
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
		n := s.StageCalls[st.Name]
		if n == 0 {
			continue
		}
		total := s.StageTime[st.Name]
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
