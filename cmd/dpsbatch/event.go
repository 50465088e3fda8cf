package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/jobs"
	"github.com/dpsbatch/dpsbatch/state"
)

func eventCommand() *cli.Command {
	return &cli.Command{
		Name:  "event",
		Usage: "send an event to a run",
		Subcommands: []*cli.Command{{
			Name:      "send",
			Usage:     "publish an event on one of the topics a run's Pipeline reads",
			ArgsUsage: "RUN key=value...",
			Description: "The event carries the run's ID, this host as its sender and the time; its properties are\n" +
				"the key=value arguments (text, read as the type the run's pipeline declares) and --props's\n" +
				"object; a property the receiving trigger or stage lacks, or whose value is not of its declared\n" +
				"type (a visitId must be a string or number), is bad input (exit 2), nothing sent. The topic\n" +
				"must be one the run's pipeline reads: its trigger topic (for a run submitted with --listen;\n" +
				"the event needs visitId), a topic a stage waits for, or the control topic. A running job hears\n" +
				"it at once, a pending one when it starts; with --keep and no live job it waits in the run's\n" +
				"broker for the next job.\n" +
				"  dpsbatch event send RUN --topic visits visitId=42 filter=r\n" +
				"  dpsbatch event send RUN --topic ephem --props '{\"visitId\": \"42\", \"ra\": 10.5}'",
			Flags: append(relayFlags(),
				&cli.StringFlag{Name: "topic", Usage: "the topic (required): the run's trigger topic, a topic a stage waits for, or dpsbatch.control"},
				&cli.StringFlag{Name: "kind", Value: string(events.KindData), Usage: "data, no-more-data or shutdown"},
				&cli.StringFlag{Name: "props", Usage: "properties as a JSON object, for typed values (key=value arguments are added to it)"},
				&cli.BoolFlag{Name: "keep", Usage: "when no job is live, store the event for the run's next job (dpsbatch resume)"},
			),
			Action: func(c *cli.Context) error {
				if c.NArg() < 1 {
					return badInput("event send takes RUN and key=value properties")
				}
				if c.String("topic") == "" {
					return badInput("event send needs --topic: the run's trigger topic, a topic a stage waits for, or %s", events.TopicControl)
				}
				props, err := parseProps(c.Args().Tail(), c.String("props"))
				if err != nil {
					return err
				}
				kind := events.Kind(c.String("kind"))
				switch kind {
				case events.KindData, events.KindNoMoreData, events.KindShutdown:
				default:
					return badInput("--kind: expected data, no-more-data or shutdown, got %q", kind)
				}
				args := c.Args().Slice()
				return withRunArgs(c, args[:1], func(string) ([]events.Event, error) {
					return []events.Event{{Topic: c.String("topic"), Kind: kind, Properties: props}}, nil
				})
			},
		}},
	}
}

func eventsCommand() *cli.Command {
	return &cli.Command{
		Name:      "events",
		Usage:     "list the events a run received and sent",
		ArgsUsage: "RUN",
		Description: "From the run's state file, where its Pipeline records every event it receives from its\n" +
			"broker (trigger events, waited-for events, stop and finish) and every event its stages\n" +
			"publish; heartbeats are not listed (dpsbatch status shows the last one). An event the Pipeline\n" +
			"dropped (a message that did not decode as an event, or one malformed for its receiver) is\n" +
			"listed as DROPPED with why (dropped in --json). The visits of the\n" +
			"visit list are not events. --follow keeps printing new ones until interrupted. For a\n" +
			"production, every pipeline's events are listed in time order, each with the pipeline that\n" +
			"received or sent it (receiver in --json).",
		Flags: []cli.Flag{
			siteFlag(),
			&cli.StringFlag{Name: "dir", Usage: "only received (in) or sent (out) events"},
			&cli.StringFlag{Name: "topic", Usage: "only events on this topic"},
			&cli.IntFlag{Name: "last", Usage: "only the last N events"},
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new events"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per event"},
		},
		Action: func(c *cli.Context) error {
			dir, err := runDir(c)
			if err != nil {
				return err
			}
			q := state.EventQuery{Dir: c.String("dir"), Topic: c.String("topic"), Limit: c.Int("last")}
			if q.Dir != "" && q.Dir != "in" && q.Dir != "out" {
				return badInput("--dir: expected in or out, got %q", q.Dir)
			}
			srcs, err := jobs.EventSources(dir)
			if err != nil {
				return err
			}
			after := make([]int64, len(srcs)) // each state file's last event printed
			for {
				var recs []received
				for i, src := range srcs {
					sq := q
					sq.After = after[i]
					rs, err := jobs.Events(src.Dir, sq)
					if err != nil {
						return err
					}
					for _, r := range rs {
						recs = append(recs, received{EventRecord: r, Receiver: src.Pipeline})
						after[i] = r.ID
					}
				}
				// A production's pipelines, merged in time.
				sort.SliceStable(recs, func(a, b int) bool { return recs[a].At.Before(recs[b].At) })
				if q.Limit > 0 && len(recs) > q.Limit {
					recs = recs[len(recs)-q.Limit:]
				}
				for _, r := range recs {
					if c.Bool("json") {
						if err := json.NewEncoder(c.App.Writer).Encode(r); err != nil {
							return err
						}
					} else {
						printEvent(c, r)
					}
				}
				q.Limit = 0
				if !c.Bool("follow") {
					return nil
				}
				select {
				case <-c.Context.Done():
					return nil
				case <-time.After(time.Second):
				}
			}
		},
	}
}

// received is an event record with the pipeline of a production that
// recorded it ("" for a single pipeline's run).
type received struct {
	state.EventRecord
	Receiver string `json:"receiver,omitempty"`
}

// propText is an event property's value as events prints it: a mapping
// or list (such as shared values by data ID) as JSON, else as Go prints
// it.
func propText(v any) string {
	switch v.(type) {
	case map[string]any, []any:
		if b, err := json.Marshal(v); err == nil {
			return string(b)
		}
	}
	return fmt.Sprint(v)
}

func printEvent(c *cli.Context, r received) {
	kind := r.Kind
	if kind == "" {
		kind = string(events.KindData)
	}
	from := r.Sender
	if r.Pipeline != "" {
		from = r.Pipeline + "@" + r.Sender
	}
	keys := make([]string, 0, len(r.Props))
	for k := range r.Props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var props []string
	for _, k := range keys {
		props = append(props, k+"="+propText(r.Props[k]))
	}
	if r.Dropped != "" {
		kind = "DROPPED"
		props = append(props, "("+r.Dropped+")")
	}
	at := ""
	if r.Receiver != "" {
		at = fmt.Sprintf("%-12s ", r.Receiver)
	}
	fmt.Fprintf(c.App.Writer, "%s %s%-3s %-20s %-12s from %-24s job %-8s %s\n", r.At.Local().Format("2006-01-02 15:04:05.000"),
		at, r.Dir, r.Topic, kind, from, r.Job, strings.Join(props, " "))
}
