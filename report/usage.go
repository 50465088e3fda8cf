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

// jobUsed is a job's usage and the step whose state file holds it.
type jobUsed struct {
	step string
	u    state.JobUsage
}

// given is the CPU time a job was given: its elapsed time on its CPUs.
func (a jobUsed) given() time.Duration { return a.u.Elapsed * time.Duration(max(a.u.CPUs, 1)) }

// newUsageView lays out the usage of every step's jobs.
func newUsageView(steps []stepData) usageView {
	var v usageView
	all, missing := recordedUsage(steps)
	v.Missing = missing
	if len(all) == 0 {
		return v
	}
	var given time.Duration
	var peak int64
	var asked int
	for _, a := range all {
		given = max(given, a.given(), a.u.CPU())
		peak = max(peak, a.u.Peak().MaxRSS)
		asked = max(asked, a.u.SliceMemMB)
	}
	memTop := max(float64(peak), float64(asked)*(1<<20)) * 1.1
	v.Time = usageChart{Width: chartLeft + chartWidth + chartRight, Height: float64(len(all))*laneHeight + axisHeight}
	v.Memory = v.Time
	for i, a := range all {
		y := float64(i) * laneHeight
		v.Rows = append(v.Rows, newUsageRow(a))
		v.Time.Bars = append(v.Time.Bars, cpuBar(a, y, given))
		v.Memory.Bars = append(v.Memory.Bars, memoryBar(a, y, memTop))
	}
	for i := range axisTicks + 1 {
		x := chartLeft + chartWidth*float64(i)/axisTicks
		v.Time.Ticks = append(v.Time.Ticks, tick{X: x, Label: took(given * time.Duration(i) / axisTicks)})
		v.Memory.Ticks = append(v.Memory.Ticks, tick{X: x, Label: memText(int64(memTop * float64(i) / axisTicks))})
	}
	if asked > 0 {
		v.Memory.Limit = chartLeft + scale(float64(asked)*(1<<20), memTop)
		v.Memory.LimitLabel = askedText(asked) + " asked per slice"
	}
	return v
}

// recordedUsage lists the usage every step's state file holds, and names
// the jobs of the run's own state file (which holds its jobs' usage) with
// none.
func recordedUsage(steps []stepData) (all []jobUsed, missing []string) {
	for _, d := range steps {
		have := map[string]bool{}
		for _, u := range d.usage {
			all = append(all, jobUsed{d.name, u})
			have[u.Job] = true
		}
		for _, j := range d.jobs {
			if !have[j.ID] && d.name == "" {
				missing = append(missing, laneLabel(laneKey{d.name, j.ID}))
			}
		}
	}
	return all, missing
}

func newUsageRow(a jobUsed) usageRow {
	u, p := a.u, a.u.Peak()
	return usageRow{Step: a.step, Job: u.Job, State: u.State, Elapsed: took(u.Elapsed), CPU: took(u.CPU()),
		Given: took(a.given()), Used: percent(float64(u.CPU()), float64(a.given())), CPUs: u.CPUs, Peak: memText(p.MaxRSS),
		PeakStep: p.Step, PeakNode: p.MaxRSSNode, Asked: askedText(u.SliceMemMB)}
}

// cpuBar is a job's CPU time over the CPU time it was given, on an axis
// that ends at top.
func cpuBar(a jobUsed, y float64, top time.Duration) usageBar {
	u := a.u
	return usageBar{Label: laneLabel(laneKey{a.step, u.Job}), Job: u.Job, Y: y,
		Back: scale(float64(a.given()), float64(top)), Front: scale(float64(u.CPU()), float64(top)),
		Title: fmt.Sprintf("job %s: %s of CPU of %s given (%s elapsed on %d CPUs)", u.Job, took(u.CPU()), took(a.given()), took(u.Elapsed), u.CPUs)}
}

// memoryBar is the peak memory of one task of a job, on an axis that ends
// at top bytes.
func memoryBar(a jobUsed, y, top float64) usageBar {
	u, p := a.u, a.u.Peak()
	return usageBar{Label: laneLabel(laneKey{a.step, u.Job}), Job: u.Job, Y: y, Front: scale(float64(p.MaxRSS), top),
		Title: fmt.Sprintf("job %s: peak %s of one task (step %s on %s), %s asked per slice", u.Job, memText(p.MaxRSS), p.Step, p.MaxRSSNode, askedText(u.SliceMemMB))}
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
