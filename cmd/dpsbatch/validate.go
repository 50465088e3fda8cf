package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/jobs"
)

func validateCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check a pipeline policy (and a visit file), or a production, without running anything",
		ArgsUsage: "PIPELINE | PRODUCTION",
		Description: "Reports every problem, each with file, line and key: unknown or misspelt keys, wrong types,\n" +
			"missing settings, unknown stage types or mappers, duplicate stage names, clipboard keys a stage\n" +
			"needs that nothing earlier produces, and event topics nothing publishes. Prints \"valid\" otherwise.\n" +
			"A production file (top-level key production) is checked with every policy and visit list it\n" +
			"names, and what spans them: names, after, and who publishes each listening pipeline's trigger.\n" +
			"A visit file's lines starting with # are comments (counted in the output), and its visit IDs\n" +
			"may not contain '/' or control characters, be . or .., or start with '-'.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "visits", Usage: "also check this visit file against the policy"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return badInput("validate takes one PIPELINE argument, got %d", c.NArg())
			}
			path := c.Args().First()
			if isProd, err := jobs.IsProduction(path); err == nil && isProd {
				if c.String("visits") != "" {
					return badInput("--visits does not apply to a production: its file names each pipeline's visits")
				}
				return validateProduction(c, path)
			}
			p, err := loadValid(path)
			if err != nil {
				return err
			}
			n, err := p.SliceCount()
			if err != nil {
				return err
			}
			if v := c.String("visits"); v != "" {
				l, err := harness.ReadVisitList(v)
				if err != nil {
					return err
				}
				if err := harness.CheckVisits(p, v, l.Visits); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "%s: valid (%s)\n", v, visitCount(l))
			}
			fmt.Fprintf(c.App.Writer, "%s: valid: pipeline %s, %d stages, %d slices, mapper %s\n", path, p.Name, len(p.Stages), n, p.Mapper.Type)
			return nil
		},
	}
}

// validateProduction checks a production file and says what it runs.
func validateProduction(c *cli.Context, path string) error {
	prod, err := jobs.LoadProduction(path)
	if err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "%s: valid: production %s, %d pipelines\n", path, prod.Name, len(prod.Pipelines))
	for _, pp := range prod.Pipelines {
		slices := pp.Slices
		if slices == 0 {
			if slices, err = pp.Policy.SliceCount(); err != nil {
				return err
			}
		}
		input := fmt.Sprintf("%d visits", len(pp.Visits))
		if prod.Listening(pp.Name) {
			input += fmt.Sprintf(", then trigger events on %s", pp.Policy.Trigger.Topic)
			if pp.VisitsPath == "" {
				input = "trigger events on " + pp.Policy.Trigger.Topic
			}
		}
		if len(pp.After) > 0 {
			input += " until " + strings.Join(pp.After, ", ") + " ended"
		}
		fmt.Fprintf(w, "  %s: pipeline %s, %s, %s\n", pp.Name, pp.Policy.Name, plural(slices, "slice"), input)
	}
	if note := prod.ExternalNote(); note != "" {
		fmt.Fprintf(w, "  note: %s\n", note)
	}
	return nil
}

// visitCount says how many visits a visit file has, and how many comment
// lines (lines starting with '#') were skipped.
func visitCount(l *harness.VisitList) string {
	s := plural(len(l.Visits), "visit")
	if l.Comments > 0 {
		s += fmt.Sprintf("; %s skipped", plural(l.Comments, "comment line"))
	}
	return s
}
