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
