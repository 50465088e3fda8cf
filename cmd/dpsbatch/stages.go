package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/mapper"
)

func stagesCommand() *cli.Command {
	return &cli.Command{
		Name:  "stages",
		Usage: "list the registered stage types, mappers and file formats with their settings",
		Action: func(c *cli.Context) error {
			w := c.App.Writer
			fmt.Fprintln(w, "Stage types (policy: stages[].type, settings under stages[].settings):")
			for _, t := range harness.StageTypes() {
				fmt.Fprintf(w, "\n  %s: %s\n", t.Name, t.Doc)
				for _, s := range t.Settings {
					fmt.Fprintf(w, "      %s\n", s.Describe())
				}
				if len(t.Needs) > 0 {
					fmt.Fprintf(w, "      needs clipboard keys: %s\n", strings.Join(t.Needs, ", "))
				}
				if len(t.Produces) > 0 {
					fmt.Fprintf(w, "      produces clipboard keys: %s\n", strings.Join(t.Produces, ", "))
				}
			}
			fmt.Fprintln(w, "\nMappers (policy: mapper.type, settings under mapper.settings):")
			for _, name := range mapper.Names() {
				f, _ := mapper.Lookup(name)
				fmt.Fprintf(w, "\n  %s: %s\n", name, f.Doc)
				for _, s := range f.Settings {
					fmt.Fprintf(w, "      %s\n", s.Describe())
				}
			}
			fmt.Fprintf(w, "\nFile formats (input/output format): auto, %s\n", strings.Join(harness.FormatNames(), ", "))
			return nil
		},
	}
}
