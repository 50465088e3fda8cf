package main

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/internal/slurmtime"
	"github.com/dpsbatch/dpsbatch/internal/version"
	"github.com/dpsbatch/dpsbatch/jobs"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/site"
)

func requestFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "partition", Aliases: []string{"p"}, Usage: "site partition (default: the site's default)"},
		&cli.IntFlag{Name: "slices", Usage: "number of slices (default: the policy's, or one per data ID)"},
		&cli.IntFlag{Name: "cpus-per-slice", Value: 1, Usage: "CPUs each slice needs"},
		&cli.StringFlag{Name: "mem-per-slice", Usage: "memory each slice needs, such as 500M or 2G (default: do not ask)"},
		&cli.IntFlag{Name: "gpus-per-slice", Usage: "GPUs each slice needs, on a partition with gpus_per_node (default: the policy's gpus_per_slice, else none)"},
		&cli.StringFlag{Name: "time", Usage: "time limit, such as 2:00:00 or 90m (default: the partition's)"},
		&cli.StringFlag{Name: "strategy", Value: string(scheduler.Pack), Usage: "pack (fewest nodes) or spread (one slice per node)"},
	}
}

func request(c *cli.Context) (rundir.Request, error) {
	r := rundir.Request{Partition: c.String("partition"), Slices: c.Int("slices"), CPUsPerSlice: c.Int("cpus-per-slice"),
		GPUsPerSlice: c.Int("gpus-per-slice"), Strategy: scheduler.Strategy(c.String("strategy"))}
	if r.Strategy != scheduler.Pack && r.Strategy != scheduler.Spread {
		return r, badInput("--strategy: expected pack or spread, got %q", r.Strategy)
	}
	var err error
	if r.MemPerSliceMB, err = memFlag(c); err != nil {
		return r, err
	}
	r.Time, err = timeFlag(c)
	return r, err
}

// memFlag reads --mem-per-slice in megabytes (0 when not given).
func memFlag(c *cli.Context) (int, error) {
	m := c.String("mem-per-slice")
	if m == "" {
		return 0, nil
	}
	mb, err := parseMemMB(m)
	if err != nil {
		return 0, badInput("--mem-per-slice: %v", err)
	}
	return mb, nil
}

// timeFlag reads --time (0 when not given).
func timeFlag(c *cli.Context) (time.Duration, error) {
	t := c.String("time")
	if t == "" {
		return 0, nil
	}
	d, err := slurmtime.Parse(t)
	if err != nil || d == 0 {
		return 0, badInput("--time: %s", errOr(err, "a limit is needed, not infinite"))
	}
	return d, nil
}

func errOr(err error, msg string) string {
	if err != nil {
		return err.Error()
	}
	return msg
}

func submitCommand() *cli.Command {
	return &cli.Command{
		Name:      "submit",
		Usage:     "submit a pipeline and its visits, or a production, as a Slurm job on a site partition",
		ArgsUsage: "PIPELINE --visits FILE | PIPELINE --listen | PRODUCTION",
		Description: "Creates a run directory under the site's runs root (a copy of the policy and visit list,\n" +
			"the job script, Slurm's logs, the state file), sizes the allocation from the partition's nodes\n" +
			"and CPUs (one task per slice plus one for the Pipeline), renders the job script and submits it.\n" +
			"It prints the run's name, the job ID and where to look; then use status, wait, cancel, resume.\n\n" +
			"With --auto-resume N, N follow-on jobs wait for the job before (afterany) and run whatever it\n" +
			"left unfinished, so a run longer than the time limit finishes without a person: near the\n" +
			"limit Slurm sends SIGUSR1 and the Pipeline stops at a clean visit boundary.\n\n" +
			"Events: each job starts the run's event broker (embedded NATS, or the site's own) and records\n" +
			"its address in the state file. `dpsbatch stop RUN` stops the run at the next visit boundary;\n" +
			"with --listen the run reads trigger events (dpsbatch event send, or another pipeline) after its\n" +
			"visit list — which may then be left out — until `dpsbatch finish RUN`. The Pipeline publishes\n" +
			"a heartbeat every --heartbeat; status flags a running job that has missed three.\n\n" +
			"With --grow (on a site whose scheduler.grow sets factors) the --auto-resume N jobs are not\n" +
			"chained in advance: each job submits the next at its end (dpsbatch resume --auto), asking for more\n" +
			"time when it ran out of time, or more memory per slice when its steps were killed for memory,\n" +
			"up to the partition's limits; status says why the request grew.\n\n" +
			"A production file (top-level key production; see the README) lists several pipelines, each\n" +
			"with its policy, visits and slices: they run as concurrent srun steps of ONE job, sized for\n" +
			"all of them, and share the run's broker, so that one pipeline's event stage triggers the\n" +
			"next. --visits, --listen and --slices are set per pipeline in the file; status, wait, stop,\n" +
			"finish, events, cancel and resume take the production's run as a whole.\n\n" +
			"--dry-run prints the plan and the script and creates and submits nothing; with --json, one JSON\n" +
			"object carries both (plan, scripts).\n" +
			"Exit status: 0 submitted, 2 bad input (nothing created or submitted), 1 other errors.",
		Flags: append([]cli.Flag{
			siteFlag(),
			&cli.StringFlag{Name: "visits", Usage: "visit file (CSV or JSON lines); required unless --listen"},
			&cli.BoolFlag{Name: "listen", Usage: "after the visit list, read trigger events from the run's broker until dpsbatch finish"},
			&cli.BoolFlag{Name: "hold", Usage: "submit the job held: it waits until scontrol release JOBID (e.g. to send it events first)"},
			&cli.DurationFlag{Name: "heartbeat", Value: rundir.DefaultHeartbeat, Usage: "how often the Pipeline says it is alive (at least 100ms)"},
			&cli.StringFlag{Name: "name", Usage: "run name (default: PIPELINE-DATE-TIME); letters, digits, . _ -"},
			&cli.IntFlag{Name: "auto-resume", Usage: "follow-on jobs to chain after the first (afterany)"},
			growFlag(),
			&cli.StringFlag{Name: "binary", Usage: "dpsbatch executable the job runs on the nodes (default: this one)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan and the job script; create and submit nothing"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
			freezeDryFlag(),
		}, requestFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return badInput("submit takes one PIPELINE or PRODUCTION file, got %d arguments", c.NArg())
			}
			s, err := loadSite(c, true)
			if err != nil {
				return err
			}
			r, err := request(c)
			if err != nil {
				return err
			}
			if bin := c.String("binary"); bin != "" {
				// As the job will run it: a path, not a name looked up in $PATH.
				abs, err := filepath.Abs(bin)
				if err != nil {
					return badInput("--binary %s: %v", bin, err)
				}
				if err := version.Check(c.Context, abs); err != nil {
					return badInput("--binary %s: %v (the job's binary must be the same dpsbatch as the one that submits: dpsbatch --version)", bin, err)
				}
			}
			b, err := backend(s)
			if err != nil && !c.Bool("dry-run") {
				return err
			}
			sub, err := jobs.Submit(c.Context, jobs.SubmitOptions{Site: s, Backend: b, Policy: c.Args().First(),
				Visits: c.String("visits"), Listen: c.Bool("listen"), Heartbeat: c.Duration("heartbeat"), Hold: c.Bool("hold"),
				Name: c.String("name"), Request: r, AutoResume: c.Int("auto-resume"), Grow: c.Bool("grow"),
				Binary: c.String("binary"), DryRun: c.Bool("dry-run"), Out: dryRunOut(c), FreezeDry: c.StringSlice("freeze-dry")})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, sub)
			}
			if !sub.DryRun {
				printSubmitted(c, sub)
			}
			return nil
		},
	}
}

// growFlag is --grow of submit and resume.
func growFlag() cli.Flag {
	return &cli.BoolFlag{Name: "grow", Usage: "with --auto-resume N: each job submits the next at its end, with more time or memory when it ran short (the site's scheduler.grow)"}
}

// dryRunOut is where a dry run prints its plan and scripts: stdout, or
// nowhere with --json, whose object carries them (plan, scripts).
func dryRunOut(c *cli.Context) io.Writer {
	if c.Bool("json") {
		return nil
	}
	return c.App.Writer
}

func printSubmitted(c *cli.Context, sub *jobs.Submitted) {
	w := c.App.Writer
	fmt.Fprintf(w, "run %s: job %s submitted (attempt %d, %s, %s on %s of %s)\n",
		sub.Run, sub.Jobs[0], sub.Attempt, plural(sub.Visits, "visit"), plural(sub.Plan.Tasks, "task"),
		plural(sub.Plan.Nodes, "node"), sub.Plan.Partition)
	for _, st := range sub.Steps {
		fmt.Fprintf(w, "  pipeline %s: %s and its Pipeline\n", st.Pipeline, plural(st.Slices, "slice"))
	}
	if len(sub.Jobs) > 1 {
		fmt.Fprintf(w, "  follow-on jobs: %v\n", sub.Jobs[1:])
	}
	if sub.Note != "" {
		fmt.Fprintf(w, "  note: %s\n", sub.Note)
	}
	fmt.Fprintf(w, "  run directory: %s\n  job script:    %s\n  Slurm log:     %s\n", sub.Dir, sub.Script, sub.Log)
	fmt.Fprintf(w, "  progress:      dpsbatch status %s   (wait, cancel, resume likewise)\n", sub.Run)
}

// parseMemMB reads a memory size flag the way the site file does.
func parseMemMB(s string) (int, error) { return site.ParseMemory(s) }

// plural is "1 node", "2 nodes".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
