package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

// What a run's jobs used comes from Slurm's accounting once they have
// ended: RecordUsage, called by the commands that look at a run (status,
// wait, resume, report) after Status, asks accounting about the ended
// jobs whose usage the run's state file does not hold, and stores each
// final record there (state.SetUsage), so that it is asked for once. A
// job still running, or whose end accounting has not heard of yet, gets
// nothing stored and is asked about again next time. Status itself only
// reads what is stored: it never writes the state file.

// JobUsage is what one job used, from accounting once it ended.
type JobUsage struct {
	State          string  `json:"state"` // the job's state in accounting
	ElapsedSeconds float64 `json:"elapsedSeconds"`
	CPUSeconds     float64 `json:"cpuSeconds"` // user and system time of every step
	CPUs           int     `json:"cpus"`       // allocated
	ReqMemMB       int64   `json:"reqMemMB"`   // asked for in all (Slurm's ReqMem); 0: none recorded
	// MaxRSSBytes is the most memory one task (a rank: the Pipeline or a
	// slice) of the job held, in step MaxRSSStep on node MaxRSSNode.
	MaxRSSBytes int64       `json:"maxRssBytes"`
	MaxRSSStep  string      `json:"maxRssStep,omitempty"`
	MaxRSSNode  string      `json:"maxRssNode,omitempty"`
	Steps       []StepUsage `json:"steps"`
}

// StepUsage is one step of a job: batch (the script), extern, 0, 1, ...
type StepUsage struct {
	Step           string  `json:"step"`
	Name           string  `json:"name"`
	State          string  `json:"state"`
	ElapsedSeconds float64 `json:"elapsedSeconds"`
	CPUSeconds     float64 `json:"cpuSeconds"`
	Tasks          int     `json:"tasks"`
	MaxRSSBytes    int64   `json:"maxRssBytes"` // of one task; 0: not sampled
	MaxRSSNode     string  `json:"maxRssNode,omitempty"`
}

// RunUsage is a run's totals over its jobs whose usage is recorded.
type RunUsage struct {
	Jobs           int     `json:"jobs"` // with usage recorded
	ElapsedSeconds float64 `json:"elapsedSeconds"`
	CPUSeconds     float64 `json:"cpuSeconds"`
	// MaxRSSBytes is the most memory one task of any job held (in job
	// MaxRSSJob); MemPerSliceMB what each slice asked for (submit
	// --mem-per-slice, 0: none).
	MaxRSSBytes   int64  `json:"maxRssBytes"`
	MaxRSSJob     string `json:"maxRssJob,omitempty"`
	MemPerSliceMB int    `json:"memPerSliceMB"`
}

// RecordUsage asks accounting, in one query, what the ended jobs of runs
// (statuses from Status) used, for those whose usage their state file
// lacks, stores each final answer in the run's state file and shows it in
// runs. It never fails the caller: why usage could not be asked or
// stored goes in the run's UsageNote. A backend that cannot read usage,
// or a cluster without accounting, leaves runs as they are.
func RecordUsage(ctx context.Context, b scheduler.Backend, runs []RunStatus) {
	r, ok := b.(scheduler.UsageReader)
	if !ok {
		return
	}
	var ask []string
	for _, rs := range runs {
		for _, j := range rs.Jobs {
			if usageDue(j) {
				ask = append(ask, j.ID)
			}
		}
	}
	if len(ask) == 0 {
		return
	}
	got, err := r.Usage(ctx, ask)
	for i := range runs {
		switch {
		case errors.Is(err, scheduler.ErrNoAccounting):
		case err != nil:
			runs[i].UsageNote = fmt.Sprintf("usage not asked: %v", err)
		default:
			storeUsage(&runs[i], got)
		}
	}
}

// usageDue reports whether job j's usage is to be asked for: Slurm says
// it ended (the state file's word alone is not enough: accounting would
// not know the job either), and none is stored.
func usageDue(j JobStatus) bool {
	return j.Usage == nil && !j.Live && j.Source != "state" && j.Requeued == nil
}

// storeUsage stores the final usage in got of rs's jobs in rs's state
// file, and shows it in rs.
func storeUsage(rs *RunStatus, got map[string]scheduler.Usage) {
	var finals []state.JobUsage
	for _, j := range rs.Jobs {
		if u, ok := got[j.ID]; ok && u.Final && usageDue(j) {
			su := stateUsage(u)
			su.SliceMemMB = rs.memPerSlice
			finals = append(finals, su)
		}
	}
	if len(finals) == 0 {
		return
	}
	st, err := state.Open(rundir.Layout{Dir: rs.Dir}.State())
	if err != nil {
		rs.UsageNote = fmt.Sprintf("usage not stored: %v", err)
		return
	}
	defer st.Close()
	for _, u := range finals {
		if err := st.SetUsage(u); err != nil {
			rs.UsageNote = fmt.Sprintf("usage not stored: %v", err)
			return
		}
		rs.usage = append(rs.usage, u)
	}
	showUsage(rs)
}

// stateUsage is accounting's answer as the state file keeps it.
func stateUsage(u scheduler.Usage) state.JobUsage {
	su := state.JobUsage{Job: u.Job, State: u.State, Elapsed: u.Elapsed, CPUs: u.CPUs, ReqMemMB: u.ReqMemMB}
	for _, s := range u.Steps {
		su.Steps = append(su.Steps, state.StepUsage{Step: s.Step, Name: s.Name, State: s.State, Elapsed: s.Elapsed, CPU: s.CPU,
			Tasks: s.Tasks, MaxRSS: s.MaxRSS, MaxRSSNode: s.MaxRSSNode})
	}
	return su
}

// showUsage sets the usage of rs's jobs and its totals from the usage
// stored (rs.usage).
func showUsage(rs *RunStatus) {
	if len(rs.usage) == 0 {
		return
	}
	total := &RunUsage{MemPerSliceMB: rs.memPerSlice}
	for _, u := range rs.usage {
		ju := jobUsage(u)
		if j := jobByID(rs.Jobs, u.Job); j != nil {
			j.Usage = &ju
		}
		total.Jobs++
		total.ElapsedSeconds += ju.ElapsedSeconds
		total.CPUSeconds += ju.CPUSeconds
		if ju.MaxRSSBytes > total.MaxRSSBytes {
			total.MaxRSSBytes, total.MaxRSSJob = ju.MaxRSSBytes, u.Job
		}
	}
	rs.Usage = total
}

func jobUsage(u state.JobUsage) JobUsage {
	peak := u.Peak()
	ju := JobUsage{State: u.State, ElapsedSeconds: u.Elapsed.Seconds(), CPUSeconds: u.CPU().Seconds(), CPUs: u.CPUs, ReqMemMB: u.ReqMemMB,
		MaxRSSBytes: peak.MaxRSS, MaxRSSStep: peak.Step, MaxRSSNode: peak.MaxRSSNode, Steps: []StepUsage{}}
	for _, s := range u.Steps {
		ju.Steps = append(ju.Steps, StepUsage{Step: s.Step, Name: s.Name, State: s.State, ElapsedSeconds: s.Elapsed.Seconds(),
			CPUSeconds: s.CPU.Seconds(), Tasks: s.Tasks, MaxRSSBytes: s.MaxRSS, MaxRSSNode: s.MaxRSSNode})
	}
	return ju
}
