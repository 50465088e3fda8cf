// Package input reads what a new run is made from: a pipeline policy with
// its visits, or a production file of several pipelines, each made a
// run's step (ReadInput, the one place that tells the two apart). Every
// problem is reported with its file, line and key.
//
// It never creates a run directory, submits or runs anything.
package input

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/rundir"
)

// A run is a list of one or more pipeline steps. A pipeline policy with
// its visits is a run of one step, in the run directory itself; a
// production file is a run of one step per pipeline, each in
// RUN-DIR/pipelines/NAME. ReadInput is the one place that tells the two
// inputs apart: from then on submit, resume, status, the relay commands
// and local see steps.

// ErrNoVisits: a policy came without a visit list, and its run does not
// listen for trigger events.
var ErrNoVisits = fmt.Errorf("%w: input: no visit list", conf.ErrInvalid)

// Input is what a new run is made from: its name and its steps.
type Input struct {
	File  string // the policy or production file, as given
	Name  string // the pipeline's or the production's name
	Steps []Step // in the production's order
	// Note names the topics the steps read from outside the run
	// (Production.ExternalNote); "" when there are none.
	Note string
	// Keep is the name the input's copy is kept under in the run
	// directory, besides its steps' policy copies ("": none).
	Keep string
}

// Visits is the number of visits of the steps' visit lists.
func (in *Input) Visits() int {
	n := 0
	for _, st := range in.Steps {
		n += len(st.Visits)
	}
	return n
}

// Step is one pipeline of a run.
type Step struct {
	// Name is the production's name for the pipeline; "" for a run of
	// one policy, whose step goes by the policy's name.
	Name       string
	Dir        string // relative to the run directory: "" or pipelines/NAME
	PolicyPath string
	VisitsPath string          // "" when it has no visit list
	Policy     *harness.Policy // loaded and validated
	Visits     []harness.Visit // read and checked against Policy
	// Slices asked for (submit --slices, or the production's entry);
	// 0: the policy's count.
	Slices int
	// SlicesFrom names who asked for Slices ("" for the policy).
	SlicesFrom string
	// Listen: after its visits the step reads trigger events from the
	// run's broker until a no-more-data closes its input.
	Listen bool
	// After names the steps whose end closes this one's input.
	After []string
}

// PipelineName is the step's name in the run: its production entry's
// name, else its policy's.
func (s Step) PipelineName() string {
	if s.Name != "" {
		return s.Name
	}
	return s.Policy.Name
}

// InputOptions is what the command line adds to a policy: its visit
// list, whether it listens, its slices. A production sets them per
// pipeline in its file.
type InputOptions struct {
	Visits string
	Listen bool
	Slices int
}

// ReadInput reads a run's input at path: a pipeline policy (with
// o.Visits, and o.Listen) or a production file (which refuses the
// options it sets per pipeline). Errors name the file and wrap
// conf.ErrInvalid.
func ReadInput(path string, o InputOptions) (*Input, error) {
	isProd, err := IsProduction(path)
	if err != nil {
		return nil, err
	}
	if isProd {
		return productionInput(path, o)
	}
	return policyInput(path, o)
}

// policyInput is a run of one step: the policy at path with its visits.
func policyInput(path string, o InputOptions) (*Input, error) {
	p, err := harness.Load(path, harness.LoadOptions{})
	if err != nil {
		return nil, err
	}
	if err := p.CheckDataIDValues(); err != nil {
		return nil, err
	}
	st := Step{PolicyPath: path, VisitsPath: o.Visits, Policy: p, Slices: o.Slices, Listen: o.Listen}
	if o.Slices > 0 {
		st.SlicesFrom = "submit --slices"
	}
	switch {
	case o.Visits == "" && !o.Listen:
		return nil, fmt.Errorf("%w (--visits), and the run does not --listen for trigger events", ErrNoVisits)
	case o.Visits != "":
		if st.Visits, err = harness.ReadVisits(o.Visits); err != nil {
			return nil, err
		}
		if err := harness.CheckVisits(p, o.Visits, st.Visits); err != nil {
			return nil, err
		}
		if len(st.Visits) == 0 {
			return nil, fmt.Errorf("%w: %s: no visits", conf.ErrInvalid, o.Visits)
		}
	}
	return &Input{File: path, Name: p.Name, Steps: []Step{st}}, nil
}

// productionInput is a run of one step per pipeline of the production
// file at path.
func productionInput(path string, o InputOptions) (*Input, error) {
	var bad []string
	if o.Visits != "" {
		bad = append(bad, "--visits (give each pipeline its visits in the file)")
	}
	if o.Listen {
		bad = append(bad, "--listen (a pipeline without visits, or with after, listens)")
	}
	if o.Slices != 0 {
		bad = append(bad, "--slices (give each pipeline its slices in the file)")
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%w: %s is a production: %s do not apply", conf.ErrInvalid, path, strings.Join(bad, ", "))
	}
	prod, err := LoadProduction(path)
	if err != nil {
		return nil, err
	}
	in := &Input{File: path, Name: prod.Name, Note: prod.ExternalNote(), Keep: rundir.ProductionFile}
	for _, pp := range prod.Pipelines {
		st := Step{Name: pp.Name, Dir: filepath.Join(rundir.PipelinesDir, pp.Name), PolicyPath: pp.PolicyPath, VisitsPath: pp.VisitsPath,
			Policy: pp.Policy, Visits: pp.Visits, Slices: pp.Slices, Listen: prod.Listening(pp.Name), After: pp.After}
		if pp.Slices != 0 {
			st.SlicesFrom = fmt.Sprintf("the slices of production entry %q", pp.Name)
		}
		in.Steps = append(in.Steps, st)
	}
	return in, nil
}
