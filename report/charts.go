package report

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/dpsbatch/dpsbatch/state"
)

// The charts' geometry, in SVG user units (the page scales them).
const (
	chartLeft   = 220.0 // room for lane and stage labels
	chartWidth  = 860.0 // the plot's width
	chartRight  = 30.0
	laneHeight  = 22.0
	markHeight  = 16.0
	axisHeight  = 30.0
	maxMarks    = 20000 // visits drawn on the timeline
	axisTicks   = 5
	minMarkSize = 1.0
)

// timeline draws each visit that started as a mark from its start to its
// end, in one lane per step and job (a visit runs on all slices of its
// job at once, so a lane stands for the job's slices together).
type timeline struct {
	Width, Height float64
	Lanes         []lane
	Marks         []mark
	Ticks         []tick
	Start         string // the time at the axis' origin
	Started       int    // visits that started, drawn or not
}

type lane struct {
	Label string
	Y     float64 // top
}

type mark struct {
	X, Y, W     float64
	Visit, Step string
	State       string
	Title       string
}

type tick struct {
	X     float64
	Label string
}

// laneKey names a lane: a step's job.
type laneKey struct{ step, job string }

// newTimeline lays out the visits of every step, at most maxMarks of them
// (the first to start).
func newTimeline(steps []stepData, now time.Time) timeline {
	type ran struct {
		step  string
		v     state.Visit
		start time.Time
		end   time.Time
	}
	var all []ran
	for _, d := range steps {
		for _, v := range d.visits {
			if !v.Started.IsZero() {
				all = append(all, ran{d.name, v, v.Started, visitEnd(v, now)})
			}
		}
	}
	slices.SortStableFunc(all, func(a, b ran) int { return a.start.Compare(b.start) })
	t := timeline{Width: chartLeft + chartWidth + chartRight, Started: len(all)}
	all = all[:min(len(all), maxMarks)]
	if len(all) == 0 {
		return t
	}
	t0, t1 := all[0].start, all[0].end
	for _, r := range all {
		t1 = later(t1, r.end)
	}
	span := max(t1.Sub(t0), time.Second)
	used := map[laneKey]bool{}
	lanes := laneOrder(steps)
	for _, r := range all {
		k := laneKey{r.step, r.v.Job}
		if !used[k] && !slices.Contains(lanes, k) {
			lanes = append(lanes, k)
		}
		used[k] = true
	}
	y := map[laneKey]float64{}
	for _, k := range lanes {
		if used[k] {
			y[k] = float64(len(t.Lanes)) * laneHeight
			t.Lanes = append(t.Lanes, lane{Label: laneLabel(k), Y: y[k]})
		}
	}
	x := func(at time.Time) float64 { return chartLeft + float64(at.Sub(t0))/float64(span)*chartWidth }
	for _, r := range all {
		m := mark{X: x(r.start), Y: y[laneKey{r.step, r.v.Job}] + (laneHeight-markHeight)/2, Visit: r.v.ID, Step: r.step,
			State: r.v.State.String()}
		m.W = max(x(r.end)-m.X, minMarkSize)
		m.Title = fmt.Sprintf("visit %s: %s, %s to %s (%s), attempt %d", r.v.ID, r.v.State, when(r.start), when(r.end),
			took(r.end.Sub(r.start)), r.v.Attempts)
		if r.v.Err != "" {
			m.Title += ": " + r.v.Err
		}
		t.Marks = append(t.Marks, m)
	}
	t.Height = float64(len(t.Lanes))*laneHeight + axisHeight
	t.Start = when(t0)
	for i := range axisTicks + 1 {
		at := time.Duration(int64(span) * int64(i) / axisTicks)
		t.Ticks = append(t.Ticks, tick{X: x(t0.Add(at)), Label: "+" + took(at)})
	}
	return t
}

// visitEnd is where a visit's mark ends: its end, now while it runs, else
// (it stopped without an end recorded) its start.
func visitEnd(v state.Visit, now time.Time) time.Time {
	switch {
	case !v.Ended.IsZero() && !v.Ended.Before(v.Started):
		return v.Ended
	case v.State == state.Running:
		return later(now, v.Started)
	}
	return v.Started
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// laneOrder is the lanes of the recorded jobs, by step and attempt.
func laneOrder(steps []stepData) []laneKey {
	var keys []laneKey
	for _, d := range steps {
		for _, j := range d.jobs {
			keys = append(keys, laneKey{d.name, j.ID})
		}
	}
	return keys
}

func laneLabel(k laneKey) string {
	label := "job " + cmp.Or(k.job, "?")
	if k.step != "" {
		label = k.step + ": " + label
	}
	return label
}

// stageChart draws each stage's time distribution as a box (quartiles),
// a line at the median and whiskers to the fastest and slowest call, on
// one axis for all stages, with the numbers beside in a table.
type stageChart struct {
	Width, Height float64
	Boxes         []stageBox
	Ticks         []tick
}

type stageBox struct {
	Step, Stage                  string
	Y                            float64 // the row's middle
	Min, Q1, Median, Q3, Max     float64 // x
	Calls                        int
	Mean, P50, P90, Fastest, Top string
	Title                        string
}

// stageKey names a stage of a step.
type stageKey struct{ step, stage string }

func newStageChart(steps []stepData) stageChart {
	var keys []stageKey
	calls := map[stageKey][]time.Duration{}
	var longest time.Duration
	for _, d := range steps {
		for _, c := range d.calls {
			k := stageKey{d.name, c.Stage}
			if _, ok := calls[k]; !ok {
				keys = append(keys, k)
			}
			calls[k] = append(calls[k], c.Took)
			longest = max(longest, c.Took)
		}
	}
	c := stageChart{Width: chartLeft + chartWidth + chartRight}
	if len(keys) == 0 {
		return c
	}
	longest = max(longest, time.Millisecond)
	x := func(d time.Duration) float64 { return chartLeft + float64(d)/float64(longest)*chartWidth }
	for i, k := range keys {
		c.Boxes = append(c.Boxes, newStageBox(k, calls[k], float64(i)*laneHeight+laneHeight/2, x))
	}
	c.Height = float64(len(keys))*laneHeight + axisHeight
	for i := range axisTicks + 1 {
		at := time.Duration(int64(longest) * int64(i) / axisTicks)
		c.Ticks = append(c.Ticks, tick{X: x(at), Label: took(at)})
	}
	return c
}

func newStageBox(k stageKey, ds []time.Duration, y float64, x func(time.Duration) float64) stageBox {
	slices.Sort(ds)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	q := func(p float64) time.Duration { return quantile(ds, p) }
	b := stageBox{Step: k.step, Stage: k.stage, Y: y, Calls: len(ds),
		Min: x(ds[0]), Q1: x(q(0.25)), Median: x(q(0.5)), Q3: x(q(0.75)), Max: x(ds[len(ds)-1]),
		Mean: took(sum / time.Duration(len(ds))), P50: took(q(0.5)), P90: took(q(0.9)),
		Fastest: took(ds[0]), Top: took(ds[len(ds)-1])}
	b.Title = fmt.Sprintf("%s: %d calls, fastest %s, median %s, 90%% within %s, slowest %s",
		k.stage, b.Calls, b.Fastest, b.P50, b.P90, b.Top)
	return b
}

// quantile is the p-quantile of sorted ds, interpolated between ranks.
func quantile(ds []time.Duration, p float64) time.Duration {
	pos := p * float64(len(ds)-1)
	i := int(pos)
	if i+1 >= len(ds) {
		return ds[len(ds)-1]
	}
	return ds[i] + time.Duration(float64(ds[i+1]-ds[i])*(pos-float64(i)))
}
