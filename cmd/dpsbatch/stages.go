package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/mapper"
)

func stagesCommand() *cli.Command {
	return &cli.Command{
		Name:  "stages",
		Usage: "list the registered stage types, mappers and file formats with their settings",
		Description: "Lists what a policy can name: each stage type (stages[].type) with its settings and the\n" +
			"clipboard keys it needs and produces, each mapper (mapper.type) with its settings, and the\n" +
			"file formats of inputs and outputs. With --json, stdout is one JSON object: stageTypes and\n" +
			"mappers (each name, doc, settings: key, kind, default, required, doc), and formats.",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the list as one JSON object"}},
		Action: func(c *cli.Context) error {
			r := registered()
			if c.Bool("json") {
				return printJSON(c.App.Writer, r)
			}
			r.print(c.App.Writer)
			return nil
		},
	}
}

// registry is what dpsbatch stages lists: the stage types, mappers and
// formats a policy can name.
type registry struct {
	StageTypes []component `json:"stageTypes"`
	Mappers    []component `json:"mappers"`
	Formats    []string    `json:"formats"` // besides auto
}

// component is one stage type or mapper and its settings.
type component struct {
	Name     string         `json:"name"`
	Doc      string         `json:"doc"`
	Settings []settingEntry `json:"settings"`
	Needs    []string       `json:"needs,omitempty"`    // clipboard keys every instance needs
	Produces []string       `json:"produces,omitempty"` // clipboard keys every instance produces
}

// settingEntry is one declared setting of a component.
type settingEntry struct {
	Key      string `json:"key"`
	Kind     string `json:"kind"`
	Default  any    `json:"default,omitempty"`
	Required bool   `json:"required,omitempty"`
	Doc      string `json:"doc"`
	describe string // the text listing's line
}

// registered reads the registries.
func registered() registry {
	r := registry{Formats: harness.FormatNames()}
	for _, t := range harness.StageTypes() {
		c := component{Name: t.Name, Doc: t.Doc, Needs: t.Needs, Produces: t.Produces, Settings: []settingEntry{}}
		for _, s := range t.Settings {
			c.Settings = append(c.Settings, settingEntry{Key: s.Key, Kind: string(s.Kind), Default: asWritten(s.Default),
				Required: s.Required, Doc: s.Doc, describe: s.Describe()})
		}
		r.StageTypes = append(r.StageTypes, c)
	}
	for _, name := range mapper.Names() {
		f, _ := mapper.Lookup(name)
		c := component{Name: name, Doc: f.Doc, Settings: []settingEntry{}}
		for _, s := range f.Settings {
			c.Settings = append(c.Settings, settingEntry{Key: s.Key, Kind: string(s.Kind), Default: asWritten(s.Default),
				Required: s.Required, Doc: s.Doc, describe: s.Describe()})
		}
		r.Mappers = append(r.Mappers, c)
	}
	return r
}

// asWritten is a setting's default as a policy writes it: a duration as
// "10m0s", not nanoseconds.
func asWritten(v any) any {
	if d, ok := v.(time.Duration); ok {
		return d.String()
	}
	return v
}

// print writes the text listing.
func (r registry) print(w io.Writer) {
	fmt.Fprintln(w, "Stage types (policy: stages[].type, settings under stages[].settings):")
	for _, t := range r.StageTypes {
		t.print(w)
	}
	fmt.Fprintln(w, "\nMappers (policy: mapper.type, settings under mapper.settings):")
	for _, m := range r.Mappers {
		m.print(w)
	}
	fmt.Fprintf(w, "\nFile formats (input/output format): auto, %s\n", strings.Join(r.Formats, ", "))
}

func (c component) print(w io.Writer) {
	fmt.Fprintf(w, "\n  %s: %s\n", c.Name, c.Doc)
	for _, s := range c.Settings {
		fmt.Fprintf(w, "      %s\n", s.describe)
	}
	if len(c.Needs) > 0 {
		fmt.Fprintf(w, "      needs clipboard keys: %s\n", strings.Join(c.Needs, ", "))
	}
	if len(c.Produces) > 0 {
		fmt.Fprintf(w, "      produces clipboard keys: %s\n", strings.Join(c.Produces, ", "))
	}
}
