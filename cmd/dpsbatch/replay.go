package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/replay"
)

func replayCommand() *cli.Command {
	return &cli.Command{
		Name:      "replay",
		Usage:     "run a captured stage call again, in this process: the failure's inputs, no Slurm, MPI or broker",
		ArgsUsage: "CAPTURE",
		Description: "CAPTURE is a file of RUN-DIR/captures/, written when a stage failed (status --failures names\n" +
			"it) or as a stage named by freeze_dry started. Replay runs that stage once more on the captured\n" +
			"clipboard, trigger properties, data ID, settings and policy, on one slice in this process, and\n" +
			"prints what the stage put on the clipboard, or its error. --rest also runs the stages after it.\n" +
			"Input files the capture holds that are missing here or changed are restored into the run\n" +
			"directory (default: a new temporary one) and the stage's settings point at them.\n" +
			"Exit status: 0 the stage succeeded, 3 it failed, 2 not a capture.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "rest", Usage: "also run the pipeline's stages after the captured one"},
			&cli.StringFlag{Name: "run-dir", Usage: "run directory of the replay, which must exist (default: a new temporary one)"},
			&cli.DurationFlag{Name: "timeout", Usage: "stop the replay after this long (default: none)"},
			&cli.BoolFlag{Name: "json", Usage: "print the outcome as one JSON object"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return badInput("replay takes one capture file, got %d arguments", c.NArg())
			}
			log, err := newLogger(c, stderr)
			if err != nil {
				return err
			}
			out, err := replay.Run(c.Context, replay.Options{Capture: c.Args().First(), Rest: c.Bool("rest"),
				RunDir: c.String("run-dir"), Timeout: c.Duration("timeout"), Logger: log})
			if out == nil {
				return err
			}
			if c.Bool("json") {
				if perr := printJSON(c.App.Writer, out); perr != nil {
					return perr
				}
				return err
			}
			printReplay(c.App.Writer, out)
			return err
		},
	}
}

// printReplay writes the outcome for people.
func printReplay(w io.Writer, o *replay.Outcome) {
	where := "on the Pipeline"
	if o.DataID != nil {
		where = "data ID " + dataIDText(o.DataID)
	}
	fmt.Fprintf(w, "replayed %s of stage %s, visit %s, %s\n", o.Part, o.Stage, o.Visit, where)
	if len(o.Stages) > 1 {
		fmt.Fprintf(w, "with the stages after it: %v\n", o.Stages[1:])
	}
	fmt.Fprintf(w, "run directory: %s\n", o.RunDir)
	for _, f := range o.Files {
		fmt.Fprintf(w, "restored input file %s\n", f)
	}
	for _, n := range o.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, u := range o.Skipped {
		fmt.Fprintf(w, "note: clipboard item %s (%s) was not captured: %s\n", u.Key, u.Type, u.Why)
	}
	if o.Failed {
		fmt.Fprintf(w, "failed: %s\n", o.Error)
		return
	}
	keys := make([]string, 0, len(o.Put))
	for k := range o.Put {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(w, "succeeded; put on the clipboard (%d):\n", len(keys))
	for _, k := range keys {
		v, _ := json.Marshal(o.Put[k])
		fmt.Fprintf(w, "  %s: %s\n", k, v)
	}
}

// freezeDryFlag is submit's and local's --freeze-dry.
func freezeDryFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "freeze-dry", Usage: "capture the input of every call of this stage as it starts, into RUN-DIR/captures (dpsbatch replay runs one again); repeat for several (a failing call is always captured)"}
}

// dataIDText is a data ID as the harness names it: key=value, by key.
func dataIDText(id map[string]any) string {
	parts := make([]string, 0, len(id))
	for k, v := range id {
		parts = append(parts, fmt.Sprintf("%s=%v", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
