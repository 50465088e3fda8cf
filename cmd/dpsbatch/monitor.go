package main

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/jobs"
	"github.com/dpsbatch/dpsbatch/monitor"
	"github.com/dpsbatch/dpsbatch/scheduler"
)

func monitorCommand() *cli.Command {
	return &cli.Command{
		Name:      "monitor",
		Usage:     "watch runs and raise an alert when they stop working",
		ArgsUsage: "RUN...",
		Description: "Looks at the runs every few seconds (their status, as `dpsbatch status` has it, and their visits)\n" +
			"and raises an alert when a running job's Pipeline stops heartbeating (heartbeat), its Slices'\n" +
			"communicator aborts (slice_lost), too many of the last visits fail (failure_rate), the run's last\n" +
			"job ends with visits left (ended_early), or a running job ends no visit for too long (no_progress).\n" +
			"An alert is raised once when its condition begins and cleared when it ends. Alerts go to the log\n" +
			"(stderr), to a topic of the run's broker (dpsbatch.alert) and to the command the rules file names\n" +
			"(the alert as JSON on stdin and in DPSBATCH_ALERT_* variables; run without a shell). --rules FILE\n" +
			"changes the defaults (see README.md, \"Monitoring a run\"). It runs until no watched run has a live\n" +
			"job; --once looks once. Exit status 4 when an alert was raised, 0 when none was.",
		Flags: []cli.Flag{
			siteFlag(),
			&cli.StringFlag{Name: "rules", Usage: "the rules file (YAML); without it, the default rules"},
			&cli.BoolFlag{Name: "once", Usage: "look once, then exit"},
			&cli.BoolFlag{Name: "json", Usage: "print each alert as a line of JSON on stdout"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return badInput("monitor takes one or more RUN (see `dpsbatch runs`)")
			}
			rules := monitor.Default()
			if c.IsSet("rules") {
				var err error
				if rules, err = monitor.Load(c.String("rules")); err != nil {
					return err
				}
			}
			dirs, b, err := manyRuns(c)
			if err != nil {
				return err
			}
			log, err := newLogger(c, stderr)
			if err != nil {
				return err
			}
			sinks := []monitor.Sink{monitor.LogSink{Log: log}}
			if c.Bool("json") {
				sinks = append(sinks, jsonLines{c.App.Writer})
			}
			if rules.Topic != "" {
				sinks = append(sinks, monitor.TopicSink{Topic: rules.Topic, Publish: relayAlert(b)})
			}
			if len(rules.Command) > 0 {
				sinks = append(sinks, monitor.CommandSink{Argv: rules.Command, Timeout: rules.CommandTimeout})
			}
			return monitor.Watch(c.Context, monitor.Options{Rules: rules, Dirs: dirs, Backend: b, Once: c.Bool("once"), Sinks: sinks, Log: log})
		},
	}
}

// jsonLines prints each alert as one line of JSON.
type jsonLines struct{ w io.Writer }

func (j jsonLines) Send(_ context.Context, a monitor.Alert) error {
	enc := json.NewEncoder(j.w)
	enc.SetEscapeHTML(false)
	return enc.Encode(a)
}

// relayAlert publishes an alert on the run's broker: its running job's,
// or stored in the run's own when none runs (or the site's external
// broker).
func relayAlert(b scheduler.Backend) monitor.Publish {
	return func(ctx context.Context, dir string, e events.Event) error {
		_, err := jobs.Relay(ctx, jobs.RelayOptions{Backend: b, Dir: dir, Event: e, When: jobs.WhenAny, AnyTopic: true, Wait: 5 * time.Second})
		return err
	}
}
