package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/jobs"
)

// The relay commands (stop, finish, event send) publish one event to a
// run's broker on the login node; the run's Pipeline hears it.

func relayFlags() []cli.Flag {
	return []cli.Flag{
		siteFlag(),
		&cli.BoolFlag{Name: "json", Usage: "print what was sent, and where, as JSON"},
		&cli.DurationFlag{Name: "wait", Value: 30 * time.Second, Usage: "how long to wait for the broker of a job that is just starting"},
	}
}

func stopCommand() *cli.Command {
	return &cli.Command{
		Name:      "stop",
		Usage:     "ask a running run to stop at the next visit boundary (a shutdown event)",
		ArgsUsage: "RUN",
		Description: "The Pipeline finishes the visit in flight, starts no other, and the job ends with the run\n" +
			"recorded STOPPED; `dpsbatch resume RUN` runs what is left. Only a running job can be stopped:\n" +
			"a pending one is removed with `dpsbatch cancel`. Compare `dpsbatch finish` (run what is\n" +
			"queued, then end) and `dpsbatch cancel` (Slurm ends the job now).",
		Flags: relayFlags(),
		Action: func(c *cli.Context) error {
			return relay(c, events.Event{Topic: events.TopicControl, Kind: events.KindShutdown,
				Properties: map[string]any{"reason": "dpsbatch stop"}}, jobs.WhenRunning)
		},
	}
}

func finishCommand() *cli.Command {
	return &cli.Command{
		Name:      "finish",
		Usage:     "tell a listening run that no more data will come (a no-more-data event)",
		ArgsUsage: "RUN",
		Description: "The Pipeline runs the visits still queued and in flight, then ends cleanly: its job is\n" +
			"recorded COMPLETED and the run's input closed, so a later resume does not wait for more.\n" +
			"It matters for runs submitted with --listen, which read trigger events after their visit\n" +
			"list; a run without --listen ends after its list anyway, and nothing is sent. For a pending\n" +
			"job the event is stored and read when it starts. For a production it goes to each pipeline\n" +
			"that listens and runs after no other; those that run after others finish once they have.",
		Flags: append(relayFlags(), &cli.BoolFlag{Name: "keep", Usage: "when no job is live, store the event for the run's next job (dpsbatch resume)"}),
		Action: func(c *cli.Context) error {
			return withRun(c, func(dir string) ([]events.Event, error) {
				es, err := jobs.FinishEvents(dir)
				if err == nil && len(es) == 0 {
					fmt.Fprintf(c.App.Writer, "run %s: nothing sent: each pipeline of the production ends by itself, after its visit list or once the pipelines it runs after have ended\n", filepath.Base(dir))
				}
				return es, err
			})
		},
	}
}

// relay sends e to the run named by the one argument.
func relay(c *cli.Context, e events.Event, when int) error {
	t, err := openRun(c, false)
	if err != nil {
		return err
	}
	return send(c, t, e, when)
}

// withRun builds the events for the run's directory and relays them, in
// order (WhenLive, or WhenAny with --keep).
func withRun(c *cli.Context, build func(dir string) ([]events.Event, error)) error {
	return withRunArgs(c, c.Args().Slice(), build)
}

// withRunArgs is withRun with the RUN among args (which must be one).
func withRunArgs(c *cli.Context, args []string, build func(dir string) ([]events.Event, error)) error {
	if len(args) != 1 {
		return badInput("%s takes one RUN (a run directory, or a run's name under the site's runs root), got %d arguments", c.Command.Name, len(args))
	}
	s, err := loadSite(c, false)
	if err != nil {
		return err
	}
	var t runTarget
	if t.dir, err = jobs.ResolveRun(s, args[0]); err != nil {
		return err
	}
	if t.b, err = backend(s); err != nil {
		return err
	}
	es, err := build(t.dir)
	if err != nil {
		return err
	}
	when := jobs.WhenLive
	if c.Bool("keep") {
		when = jobs.WhenAny
	}
	for _, e := range es {
		if err := send(c, t, e, when); err != nil {
			return err
		}
	}
	return nil
}

// send relays e to the run of t and says where it went.
func send(c *cli.Context, t runTarget, e events.Event, when int) error {
	res, err := jobs.Relay(c.Context, jobs.RelayOptions{Backend: t.b, Dir: t.dir, Event: e, When: when, Wait: c.Duration("wait")})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, res)
	}
	printRelayed(c, res)
	return nil
}

func printRelayed(c *cli.Context, r *jobs.Relayed) {
	w := c.App.Writer
	switch {
	case r.Note != "":
		fmt.Fprintf(w, "run %s: %s\n", r.Run, r.Note)
	case r.Stored && r.Job != "":
		fmt.Fprintf(w, "run %s: %s event on %s stored; job %s (%s) reads it when it starts\n", r.Run, r.Kind, r.Topic, r.Job, strings.ToLower(r.JobState))
	case r.Stored:
		fmt.Fprintf(w, "run %s: %s event on %s stored; the run's next job reads it (dpsbatch resume %s)\n", r.Run, r.Kind, r.Topic, r.Run)
	default:
		fmt.Fprintf(w, "run %s: %s event on %s sent to job %s (broker %s)\n", r.Run, r.Kind, r.Topic, r.Job, r.Broker)
	}
}

// parseProps reads key=value arguments (values are text; a pipeline that
// declares a property's type converts it) and a --json object.
func parseProps(args []string, jsonObj string) (map[string]any, error) {
	props := map[string]any{}
	if jsonObj != "" {
		if err := json.Unmarshal([]byte(jsonObj), &props); err != nil {
			return nil, badInput("--props: expected a JSON object of properties: %v", err)
		}
	}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, badInput("property %q: expected key=value", a)
		}
		props[strings.TrimSpace(k)] = v
	}
	return props, nil
}
