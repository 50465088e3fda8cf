package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/dpsbatch/dpsbatch/injob"
	"github.com/urfave/cli/v2"
)

func brokerCommand() *cli.Command {
	return &cli.Command{
		Name:  "broker",
		Usage: "serve a run's embedded event broker (the job script starts it)",
		Description: "Serves the run's embedded NATS broker (store and token in RUN-DIR/broker) on every address\n" +
			"of this host until SIGTERM or SIGINT, and records its address in the run's state file for the\n" +
			"job (--job, default $SLURM_JOB_ID). The job script starts it beside the run's steps (one, or a\n" +
			"production's several), whose Pipelines dial it; `dpsbatch run --state` by hand needs it too.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "run-dir", Usage: "the run directory (required)"},
			&cli.StringFlag{Name: "job", EnvVars: []string{"SLURM_JOB_ID"}, Usage: "the job whose broker this is"},
		},
		Action: func(c *cli.Context) error {
			if c.String("run-dir") == "" || c.NArg() > 0 {
				return badInput("broker takes --run-dir DIR and no arguments")
			}
			log, err := newLogger(c, stderr)
			if err != nil {
				return err
			}
			ctx, done := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer done()
			err = injob.ServeBroker(ctx, c.String("run-dir"), c.String("job"), injob.RestartCount(), log, nil)
			if err == nil || ctx.Err() != nil {
				return nil
			}
			return err
		},
	}
}
