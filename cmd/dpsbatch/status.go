package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/jobs"
	"github.com/dpsbatch/dpsbatch/state"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show runs' progress and their jobs' states",
		ArgsUsage: "RUN...",
		Description: "RUN is a run directory or a run's name under the site's runs root. For each run: visits per\n" +
			"state (pending, running, done, failed, interrupted: a visit whose job no longer runs it reads\n" +
			"interrupted), the rate and, while a job runs, the time left, and every job\n" +
			"with its state from Slurm — one squeue call however many runs, then sacct for jobs Slurm has\n" +
			"forgotten (when the cluster keeps accounting), else what the run recorded itself. A job that\n" +
			"Slurm requeued (node failure, scontrol requeue, preemption) shows as requeued while it waits to\n" +
			"start again under the same ID, with Slurm's reason and its earliest start, then each of its starts.\n" +
			"Once a job has ended, what it used (elapsed and CPU time, peak memory of one task against what\n" +
			"each slice asked for) from Slurm's accounting, stored in the run's state file once final.\n" +
			"--watch redraws a progress bar per run within about 50 ms of each change the runs' jobs record\n" +
			"and each time it asks Slurm (every --interval), until no job of the runs is live; with --json,\n" +
			"--failures or --outputs it prints the whole status every --interval instead. --failures also lists\n" +
			"each failed visit's error and every data ID that failed, with its stage and slice, and where its\n" +
			"input was captured, which `dpsbatch replay` runs again (--json: failures). --outputs also lists the\n" +
			"files the data IDs made that their stages declared (an exec stage's outputs), with their sizes and\n" +
			"the attempt that made them (--json: outputs).",
		Flags: []cli.Flag{
			siteFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print the statuses as JSON"},
			&cli.BoolFlag{Name: "watch", Usage: "follow the runs with a live progress bar until their jobs end"},
			&cli.DurationFlag{Name: "interval", Value: 5 * time.Second, Usage: "how often --watch asks Slurm (at least 1s)"},
			&cli.BoolFlag{Name: "failures", Usage: "also list each failed visit's error and every data ID that failed, with its stage, slice and capture"},
			&cli.BoolFlag{Name: "outputs", Usage: "also list the declared output files each data ID made, with their sizes"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return badInput("status takes one or more RUN (see `dpsbatch runs`)")
			}
			if c.Duration("interval") < time.Second {
				return badInput("--interval must be at least 1s, got %s", c.Duration("interval"))
			}
			dirs, b, err := manyRuns(c)
			if err != nil {
				return err
			}
			// --watch draws progress bars; with --json, --failures or
			// --outputs it prints that whole status at each --interval.
			if c.Bool("watch") && !c.Bool("json") && !c.Bool("failures") && !c.Bool("outputs") {
				return jobs.Watch(c.Context, b, dirs, c.Duration("interval"), func(all []jobs.RunStatus) error {
					for _, rs := range all {
						if _, err := fmt.Fprintf(c.App.Writer, "%s\n", progressBar(rs, 40)); err != nil {
							return err
						}
					}
					return nil
				})
			}
			for {
				all, err := jobs.Status(c.Context, b, dirs)
				if err != nil {
					return err
				}
				jobs.RecordUsage(c.Context, b, all)
				live := false
				for i, rs := range all {
					live = live || rs.Live
					if c.Bool("failures") {
						if all[i].Failures, err = jobs.Failures(rs.Dir, 0); err != nil {
							return err
						}
					}
					if c.Bool("outputs") {
						if all[i].Outputs, err = jobs.Outputs(rs.Dir, 0); err != nil {
							return err
						}
					}
				}
				switch {
				case c.Bool("json"):
					if err := printJSON(c.App.Writer, all); err != nil {
						return err
					}
				default:
					for _, rs := range all {
						printStatus(c.App.Writer, rs)
					}
				}
				if !c.Bool("watch") || !live {
					return nil
				}
				select {
				case <-c.Context.Done():
					return c.Context.Err()
				case <-time.After(c.Duration("interval")):
				}
			}
		},
	}
}

// progressBar is one line: name, a bar of done (#) and failed (x) visits,
// counts (and failed data IDs), rate and time left.
func progressBar(rs jobs.RunStatus, width int) string {
	done, failed := rs.Counts[state.Done], rs.Counts[state.Failed]
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = '.'
	}
	if rs.Visits > 0 {
		nd := done * width / rs.Visits
		nf := (done + failed) * width / rs.Visits
		for i := 0; i < nf && i < width; i++ {
			bar[i] = 'x'
		}
		for i := 0; i < nd && i < width; i++ {
			bar[i] = '#'
		}
	}
	line := fmt.Sprintf("%s [%s] %d/%d done", rs.Run, bar, done, rs.Visits)
	if failed > 0 {
		line += fmt.Sprintf(", %d failed", failed)
	}
	if n := rs.DataIDs[state.DataIDFailed]; n > 0 {
		line += fmt.Sprintf(", %d data IDs failed", n)
	}
	if rs.Rate > 0 {
		line += fmt.Sprintf(", %.3g/s", rs.Rate)
	}
	if rs.ETA > 0 {
		line += fmt.Sprintf(", %s left", rs.ETA.Round(time.Second))
	}
	return line + " (" + rs.Outcome.String() + ")"
}

func waitCommand() *cli.Command {
	return &cli.Command{
		Name:      "wait",
		Usage:     "block until a run's jobs end; the exit status tells the outcome",
		ArgsUsage: "RUN",
		Description: "Waits until the run's outcome is final, then prints the run's status: as soon as its state file\n" +
			"decides it (every job recorded its end and no visit is left to run: Slurm may still be ending the\n" +
			"job), else once no job of the run (nor a follow-on of --auto-resume) is pending or running. It\n" +
			"reads the state file as it changes, and asks Slurm every --interval, growing to 10s while nothing\n" +
			"changes, and at once when the state file says a job ended.\n" +
			"Exit status: 0 every visit done, 3 every visit ran and some failed, 1 the run ended\n" +
			"unfinished (cancelled, killed, out of time: `dpsbatch resume RUN`), 2 bad input.",
		Flags: []cli.Flag{
			siteFlag(),
			&cli.DurationFlag{Name: "interval", Value: 2 * time.Second, Usage: "how often to ask Slurm while the run changes (at least 1s; growing to 10s while it does not)"},
			&cli.BoolFlag{Name: "json", Usage: "print the final status as JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.Duration("interval") < time.Second {
				return badInput("--interval must be at least 1s, got %s", c.Duration("interval"))
			}
			t, err := openRun(c, false)
			if err != nil {
				return err
			}
			rs, err := jobs.Wait(c.Context, t.b, t.dir, jobs.WaitOptions{SlurmEvery: c.Duration("interval")})
			if rs.Run != "" {
				if c.Bool("json") {
					printJSON(c.App.Writer, rs)
				} else {
					printStatus(c.App.Writer, rs)
				}
			}
			return err
		},
	}
}

func cancelCommand() *cli.Command {
	return &cli.Command{
		Name:      "cancel",
		Usage:     "cancel a run's live jobs (the job and its follow-ons)",
		ArgsUsage: "RUN",
		Description: "Cancels every pending or running job of the run. A running job's Pipeline hears SIGTERM\n" +
			"and stops at the end of the current visit when it can; what is left stays pending, for resume.",
		Flags: []cli.Flag{siteFlag(), &cli.BoolFlag{Name: "json", Usage: "print the jobs cancelled as JSON"}},
		Action: func(c *cli.Context) error {
			t, err := openRun(c, false)
			if err != nil {
				return err
			}
			ids, err := jobs.Cancel(c.Context, t.b, t.dir)
			if c.Bool("json") {
				return errors.Join(err, printJSON(c.App.Writer, cancelled{Run: filepath.Base(t.dir), Dir: t.dir, Jobs: append([]string{}, ids...)}))
			}
			if len(ids) > 0 {
				fmt.Fprintf(c.App.Writer, "cancelled jobs %s\n", strings.Join(ids, ", "))
			} else if err == nil {
				fmt.Fprintln(c.App.Writer, "no live job to cancel")
			}
			return err
		},
	}
}

// cancelled is what cancel --json prints: the jobs it cancelled, follow-ons
// first; none when the run had no live job.
type cancelled struct {
	Run  string   `json:"run"`
	Dir  string   `json:"runDir"`
	Jobs []string `json:"cancelled"`
}

func runsCommand() *cli.Command {
	return &cli.Command{
		Name:  "runs",
		Usage: "list the runs under the site's runs root",
		Flags: []cli.Flag{siteFlag(), &cli.BoolFlag{Name: "json", Usage: "print the list as JSON"}},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return badInput("runs takes no arguments")
			}
			s, err := loadSite(c, true)
			if err != nil {
				return err
			}
			b, err := backend(s)
			if err != nil {
				return err
			}
			all, err := jobs.Runs(c.Context, s, b)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, all)
			}
			if len(all) == 0 {
				fmt.Fprintf(c.App.Writer, "no runs under %s\n", s.RunsRoot)
			}
			for _, rs := range all {
				if rs.Unreadable != "" {
					fmt.Fprintf(c.App.Writer, "%-32s cannot be read: %s\n", rs.Run, rs.Unreadable)
					continue
				}
				last := "-"
				if n := len(rs.Jobs); n > 0 {
					last = rs.Jobs[n-1].ID + " " + strings.ToLower(rs.Jobs[n-1].State)
				}
				fmt.Fprintf(c.App.Writer, "%-32s %-12s %-10s %6d/%-6d done  job %s\n", rs.Run, rs.Pipeline, rs.Outcome,
					rs.Counts[state.Done], rs.Visits, last)
			}
			return nil
		},
	}
}
