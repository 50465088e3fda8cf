package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/internal/version"
)

func newApp() *cli.App {
	app := &cli.App{
		Name:  "dpsbatch",
		Usage: "run data-parallel science pipelines on a laptop or a Slurm cluster",
		Description: "A pipeline is a list of stages (policy file, YAML) run over visits: for each visit the\n" +
			"Pipeline (rank 0) runs the stages' serial parts and every Slice (ranks 1..N) the parallel parts\n" +
			"on its data IDs. Start with `dpsbatch local`, which runs the built-in example.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format on stderr: text or json"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "least severe log level shown: debug, info, warn or error"},
		},
		Commands: []*cli.Command{
			localCommand(),
			runCommand(),
			validateCommand(),
			stagesCommand(),
			submitCommand(),
			statusCommand(),
			waitCommand(),
			cancelCommand(),
			resumeCommand(),
			runsCommand(),
			siteCommand(),
			stopCommand(),
			finishCommand(),
			eventCommand(),
			eventsCommand(),
			reportCommand(),
			replayCommand(),
			monitorCommand(),
			brokerCommand(),
			completionCommand(),
		},
		EnableBashCompletion: true,
		Version:              version.Get().String(),
		// Global flags are checked for every command, whether it logs or not.
		Before: func(c *cli.Context) error {
			if err := checkFlagValues(c, c.App.Flags); err != nil {
				return err
			}
			_, err := newLogger(c, io.Discard)
			return err
		},
		OnUsageError: usageError,
		// Errors are printed and mapped to exit codes by main.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	var setUsage func([]*cli.Command)
	setUsage = func(cs []*cli.Command) {
		for _, c := range cs {
			c.OnUsageError = usageError
			flags := c.Flags
			c.Before = func(ctx *cli.Context) error { return checkFlagValues(ctx, flags) }
			if strings.HasPrefix(c.ArgsUsage, "RUN") {
				c.BashComplete = completeRuns
			}
			setUsage(c.Subcommands)
		}
	}
	setUsage(app.Commands)
	return app
}

func init() {
	// dpsbatch --version (or -v): the version and the commit, the line
	// submit --binary checks (package version).
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintln(c.App.Writer, c.App.Version) }
}

// usageError turns a flag or argument error into bad input (exit 2).
func usageError(_ *cli.Context, err error, _ bool) error {
	return fmt.Errorf("%w: %v (see --help)", harness.ErrInvalid, err)
}

// badInput reports a usage problem found by a command itself.
func badInput(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{harness.ErrInvalid}, args...)...)
}

// newLogger builds the logger the global flags ask for, writing to w.
func newLogger(c *cli.Context, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, badInput("--log-level: expected debug, info, warn or error, got %q", c.String("log-level"))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(c.String("log-format")) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, badInput("--log-format: expected text or json, got %q", c.String("log-format"))
}

var stderr io.Writer = os.Stderr
