package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/input"
	"github.com/dpsbatch/dpsbatch/internal/conf"
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
			"may not contain '/' or control characters, be . or .., or start with '-'.\n" +
			"With --json, one object: valid, and problems (each with file, line, key and message).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "visits", Usage: "also check this visit file against the policy"},
			&cli.BoolFlag{Name: "json", Usage: "print the result (what is valid, or each problem) as JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return badInput("validate takes one PIPELINE argument, got %d", c.NArg())
			}
			path := c.Args().First()
			v, err := validate(path, c.String("visits"))
			if !c.Bool("json") {
				if err == nil {
					v.print(c.App.Writer)
				}
				return err
			}
			v.Valid, v.Problems = err == nil, problemsOf(err)
			return errors.Join(err, printJSON(c.App.Writer, v))
		},
	}
}

// validated is what validate found: what the file runs when it is valid,
// else its problems. It is what validate --json prints.
type validated struct {
	File       string           `json:"file"`
	Valid      bool             `json:"valid"`
	Problems   []problem        `json:"problems"`
	Pipeline   *validPipeline   `json:"pipeline,omitempty"`
	Visits     *validVisits     `json:"visits,omitempty"`
	Production *validProduction `json:"production,omitempty"`
}

type validPipeline struct {
	Name   string `json:"name"`
	Stages int    `json:"stages"`
	Slices int    `json:"slices"`
	Mapper string `json:"mapper"`
}

type validVisits struct {
	File     string `json:"file"`
	Visits   int    `json:"visits"`
	Comments int    `json:"comments"` // lines starting with '#', skipped
}

type validProduction struct {
	Name      string      `json:"name"`
	Pipelines []validStep `json:"pipelines"`
	Note      string      `json:"note,omitempty"` // topics its pipelines read from outside it
}

// validStep is one pipeline of a production.
type validStep struct {
	Name      string   `json:"name"`
	Pipeline  string   `json:"pipeline"` // its policy's pipeline name
	Slices    int      `json:"slices"`
	Visits    int      `json:"visits"`
	VisitFile string   `json:"visitFile,omitempty"` // none for a pipeline that only listens
	Trigger   string   `json:"trigger,omitempty"`   // the topic it listens on after its visits
	After     []string `json:"after,omitempty"`     // the pipelines whose end closes its input
}

// problem is one problem of an input file, placed where it is known.
type problem struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Key     string `json:"key,omitempty"` // key path such as stages[2].event.topic
	Message string `json:"message"`
}

// problemsOf lists the problems err reports: each of a conf.Errors, or
// err itself when it carries no position. None for nil.
func problemsOf(err error) []problem {
	ps := []problem{}
	var ces conf.Errors
	var ce *conf.Error
	switch {
	case err == nil:
	case errors.As(err, &ces):
		for _, e := range ces {
			ps = append(ps, problem{File: e.File, Line: e.Line, Key: e.Path, Message: e.Msg})
		}
	case errors.As(err, &ce):
		ps = append(ps, problem{File: ce.File, Line: ce.Line, Key: ce.Path, Message: ce.Msg})
	default:
		ps = append(ps, problem{Message: err.Error()})
	}
	return ps
}

// validate checks a pipeline policy, with its visit file when one is
// given, or a production file.
func validate(path, visits string) (validated, error) {
	v := validated{File: path}
	if isProd, err := input.IsProduction(path); err == nil && isProd {
		if visits != "" {
			return v, badInput("--visits does not apply to a production: its file names each pipeline's visits")
		}
		var err error
		v.Production, err = validateProduction(path)
		return v, err
	}
	p, err := loadValid(path)
	if err != nil {
		return v, err
	}
	n, err := p.SliceCount()
	if err != nil {
		return v, err
	}
	if visits != "" {
		l, err := harness.ReadVisitList(visits)
		if err != nil {
			return v, err
		}
		if err := harness.CheckVisits(p, visits, l.Visits); err != nil {
			return v, err
		}
		v.Visits = &validVisits{File: visits, Visits: len(l.Visits), Comments: l.Comments}
	}
	v.Pipeline = &validPipeline{Name: p.Name, Stages: len(p.Stages), Slices: n, Mapper: p.Mapper.Type}
	return v, nil
}

// validateProduction checks a production file and says what it runs.
func validateProduction(path string) (*validProduction, error) {
	prod, err := input.LoadProduction(path)
	if err != nil {
		return nil, err
	}
	vp := &validProduction{Name: prod.Name, Note: prod.ExternalNote()}
	for _, pp := range prod.Pipelines {
		st := validStep{Name: pp.Name, Pipeline: pp.Policy.Name, Slices: pp.Slices, Visits: len(pp.Visits),
			VisitFile: pp.VisitsPath, After: pp.After}
		if st.Slices == 0 {
			if st.Slices, err = pp.Policy.SliceCount(); err != nil {
				return nil, err
			}
		}
		if prod.Listening(pp.Name) {
			st.Trigger = pp.Policy.Trigger.Topic
		}
		vp.Pipelines = append(vp.Pipelines, st)
	}
	return vp, nil
}

// print says, for people, what a valid file runs.
func (v validated) print(w io.Writer) {
	if vs := v.Visits; vs != nil {
		fmt.Fprintf(w, "%s: valid (%s)\n", vs.File, visitCount(vs.Visits, vs.Comments))
	}
	if p := v.Pipeline; p != nil {
		fmt.Fprintf(w, "%s: valid: pipeline %s, %d stages, %d slices, mapper %s\n", v.File, p.Name, p.Stages, p.Slices, p.Mapper)
	}
	if prod := v.Production; prod != nil {
		fmt.Fprintf(w, "%s: valid: production %s, %d pipelines\n", v.File, prod.Name, len(prod.Pipelines))
		for _, st := range prod.Pipelines {
			input := fmt.Sprintf("%d visits", st.Visits)
			if st.Trigger != "" {
				input += fmt.Sprintf(", then trigger events on %s", st.Trigger)
				if st.VisitFile == "" {
					input = "trigger events on " + st.Trigger
				}
			}
			if len(st.After) > 0 {
				input += " until " + strings.Join(st.After, ", ") + " ended"
			}
			fmt.Fprintf(w, "  %s: pipeline %s, %s, %s\n", st.Name, st.Pipeline, plural(st.Slices, "slice"), input)
		}
		if prod.Note != "" {
			fmt.Fprintf(w, "  note: %s\n", prod.Note)
		}
	}
}

// visitCount says how many visits a visit file has, and how many comment
// lines (lines starting with '#') were skipped.
func visitCount(visits, comments int) string {
	s := plural(visits, "visit")
	if comments > 0 {
		s += fmt.Sprintf("; %s skipped", plural(comments, "comment line"))
	}
	return s
}
