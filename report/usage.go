package report

import (
	"fmt"
	"time"

	"github.com/dpsbatch/dpsbatch/state"
)

// usageView is the resource usage section: a table row per job whose
// usage the state file holds, a chart of each job's CPU time against the
// CPU time it was given (elapsed times its CPUs), and a chart of the peak
// memory of one task of each job against what each slice asked for.
type usageView struct {
	Rows   []usageRow
	Time   usageChart
	Memory usageChart
	// Missing names the jobs with no usage recorded.
	Missing []string
}

type usageRow struct {
	Step, Job, State                string
	Elapsed, CPU, Given, Used       string
	CPUs                            int
	Peak, PeakStep, PeakNode, Asked string
}

// usageChart is horizontal bars, one per job: Back the whole (what was
// given; none on the memory chart), Front what was used; Limit, when
// above 0, the x of a line at what each slice asked for.
type usageChart struct {
	Width, Height float64
	Bars          []usageBar
	Ticks         []tick
	Limit         float64
	LimitLabel    string
}

type usageBar struct {
	Label, Job  string
	Y           float64 // top
	Back, Front float64 // widths
	Title       string
}

// newUsageView lays out the usage of every step's jobs.
func newUsageView(steps []stepData) usageView {
	var v usageView
	type used struct {
		step string
		u    state.JobUsage
	}
	var all []used
	for _, d := range steps {
		have := map[string]bool{}
		for _, u := range d.usage {
			all = append(all, used{d.name, u})
			have[u.Job] = true
		}
		for _, j := range d.jobs {
			if !have[j.ID] && d.name == "" { // a run's own state file holds its jobs' usage
				v.Missing = append(v.Missing, laneLabel(laneKey{d.name, j.ID}))
			}
		}
	}
	if len(all) == 0 {
		return v
	}
	var given time.Duration
	var peak int64
	var asked int
	for _, a := range all {
		given = max(given, a.u.Elapsed*time.Duration(max(a.u.CPUs, 1)), a.u.CPU())
		peak = max(peak, a.u.Peak().MaxRSS)
		asked = max(asked, a.u.SliceMemMB)
	}
	memTop := max(float64(peak), float64(asked)*(1<<20)) * 1.1
	v.Time = usageChart{Width: chartLeft + chartWidth + chartRight}
	v.Memory = v.Time
	for i, a := range all {
		u, p := a.u, a.u.Peak()
		label := laneLabel(laneKey{a.step, u.Job})
		y := float64(i) * laneHeight
		g := u.Elapsed * time.Duration(max(u.CPUs, 1))
		v.Rows = append(v.Rows, usageRow{Step: a.step, Job: u.Job, State: u.State, Elapsed: took(u.Elapsed), CPU: took(u.CPU()),
			Given: took(g), Used: percent(float64(u.CPU()), float64(g)), CPUs: u.CPUs, Peak: memText(p.MaxRSS),
			PeakStep: p.Step, PeakNode: p.MaxRSSNode, Asked: askedText(u.SliceMemMB)})
		v.Time.Bars = append(v.Time.Bars, usageBar{Label: label, Job: u.Job, Y: y,
			Back: scale(float64(g), float64(given)), Front: scale(float64(u.CPU()), float64(given)),
			Title: fmt.Sprintf("job %s: %s of CPU of %s given (%s elapsed on %d CPUs)", u.Job, took(u.CPU()), took(g), took(u.Elapsed), u.CPUs)})
		v.Memory.Bars = append(v.Memory.Bars, usageBar{Label: label, Job: u.Job, Y: y, Front: scale(float64(p.MaxRSS), memTop),
			Title: fmt.Sprintf("job %s: peak %s of one task (step %s on %s), %s asked per slice", u.Job, memText(p.MaxRSS), p.Step, p.MaxRSSNode, askedText(u.SliceMemMB))})
	}
	v.Time.Height = float64(len(all))*laneHeight + axisHeight
	v.Memory.Height = v.Time.Height
	for i := range axisTicks + 1 {
		v.Time.Ticks = append(v.Time.Ticks, tick{X: chartLeft + chartWidth*float64(i)/axisTicks, Label: took(given * time.Duration(i) / axisTicks)})
		v.Memory.Ticks = append(v.Memory.Ticks, tick{X: chartLeft + chartWidth*float64(i)/axisTicks, Label: memText(int64(memTop * float64(i) / axisTicks))})
	}
	if asked > 0 {
		v.Memory.Limit = chartLeft + scale(float64(asked)*(1<<20), memTop)
		v.Memory.LimitLabel = askedText(asked) + " asked per slice"
	}
	return v
}

// scale is the width of v on a chart whose axis ends at top.
func scale(v, top float64) float64 {
	if top <= 0 {
		return 0
	}
	return max(v/top*chartWidth, 0)
}

func percent(part, whole float64) string {
	if whole <= 0 {
		return ""
	}
	return fmt.Sprintf("%.0f%%", 100*part/whole)
}

// memText is a size in bytes as a person reads it.
func memText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n > 0:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return "0"
}

func askedText(mb int) string {
	if mb == 0 {
		return "none"
	}
	return memText(int64(mb) << 20)
}
