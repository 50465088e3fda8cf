package report

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/dpsbatch/dpsbatch/state"
)

// Bounds on what one report holds, so that a run of a million visits
// still makes a file a browser opens: past them a section says how many
// it left out.
const (
	maxFailures   = 2000    // rows of the failures table
	maxStageCalls = 1000000 // stage calls behind the distributions
	maxSlowest    = 20      // rows of the slowest visits
)

// page is what the template shows.
type page struct {
	Title     string
	Generated string
	Runs      []runView // one per step
	Timeline  timeline
	Stages    stageChart
	Slowest   []visitRow
	Failures  []failureRow
	Usage     usageView
	// FailuresLeftOff counts failures past maxFailures, per step summed.
	FailuresLeftOff int
	CallsLeftOff    bool
}

// runView is one step's summary: its run, visit counts and jobs.
type runView struct {
	Step    string // "" for a run's own state file
	Run     state.Run
	Created string
	Counts  []count
	Visits  int
	Dropped int
	Jobs    []jobRow
	// Input is "open", or when a no-more-data event closed the run's
	// input and why.
	Input string
}

type count struct {
	State string
	N     int
}

type jobRow struct {
	state.Job
	Submitted, Started, Ended string
	Starts                    []startRow
}

type startRow struct {
	state.JobStart
	Number         int // 1 for the first start
	Started, Ended string
}

type visitRow struct {
	Step, Visit, Job, State, Started, Took string
	Attempts                               int
}

type failureRow struct {
	Step, Visit, Stage, Slice, DataID, Err string
	Attempt                                int
	Replay                                 string // the command that runs the failed call again; "" without a capture
}

// newPage lays out the steps' data for the template.
func newPage(steps []stepData, now time.Time) page {
	p := page{Title: title(steps[0].run), Generated: when(now)}
	for _, d := range steps {
		p.Runs = append(p.Runs, newRunView(d))
		p.Failures = append(p.Failures, failureRows(d)...)
		if len(d.failures) > maxFailures {
			p.FailuresLeftOff++
		}
		p.CallsLeftOff = p.CallsLeftOff || len(d.calls) >= maxStageCalls
	}
	p.Timeline = newTimeline(steps, now)
	p.Stages = newStageChart(steps)
	p.Slowest = slowest(steps, maxSlowest)
	p.Usage = newUsageView(steps)
	return p
}

// title names the run: its name, else its ID.
func title(r state.Run) string { return cmp.Or(r.Name, r.ID) }

// when is a time as the report prints it: UTC to the second, "" for none.
func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// took is a duration rounded to what a person reads.
func took(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.String()
}

// visitStates are the states in the order status prints them.
var visitStates = []state.VisitState{state.Done, state.Failed, state.Running, state.Interrupted, state.Pending}

func newRunView(d stepData) runView {
	v := runView{Step: d.name, Run: d.run, Created: when(d.run.Created), Dropped: d.dropped, Input: "open"}
	if !d.run.InputClosed.IsZero() {
		v.Input = "closed " + when(d.run.InputClosed) + ": " + d.run.InputClosedWhy
	}
	for _, st := range visitStates {
		v.Counts = append(v.Counts, count{State: st.String(), N: d.counts[st]})
		v.Visits += d.counts[st]
	}
	for _, j := range d.jobs {
		row := jobRow{Job: j, Submitted: when(j.Submitted), Started: when(j.Started), Ended: when(j.Ended)}
		for _, s := range d.starts {
			if s.Job == j.ID {
				row.Starts = append(row.Starts, startRow{JobStart: s, Number: s.Restart + 1, Started: when(s.Started), Ended: when(s.Ended)})
			}
		}
		v.Jobs = append(v.Jobs, row)
	}
	return v
}

// failureRows lists a step's slice failures, then its failed visits that
// recorded none (a failure on the Pipeline), at most maxFailures.
func failureRows(d stepData) []failureRow {
	var rows []failureRow
	withSlices := map[string]bool{}
	for _, f := range d.failures[:min(len(d.failures), maxFailures)] {
		withSlices[f.Visit] = true
		rows = append(rows, failureRow{Step: d.name, Visit: f.Visit, Attempt: f.Attempt, Stage: f.Stage,
			Slice: fmt.Sprint(f.Slice), DataID: f.DataID, Err: f.Err, Replay: d.replay(f.Capture)})
	}
	for _, v := range d.visits {
		if v.State == state.Failed && !withSlices[v.ID] && len(rows) < maxFailures {
			rows = append(rows, failureRow{Step: d.name, Visit: v.ID, Attempt: v.Attempts, Slice: "Pipeline", Err: v.Err,
				Replay: d.replay(v.Capture)})
		}
	}
	return rows
}

// replay is the command that runs a captured call again, for a capture
// the state file keeps relative to the step's directory; "" for none.
func (d stepData) replay(capture string) string {
	if capture == "" {
		return ""
	}
	return "dpsbatch replay " + filepath.Join(d.dir, capture)
}

// slowest lists the n visits that took longest, over every step.
func slowest(steps []stepData, n int) []visitRow {
	type ran struct {
		step string
		v    state.Visit
	}
	var all []ran
	for _, d := range steps {
		for _, v := range d.visits {
			if !v.Started.IsZero() && v.Ended.After(v.Started) {
				all = append(all, ran{d.name, v})
			}
		}
	}
	slices.SortStableFunc(all, func(a, b ran) int {
		return cmp.Compare(b.v.Ended.Sub(b.v.Started), a.v.Ended.Sub(a.v.Started))
	})
	var rows []visitRow
	for _, r := range all[:min(n, len(all))] {
		rows = append(rows, visitRow{Step: r.step, Visit: r.v.ID, Job: r.v.Job, State: r.v.State.String(),
			Started: when(r.v.Started), Took: took(r.v.Ended.Sub(r.v.Started)), Attempts: r.v.Attempts})
	}
	return rows
}
