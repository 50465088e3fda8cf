// Package report writes a run's report: one self-contained HTML file, for
// a person opening it after the night, that shows where the time went and
// what failed. It holds the run's jobs and their starts, the visit counts
// status shows, a timeline of the visits per job, each stage's time
// distribution, the slowest visits, the failures with their errors, and
// what the jobs used (elapsed and CPU time, the peak memory of one task
// against what a slice asked for) as the state file recorded it from
// Slurm's accounting.
// The charts are SVG written here with html/template; the page has no
// script and loads nothing (its Content-Security-Policy forbids it), so it
// opens anywhere without a network.
//
// A run is a list of steps, each with its own state file (a run of one
// pipeline has one; a production has the run's own plus one per
// pipeline): Write takes the list and reports every step.
//
// report reads state files through package state, read-only, and nothing
// else: it never asks Slurm, never changes a state file and never imports
// the use cases (jobs), the harness or the scheduler. What the state file
// does not record it does not show: a job whose usage is not stored yet
// (the command that looks at a run stores it, package jobs) is named as
// such, and a failure whose stage's input was not captured has no replay
// command.
package report

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/dpsbatch/dpsbatch/state"
)

// Step is one pipeline step of a run and its state file.
type Step struct {
	Name  string // the step's name; "" for a run's own state file
	State string // path of the step's state file
}

// Options tunes Write. The zero value is the defaults.
type Options struct {
	// Now is when the report is made (zero: time.Now()): the timeline
	// draws a running visit up to it.
	Now time.Time
}

// Write reads every step's state file and writes the run's report to w.
// Nothing is written when a state file cannot be read.
func Write(w io.Writer, steps []Step, o Options) error {
	if len(steps) == 0 {
		return fmt.Errorf("report: no state file to report on")
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	var data []stepData
	for _, s := range steps {
		d, err := read(s)
		if err != nil {
			return err
		}
		data = append(data, d)
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, newPage(data, o.Now)); err != nil {
		return fmt.Errorf("report: rendering: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// stepData is what one step's state file records.
type stepData struct {
	name     string
	dir      string // the step's directory, which its captures' paths are relative to
	run      state.Run
	counts   map[state.VisitState]int
	dropped  int
	jobs     []state.Job
	starts   []state.JobStart
	visits   []state.Visit
	failures []state.Failure
	calls    []state.StageCall
	usage    []state.JobUsage
}

// read opens the step's state file read-only and reads all the report
// shows from it.
func read(s Step) (d stepData, err error) {
	st, err := state.OpenReadOnly(s.State)
	if err != nil {
		return d, fmt.Errorf("report: %w", err)
	}
	defer st.Close()
	d.name, d.dir = s.Name, filepath.Dir(s.State)
	if d.run, err = st.Run(); err != nil {
		return d, fmt.Errorf("report: %w", err)
	}
	reads := []func() error{
		func() (err error) { d.counts, err = st.Counts(); return err },
		func() (err error) { d.dropped, err = st.DroppedEvents(); return err },
		func() (err error) { d.jobs, err = st.Jobs(); return err },
		func() (err error) { d.starts, err = st.JobStarts(); return err },
		func() (err error) { d.visits, err = st.Visits("", 0); return err },
		func() (err error) { d.failures, err = st.Failures(maxFailures + 1); return err },
		func() (err error) { d.calls, err = st.StageCalls(maxStageCalls); return err },
		func() (err error) { d.usage, err = st.Usage(); return err },
	}
	for _, f := range reads {
		if err := f(); err != nil {
			return d, fmt.Errorf("report: %w", err)
		}
	}
	return d, nil
}
