package report

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/state"
)

// t0 is when the fixture's run starts.
var t0 = time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)

// scriptErr is a slice's error that a page must show as text.
const scriptErr = `measure: <script>alert("x")</script> & no sources`

// night writes the state file of a night's run, as a run's jobs record it,
// and returns its path: job 101 (Slurm requeued it once, then it stopped
// for time; its usage is stored: 15 min of CPU of 30 given, a task's
// peak 120 MiB of the 300 MiB a slice asked for) ran v001 to v004, job 102 (a resume) ran v004 again, v005 and
// v006, and v008 (which still runs: job 102 has not ended). v004 failed
// twice at measure on slices 1 and 2, v006 failed on the Pipeline, v007 is
// pending: 8 visits, 4 done, 2 failed, 1 running, 1 pending. The run's
// input was closed after v008 started.
func night(t *testing.T, dir, name string) string {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o755))
	path := filepath.Join(dir, "state.db")
	st, err := state.Create(path, state.Run{ID: name + "-id", Name: name, Dir: dir, Pipeline: "pipeline.yaml",
		Partition: "debug", Created: t0})
	must(t, err)
	defer st.Close()
	must(t, st.AddVisits([]string{"v001", "v002", "v003", "v004", "v005", "v006", "v007", "v008"}))
	must(t, st.AddJob(state.Job{ID: "101", Attempt: 1, Submitted: t0, State: state.JobSubmitted}))
	must(t, st.StartJob("101", 0, "n1", t0.Add(time.Minute)))
	must(t, st.StartJob("101", 1, "n2", t0.Add(3*time.Minute)))
	at := t0.Add(3 * time.Minute)
	for i, v := range []string{"v001", "v002", "v003"} {
		at = visit(t, st, v, "101", at, time.Duration(i+1)*10*time.Second, nil)
	}
	at = visit(t, st, "v004", "101", at, 5*time.Second, []int{1, 2})
	must(t, st.JobEnded("101", state.EndStopped, 0, "time limit near", at))
	must(t, st.SetUsage(state.JobUsage{Job: "101", State: "TIMEOUT", Elapsed: 10 * time.Minute, CPUs: 3, ReqMemMB: 900, SliceMemMB: 300,
		Steps: []state.StepUsage{
			{Step: "batch", Name: "batch", State: "CANCELLED", Elapsed: 10 * time.Minute, CPU: time.Second, Tasks: 1, MaxRSS: 40 << 20, MaxRSSNode: "n2"},
			{Step: "0", Name: "dpsbatch", State: "CANCELLED", Elapsed: 9 * time.Minute, CPU: 14 * time.Minute, Tasks: 3, MaxRSS: 120 << 20, MaxRSSNode: "n2"},
		}}))
	must(t, st.AddJob(state.Job{ID: "102", Attempt: 2, Submitted: at, State: state.JobSubmitted}))
	must(t, st.StartJob("102", 0, "n3", at.Add(time.Minute)))
	at = visit(t, st, "v004", "102", at.Add(time.Minute), 6*time.Second, []int{1, 2})
	at = visit(t, st, "v005", "102", at, 40*time.Second, nil)
	must(t, st.VisitStarted("v006", "102", at))
	must(t, st.VisitEnded("v006", state.Failed, "pre-step: <b>no calibration</b>", at.Add(time.Second)))
	must(t, st.VisitStarted("v008", "102", at.Add(2*time.Second)))
	must(t, st.CloseInput(at.Add(3*time.Second), "no-more-data on visits from ops@n0"))
	return path
}

// visit runs v in job from at: isr takes a fifth of took and measure the
// rest; the slices listed fail at measure. It returns the visit's end.
func visit(t *testing.T, st *state.Store, v, job string, at time.Time, took time.Duration, failing []int) time.Time {
	t.Helper()
	must(t, st.VisitStarted(v, job, at))
	must(t, st.StageDone(v, "isr", took/5))
	must(t, st.StageDone(v, "measure", took-took/5))
	end, msg := state.Done, ""
	for _, slice := range failing {
		capture := "" // slice 1's failures have none: the run's limit was reached
		if slice == 2 {
			capture = "captures/visit-" + v + "/measure.slice2-ccd=2.failed.json"
		}
		must(t, st.SliceFailed(v, "measure", slice, "ccd="+string(rune('0'+slice)), scriptErr, capture))
		end, msg = state.Failed, "measure failed on 2 slices"
	}
	must(t, st.VisitEnded(v, end, msg, at.Add(took)))
	return at.Add(took)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
