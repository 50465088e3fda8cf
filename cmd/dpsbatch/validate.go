package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/harness"
)

func validateCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check a pipeline policy (and a visit file) without running anything",
		ArgsUsage: "PIPELINE",
		Description: "Reports every problem, each with file, line and key: unknown or misspelt keys, wrong types,\n" +
			"missing settings, unknown stage types or mappers, duplicate stage names, clipboard keys a stage\n" +
			"needs that nothing earlier produces, and event topics nothing publishes. Prints \"valid\" otherwise.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "visits", Usage: "also check this visit file against the policy"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return badInput("validate takes one PIPELINE argument, got %d", c.NArg())
			}
			path := c.Args().First()
			p, err := loadValid(path)
			if err != nil {
				return err
			}
			n, err := p.SliceCount()
			if err != nil {
				return err
			}
			if v := c.String("visits"); v != "" {
				visits, err := harness.ReadVisits(v)
				if err != nil {
					return err
				}
				if err := harness.CheckVisits(p, v, visits); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "%s: valid (%d visits)\n", v, len(visits))
			}
			fmt.Fprintf(c.App.Writer, "%s: valid: pipeline %s, %d stages, %d slices, mapper %s\n", path, p.Name, len(p.Stages), n, p.Mapper.Type)
			return nil
		},
	}
}
