package main

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/capture"
	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/injob"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run one rank of a pipeline (the command srun or mpirun starts on every rank)",
		Description: "Every rank loads the pipeline from the run directory, which all nodes must see; rank 0 (the\n" +
			"Pipeline) reads the visit file and runs every visit in it, the other ranks are the Slices.\n" +
			"  srun -n5 --mpi=none dpsbatch run --run-dir DIR           (tcp: ranks meet in DIR/.rendezvous)\n" +
			"  srun -n5 --mpi=pmix dpsbatch run --run-dir DIR           (mpi, with a binary built -tags mpi)\n" +
			"  mpirun -np 5 dpsbatch run --run-dir DIR                  (mpi, inside an allocation)\n" +
			"  dpsbatch run --comm local --size 5 --run-dir DIR         (every rank in this process)\n\n" +
			"--comm auto picks mpi when built with MPI and started by mpirun or srun --mpi=pmix, tcp when\n" +
			"started by srun; without either, pass --comm tcp with --rank and --size, or --comm local.\n\n" +
			"Rank 0 prints the summary. Exit status: 0 every visit succeeded, 3 some failed, 2 bad input,\n" +
			"130 interrupted, 1 other errors. SIGINT, SIGTERM or SIGUSR1 stops at the end of the current\n" +
			"visit; a second one interrupts it.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "run-dir", Usage: "run directory (required), shared by all nodes: holds pipeline.yaml, the visit file and the outputs"},
			&cli.StringFlag{Name: "pipeline", Usage: "pipeline policy (default: RUN-DIR/pipeline.yaml)"},
			&cli.StringFlag{Name: "visits", Usage: "visit file, read by rank 0 only (default: RUN-DIR/visits.csv)"},
			&cli.StringFlag{Name: "run-id", Usage: "run ID carried by every event and log record (default: the run directory's name)"},
			&cli.StringFlag{Name: "comm", Value: harness.CommAuto, Usage: "communicator: auto, tcp, mpi or local"},
			&cli.IntFlag{Name: "rank", Value: -1, Usage: "this process's rank, for tcp outside srun (with --size)"},
			&cli.IntFlag{Name: "size", Usage: "number of ranks, for tcp outside srun (with --rank), or for local"},
			&cli.StringFlag{Name: "state", Usage: "the run's state file (batch jobs): rank 0 runs the visits it lists as unfinished and records progress in it"},
			&cli.StringFlag{Name: "stop-file", Usage: "with --state: once this file exists (the job script writes it on Slurm's time-limit warning), read the job's end time again and stop at the next visit boundary if little time is left"},
			&cli.StringFlag{Name: "name", Usage: "the pipeline's name in this run, in its events and {pipeline} (a production's entry name; default: the policy's)"},
			&cli.StringFlag{Name: "pipeline-dir", Usage: "what {pipelinedir} names (default: the policy file's folder)"},
			&cli.StringFlag{Name: "rendezvous", Usage: "directory where tcp ranks find rank 0, shared by all nodes (default: RUN-DIR/.rendezvous)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return badInput("run takes no arguments, got %q", c.Args().First())
			}
			if c.String("run-dir") == "" {
				return badInput("--run-dir is required")
			}
			return runRank(c)
		},
	}
}

func runRank(c *cli.Context) error {
	log, err := newLogger(c, stderr)
	if err != nil {
		return err
	}
	dir := c.String("run-dir")
	dr := harness.RunOptions{RunDir: dir, PolicyPath: c.String("pipeline"), VisitsPath: c.String("visits"),
		RunID: c.String("run-id"), Logger: log, PipelineDir: c.String("pipeline-dir"), Name: c.String("name")}
	var job *injob.InJob
	if path := c.String("state"); path != "" {
		job = &injob.InJob{StatePath: path, JobID: os.Getenv("SLURM_JOB_ID"), Logger: log, StopFile: c.String("stop-file"),
			Restart: injob.RestartCount()}
		// In the job, Slurm's tools on the node (whatever the site's
		// backend: its token is not passed to jobs).
		if b, err := backend(nil); err == nil && job.JobID != "" {
			// Which jobs still run (another job's running visits are
			// its own; a job running visits is waited for), and why a
			// requeued job's earlier start ended. Without Slurm's tools:
			// every running visit is a dead job's, and heartbeats tell.
			job.Slurm = b
			// The job's end by its time limit, for its time budget.
			job.Deadline = injob.SlurmDeadline(b, job.JobID)
		}
		dr.Rank0 = job.Hook
	}
	if dr.PolicyPath == "" {
		dr.PolicyPath = filepath.Join(dir, "pipeline.yaml")
	}
	// The stages submit --freeze-dry named, for every rank.
	if dr.FreezeDry, err = capture.ReadStages(dir); err != nil {
		return err
	}
	if dr.VisitsPath == "" {
		dr.VisitsPath = filepath.Join(dir, "visits.csv")
	}
	if dr.RunID == "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return badInput("--run-dir: %v", err)
		}
		dr.RunID = filepath.Base(abs)
	}
	dr.Ranks, dr.Rank, dr.Size, dr.Rendezvous = c.String("comm"), c.Int("rank"), c.Int("size"), c.String("rendezvous")
	if dr.Rendezvous == "" {
		dr.Rendezvous = filepath.Join(dir, ".rendezvous")
	}
	switch {
	case dr.Size < 0:
		return badInput("--size must be at least 2")
	case dr.Ranks != harness.CommLocal && (dr.Rank >= 0) != (dr.Size > 0):
		return badInput("--rank and --size go together")
	}

	// The stop is heard by rank 0; the slices follow it. Only rank 0 heeds the signals: it learns it is rank 0 in the Rank0
	// hook, once the ranks have met.
	var rank0 atomic.Bool
	hook := dr.Rank0
	dr.Rank0 = func(p *harness.Policy, d *harness.RunOptions) error {
		rank0.Store(true)
		if hook != nil {
			return hook(p, d)
		}
		return nil
	}
	// Every rank notes them: a slice's program that dies of the same
	// signal leaves its visit interrupted, not failed.
	dr.StopSignals = new(harness.StopSignals)
	ctx, stop, done := stopOnSignals(c.Context, dr.StopSignals, rank0.Load, os.Interrupt, syscall.SIGTERM, syscall.SIGUSR1)
	defer done()
	dr.Stop = stop

	sum, err := harness.Run(ctx, dr)
	if job != nil {
		job.Summarize(sum) // the counts the state file holds
	}
	if sum != nil {
		sum.Print(c.App.Writer)
	}
	if job != nil {
		if jerr := job.End(sum, err); jerr != nil {
			log.Error("recording the job's end in the state file", "err", jerr)
			if err == nil {
				err = jerr
			}
		}
	}
	return err
}
