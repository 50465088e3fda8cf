package input

import (
	"fmt"
	"slices"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// CheckFreezeDry checks that each stage named for freeze-drying (submit
// and local --freeze-dry) is a stage of one of the input's steps.
func (in *Input) CheckFreezeDry(names []string) error {
	var have []string
	for _, st := range in.Steps {
		for _, s := range st.Policy.Stages {
			have = append(have, s.Name)
		}
	}
	for _, n := range names {
		if !slices.Contains(have, n) {
			return fmt.Errorf("%w: --freeze-dry: no stage %q in %s (have: %v)", conf.ErrInvalid, n, in.File, have)
		}
	}
	return nil
}

// FreezeDry are the stages of names that the step has.
func (st Step) FreezeDry(names []string) []string {
	var out []string
	for _, s := range st.Policy.Stages {
		if slices.Contains(names, s.Name) {
			out = append(out, s.Name)
		}
	}
	return out
}
