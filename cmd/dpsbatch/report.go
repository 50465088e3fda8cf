package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/report"
	"github.com/dpsbatch/dpsbatch/rundir"
)

// reportFile is where report writes by default, in the run directory.
const reportFile = "report.html"

func reportCommand() *cli.Command {
	return &cli.Command{
		Name:      "report",
		Usage:     "write a run's report: one HTML file that opens without a network",
		ArgsUsage: "RUN",
		Description: "Reads the run's state files (the run's own, and each pipeline step's) and writes one\n" +
			"self-contained HTML page: the jobs and their starts, visits per state, a timeline of the\n" +
			"visits per job, each stage's time distribution, the slowest visits and the failures with\n" +
			"their errors, and what the jobs used (elapsed and CPU time, peak memory against what the slices\n" +
			"asked for). Like status, it first asks Slurm's accounting what the run's ended jobs used and\n" +
			"stores it in the run's state file; without Slurm it shows what is stored. Default output:\n" +
			"RUN-DIR/report.html.",
		Flags: []cli.Flag{
			siteFlag(),
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "the file to write, - for stdout (default RUN-DIR/" + reportFile + ")"},
		},
		Action: func(c *cli.Context) error {
			s, err := loadSite(c, false)
			if err != nil {
				return err
			}
			dir, err := oneRun(c, s)
			if err != nil {
				return err
			}
			recordRunUsage(c, s, dir)
			steps, err := runSteps(dir)
			if err != nil {
				return err
			}
			out := cmp.Or(c.String("output"), filepath.Join(dir, reportFile))
			if out == "-" {
				return report.Write(c.App.Writer, steps, report.Options{})
			}
			if err := writeReport(out, steps); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "report of run %s: %s\n", filepath.Base(dir), out)
			return nil
		},
	}
}

// runSteps lists the state files of the run in dir, one per step, as
// its settings list them: the run's own, then each production pipeline's
// (RUN-DIR/pipelines/NAME/state.db), in the production's order.
func runSteps(dir string) ([]report.Step, error) {
	l := rundir.Layout{Dir: dir}
	_, set, err := rundir.ReadSettings(l)
	if err != nil {
		return nil, err
	}
	steps := []report.Step{{State: l.State()}}
	for _, d := range rundir.StepsApart(l, set) {
		steps = append(steps, report.Step{Name: d.Name, State: d.Layout.State()})
	}
	return steps, nil
}

// writeReport writes the report of steps to path, through a temporary
// file beside it: path holds a whole report or is left as it was.
func writeReport(path string, steps []report.Step) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".report-*.html")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := report.Write(f, steps, report.Options{}); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
