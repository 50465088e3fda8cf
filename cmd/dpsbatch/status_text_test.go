package main

import (
	"bytes"
	"strings"
	"testing"

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
