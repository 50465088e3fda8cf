package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/examples"
	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/jobs"
)

type localOptions struct {
	policy, visits string
	runDir, runID  string
	slices         int
}

func localCommand() *cli.Command {
	return &cli.Command{
		Name:      "local",
		Usage:     "run a pipeline on this machine (no Slurm, no MPI, no broker)",
		ArgsUsage: "[PIPELINE]",
		Description: "Runs every visit of the visit file through the pipeline, with the Pipeline and the Slices\n" +
			"as goroutines of this process. Without PIPELINE it runs the built-in example (ccdproc), copied\n" +
			"into the run directory first.\n\n" +
			"The visit file is CSV with a header row or JSON lines, with a visitId column or key; the\n" +
			"other columns become properties on every clipboard.\n\n" +
			"Exit status: 0 every visit succeeded, 3 some failed, 2 bad input, 130 interrupted, 1 other errors.\n" +
			"A first Ctrl-C stops at the end of the current visit; a second one interrupts it.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "visits", Usage: "visit file (CSV or JSON lines); required with PIPELINE"},
			&cli.StringFlag{Name: "run-dir", Usage: "run directory for outputs (default: runs/RUN-ID)"},
			&cli.StringFlag{Name: "run-id", Usage: "run ID carried by every event and log record (default: PIPELINE-DATE-TIME)"},
			&cli.IntFlag{Name: "slices", Usage: "number of slices, overriding the policy"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return badInput("local takes at most one PIPELINE argument, got %d", c.NArg())
			}
			return runLocal(c, localOptions{policy: c.Args().First(), visits: c.String("visits"),
				runDir: c.String("run-dir"), runID: c.String("run-id"), slices: c.Int("slices")})
		},
	}
}

func runLocal(c *cli.Context, o localOptions) error {
	log, err := newLogger(c, stderr)
	if err != nil {
		return err
	}
	example := o.policy == ""
	if !example && o.visits == "" {
		return badInput("--visits is required with a PIPELINE (the built-in example brings its own)")
	}
	stamp := time.Now().Format("20060102-150405")
	var p *harness.Policy
	if !example {
		if p, err = loadValid(o.policy); err != nil {
			return err
		}
	}
	if o.runID == "" {
		name := examples.Default
		if p != nil {
			name = p.Name
		}
		o.runID = name + "-" + stamp
	}
	// The run ID names the run directory: the run-name rules apply
	// before anything is made or printed.
	if err := jobs.CheckName(o.runID); err != nil {
		return fmt.Errorf("--run-id: %w", err)
	}
	if o.runDir == "" {
		o.runDir = filepath.Join("runs", o.runID)
	}
	if example {
		if o.policy, o.visits, err = examples.Extract(examples.Default, filepath.Join(o.runDir, "pipeline")); err != nil {
			return err
		}
		if p, err = loadValid(o.policy); err != nil {
			return err
		}
	}
	visits, err := harness.ReadVisits(o.visits)
	if err != nil {
		return err
	}
	if err := harness.CheckVisits(p, o.visits, visits); err != nil {
		return err
	}

	noted := harness.NewStopSignals()
	ctx, stop, done := stopOnSignals(c.Context, noted, nil, os.Interrupt, syscall.SIGTERM)
	defer done()

	fmt.Fprintf(c.App.Writer, "run %s: %d visits of %s, run directory %s\n", o.runID, len(visits), p.Name, o.runDir)
	sum, err := harness.RunLocal(ctx, harness.LocalRun{Policy: p, Visits: visits, RunID: o.runID, RunDir: o.runDir,
		Slices: o.slices, Logger: log, Stop: stop, StopSignals: noted})
	if sum != nil {
		sum.Print(c.App.Writer)
	}
	return err
}

// loadValid loads a policy and validates it as new input.
func loadValid(path string) (*harness.Policy, error) {
	p, err := harness.Load(path)
	if err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := p.CheckDataIDValues(); err != nil {
		return nil, err
	}
	return p, nil
}
