package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/capture"
	"github.com/dpsbatch/dpsbatch/jobs"
	"github.com/dpsbatch/dpsbatch/state"
)

// A job that died on a full file system: the text status says how much
// space is left, rather than guessing a kill or a node failure.
func TestPrintStatusDiedOnFullDisk(t *testing.T) {
	rs := jobs.RunStatus{Run: "r1", Pipeline: "p", Outcome: "unfinished", Visits: 4,
		Counts: map[state.VisitState]int{state.Done: 3, state.Interrupted: 1},
		Jobs:   []jobs.JobStatus{{ID: "57", Attempt: 1, State: "FAILED", Source: "sacct", Died: true}}}
	var b bytes.Buffer
	printStatus(&b, rs)
	if !strings.Contains(b.String(), "killed, node failure or out of memory?") || !strings.Contains(b.String(), "3 done, 1 interrupted") {
		t.Errorf("died, space left:\n%s", b.String())
	}
	rs.DiskFull = &jobs.DiskSpace{Dir: "/runs/r1", Free: 12 << 10, Size: 3 << 29}
	b.Reset()
	printStatus(&b, rs)
	if !strings.Contains(b.String(), "file system is full (12.0 KiB free of 1.5 GiB): out of disk space?") {
		t.Errorf("died, disk full:\n%s", b.String())
	}
}

// A failed data ID of a done visit shows in the text status: counted,
// and named with its stage and the end of its program's stderr.
func TestPrintStatusFailedDataIDs(t *testing.T) {
	rs := jobs.RunStatus{Run: "r1", Pipeline: "p", Outcome: "failed", Visits: 2,
		Counts:  map[state.VisitState]int{state.Done: 2},
		DataIDs: map[string]int{"done": 3, "failed": 1},
		FailedDataIDs: []jobs.DataIDFailure{{Visit: "v001", DataID: "ccd=2", Attempt: 1, Stage: "measure",
			Error: "exec: sh exited with status 1; stderr ends:\nbad pixels"}}}
	var b bytes.Buffer
	printStatus(&b, rs)
	for _, want := range []string{"visits: 2 (2 done)", "data IDs: 3 done, 1 failed",
		"    visit v001 data ID ccd=2 (attempt 1) stage measure: exec: sh exited with status 1; stderr ends:\n      bad pixels\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

// status --failures says when the run's captures reached their limit
// (the later failures have none).
func TestPrintStatusCaptureLimit(t *testing.T) {
	dir := t.TempDir()
	rs := jobs.RunStatus{Run: "r1", Dir: dir, Pipeline: "p", Outcome: "failed", Failures: []jobs.Failure{{Visit: "v1", Error: "boom"}}}
	var b bytes.Buffer
	printStatus(&b, rs)
	if strings.Contains(b.String(), "note:") {
		t.Errorf("a note without a limit reached:\n%s", b.String())
	}
	w := capture.NewWriter(dir, capture.Limits{PerRun: 10}, nil)
	if _, err := w.Write(&capture.Capture{Stage: "s", Visit: "v1"}); err != capture.ErrLimit {
		t.Fatalf("write over the limit: %v", err)
	}
	b.Reset()
	printStatus(&b, rs)
	if !strings.Contains(b.String(), "note: freeze-dry: the run's captures reached their limit of 10 bytes") {
		t.Errorf("no note of the limit:\n%s", b.String())
	}
}
