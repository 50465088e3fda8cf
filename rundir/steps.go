package rundir

// StepDir is where a step lives, as the run's settings list it.
type StepDir struct {
	Name   string
	Layout Layout
	Asked  int // slices its entry asked for
}

// StepDirs lists the steps of the run in l, whose settings are set: the
// run itself when set lists no steps in folders of their own (a run of
// one policy), else each listed step. It is the one place that reads the
// run's shape from its settings.
func StepDirs(l Layout, set Settings) []StepDir {
	if len(set.Pipelines) == 0 {
		return []StepDir{{Layout: l, Asked: set.Request.Slices}}
	}
	out := make([]StepDir, len(set.Pipelines))
	for i, e := range set.Pipelines {
		out[i] = StepDir{Name: e.Name, Layout: l.Pipeline(e.Name), Asked: e.Slices}
	}
	return out
}

// StepIn reports whether a step of the run lives in the run directory l
// itself, sharing the run's state file (whose rank 0 then records the
// job's starts, heartbeats and end there).
func StepIn(l Layout, set Settings) bool {
	for _, d := range StepDirs(l, set) {
		if d.Layout == l {
			return true
		}
	}
	return false
}

// StepsApart lists the steps of the run in l with a folder, and a state
// file, of their own.
func StepsApart(l Layout, set Settings) []StepDir {
	var out []StepDir
	for _, d := range StepDirs(l, set) {
		if d.Layout != l {
			out = append(out, d)
		}
	}
	return out
}

// Records lists the distinct state files every job of the run is
// recorded in: the run's, then each step's own.
func Records(l Layout, set Settings) []Layout {
	out := []Layout{l}
	for _, d := range StepsApart(l, set) {
		out = append(out, d.Layout)
	}
	return out
}
