package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/jobs"
)

func resumeCommand() *cli.Command {
	return &cli.Command{
		Name:      "resume",
		Usage:     "submit a new job for what a run left unfinished",
		ArgsUsage: "RUN",
		Description: "Runs again the visits that are pending, interrupted (running when a job died, or cut short)\n" +
			"or failed, leaving out those already tried --max-attempts times. Done visits never run again.\n" +
			"Refuses while a job of the run is pending or running. The allocation is planned as at submit.\n" +
			"Holds the run's lock while it decides and submits: a second resume of the run waits --wait-lock\n" +
			"(default 3s), then exits 1 naming the holder. A job whose submitter was killed before recording\n" +
			"it is found by its name in Slurm and adopted, never submitted twice. A run keeps a copy of the\n" +
			"files its policy names under {pipelinedir}, taken at submit: editing them changes no run;\n" +
			"--refresh takes a new copy (checked as at submit) for the new job, and records when.\n" +
			"Exit status: 0 submitted, or nothing left to do; 3 visits are left at --max-attempts; 2 bad input;\n" +
			"1 the run is locked by another command, or other errors.\n" +
			"A run of `dpsbatch local` is resumed on this machine, as `dpsbatch local --resume RUN`.\n\n" +
			"--partition, --slices, --mem-per-slice and --time change what the next job asks for (and every job\n" +
			"after it: the run keeps the new request, and status shows it), checked against the partition's\n" +
			"limits first: a request over them is bad input (exit 2), and nothing is submitted or changed.\n" +
			"--grow --auto-resume N turns growth on (see submit --help); this job too asks for more when the\n" +
			"run's last job ran out of time or memory. Without --grow, a resume turns growth off.",
		Flags: []cli.Flag{
			siteFlag(),
			&cli.IntFlag{Name: "max-attempts", Usage: "leave out visits tried this many times already (0: no limit)"},
			&cli.IntFlag{Name: "auto-resume", Usage: "follow-on jobs to chain after this one (afterany)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan and the job script; change and submit nothing"},
			&cli.BoolFlag{Name: "refresh", Usage: "copy the pipeline's files named under {pipelinedir} again, from the folder the run was submitted from"},
			&cli.DurationFlag{Name: "wait-lock", Usage: "while another command holds the run's lock, wait this long for it (default 3s)"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
			&cli.StringFlag{Name: "partition", Aliases: []string{"p"}, Usage: "site partition of the next job (default: the run's)"},
			&cli.IntFlag{Name: "slices", Usage: "number of slices of the next job (default: the run's)"},
			&cli.StringFlag{Name: "mem-per-slice", Usage: "memory each slice of the next job needs, such as 2G (default: the run's)"},
			&cli.StringFlag{Name: "time", Usage: "time limit of the next job, such as 2:00:00 (default: the run's)"},
			growFlag(),
			&cli.BoolFlag{Name: "auto", Usage: "run by a job of a run with growth on at its end: submit the next job, grown if it ran short"},
			&cli.StringFlag{Name: "job", EnvVars: []string{"DPSBATCH_ENDING_JOB"}, Usage: "with --auto: the job that ends (not counted live)"},
		},
		Action: func(c *cli.Context) error {
			if c.Duration("wait-lock") < 0 {
				return badInput("--wait-lock must not be negative, got %s", c.Duration("wait-lock"))
			}
			change, err := requestChange(c)
			if err != nil {
				return err
			}
			t, err := openRun(c, false)
			if err != nil {
				return err
			}
			if local, err := jobs.RanLocally(t.dir); err != nil || local {
				return errors.Join(err, resumeLocal(c, t.dir, local))
			}
			if t.site == nil {
				_, err := loadSite(c, true) // says why one is needed
				return err
			}
			res, err := jobs.Resume(c.Context, jobs.ResumeOptions{Site: t.site, Backend: t.b, Dir: t.dir,
				MaxAttempts: c.Int("max-attempts"), AutoResume: c.Int("auto-resume"), DryRun: c.Bool("dry-run"),
				Refresh: c.Bool("refresh"), WaitLock: c.Duration("wait-lock"), Change: change, Grow: c.Bool("grow"),
				Auto: c.Bool("auto"), Job: c.String("job"), Out: dryRunOut(c)})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if err := printJSON(c.App.Writer, res); err != nil {
					return err
				}
			} else if !res.DryRun {
				w := c.App.Writer
				for _, from := range res.Refreshed {
					fmt.Fprintf(w, "pipeline files copied again from %s\n", from)
				}
				switch {
				case res.Skipped != "":
					fmt.Fprintf(w, "run %s: nothing submitted: %s\n", res.Run, res.Skipped)
				case res.Complete:
					fmt.Fprintf(w, "run %s: nothing left to run\n", res.Run)
				default:
					printSubmitted(c, &res.Submitted)
					if res.Retried > 0 {
						fmt.Fprintf(w, "  %d visits run again (failed, interrupted, or with a data ID not done)\n", res.Retried)
					}
					if res.Grown != "" {
						fmt.Fprintf(w, "  grown: %s\n", res.Grown)
					}
				}
			}
			if n := len(res.Exhausted); n > 0 {
				shown := res.Exhausted[:min(n, 10)]
				return fmt.Errorf("%w: %d visits left out at --max-attempts %d: %s", harness.ErrVisitsFailed, n,
					c.Int("max-attempts"), strings.Join(shown, ", "))
			}
			return nil
		},
	}
}

// resumeLocal resumes the local run in dir on this machine (when local),
// as `dpsbatch local --resume` does; the flags that only a job takes are
// refused.
func resumeLocal(c *cli.Context, dir string, local bool) error {
	if !local {
		return nil
	}
	for _, f := range []string{"max-attempts", "auto-resume", "dry-run", "wait-lock", "partition", "slices", "mem-per-slice", "time", "grow", "auto"} {
		if c.IsSet(f) {
			return badInput("run %s ran on this machine (dpsbatch local): it resumes here, without --%s", filepath.Base(dir), f)
		}
	}
	return runLocal(c, localOptions{resume: dir, refresh: c.Bool("refresh"), json: c.Bool("json")})
}

// requestChange reads the flags that change the run's request.
func requestChange(c *cli.Context) (jobs.RequestChange, error) {
	ch := jobs.RequestChange{Partition: c.String("partition"), Slices: c.Int("slices")}
	if ch.Slices < 0 || c.IsSet("slices") && ch.Slices == 0 {
		return ch, badInput("--slices must be positive, got %d", ch.Slices)
	}
	var err error
	if ch.MemPerSliceMB, err = memFlag(c); err != nil {
		return ch, err
	}
	ch.Time, err = timeFlag(c)
	return ch, err
}
