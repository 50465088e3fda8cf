package jobs

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/dpsbatch/dpsbatch/capture"
	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// checkFreezeDry: each stage named for freeze-drying (submit and local
// --freeze-dry) is a stage of one of the input's steps.
func checkFreezeDry(in *Input, names []string) error {
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

// freezeDryFor are the stages of names that step st has.
func freezeDryFor(st Step, names []string) []string {
	var out []string
	for _, s := range st.Policy.Stages {
		if slices.Contains(names, s.Name) {
			out = append(out, s.Name)
		}
	}
	return out
}

// writeFreezeDry writes each step's stages to capture at entry into its
// folder of the new run directory tl, where its ranks read them.
func writeFreezeDry(tl Layout, in *Input, names []string) error {
	for _, st := range in.Steps {
		if err := capture.WriteStages(filepath.Join(tl.Dir, st.Dir), freezeDryFor(st, names)); err != nil {
			return err
		}
	}
	return nil
}
