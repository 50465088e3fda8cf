package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/injob"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/state"
)

// ccdPolicy runs a program per CCD that notes each run in marks (a line
// in ran-VISIT-CCD) and fails while marks holds broken-VISIT-CCD, under
// a failure section.
const ccdPolicy = `pipeline: ccds
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
events: {trigger: {topic: visits}}
failure: %s
stages:
  - name: measure
    type: exec
    settings:
      command: [sh, -c, 'echo x >> "$0/ran-{visit}-{ccd}"; test ! -e "$0/broken-{visit}-{ccd}"', %q]
      results: none
`

// runJobHere plays job of the run in dir in this process, its ranks as
// goroutines, as the job script's srun would.
func runJobHere(t *testing.T, dir, job string) {
	t.Helper()
	l := rundir.Layout{Dir: dir}
	stop := serveRun(t, l.State(), job, 0)
	defer stop()
	j := &injob.InJob{StatePath: l.State(), JobID: job}
	dr := harness.RunOptions{PolicyPath: l.Policy(), RunID: "ccd", RunDir: dir, Rank0: j.Hook, Ranks: harness.CommLocal, Size: 3}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sum, err := harness.Run(ctx, dr)
	if endErr := j.End(sum, err); endErr != nil {
		t.Fatal(endErr)
	}
	if err != nil && !errors.Is(err, harness.ErrVisitsFailed) {
		t.Fatal(err)
	}
}

// ranTimes is how many times the program ran for each visit and CCD.
func ranTimes(t *testing.T, marks string) map[string]int {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(marks, "ran-*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimPrefix(filepath.Base(n), "ran-")] = strings.Count(string(b), "\n")
	}
	return out
}

// A failed CCD never disappears, whatever the failure rule: status
// counts and names it, wait says visits failed (exit 3), and resume runs
// it again, and only it (unless redo: visit). Under {visit: never} its
// visit carries on and is done.
func TestFailedDataIDNeverInvisible(t *testing.T) {
	for _, tc := range []struct {
		name, failure string
		visitsDone    int
		reran         map[string]int
	}{
		{"never", "{visit: never}", 2, map[string]int{"v001-1": 1, "v001-2": 2, "v002-1": 1, "v002-2": 1}},
		{"any-slice", "{visit: any-slice}", 1, map[string]int{"v001-1": 1, "v001-2": 2, "v002-1": 1, "v002-2": 1}},
		{"redo-visit", "{visit: never, redo: visit}", 2, map[string]int{"v001-1": 2, "v001-2": 2, "v002-1": 1, "v002-2": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failedDataIDRun(t, tc.failure, tc.visitsDone, tc.reran)
		})
	}
}

func failedDataIDRun(t *testing.T, failure string, visitsDone int, reran map[string]int) {
	e := newEnv(t, 2)
	marks := t.TempDir()
	e.policy = e.write("pipeline.yaml", fmt.Sprintf(ccdPolicy, failure, marks))
	if err := os.WriteFile(filepath.Join(marks, "broken-v001-2"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := e.submit("ccd")
	runJobHere(t, dir, "1001")
	e.fake.forget("1001", "COMPLETED")

	rs := status(t, e, dir)
	if rs.Counts[state.Done] != visitsDone || rs.Outcome != OutcomeFailed {
		t.Errorf("status: %v, %s; want %d visits done and the run failed", rs.Counts, rs.Outcome, visitsDone)
	}
	if want := map[string]int{"done": 3, "failed": 1}; fmt.Sprint(rs.DataIDs) != fmt.Sprint(want) {
		t.Errorf("data IDs %v; want %v", rs.DataIDs, want)
	}
	if len(rs.FailedDataIDs) != 1 {
		t.Fatalf("failed data IDs %+v; want v001's ccd=2", rs.FailedDataIDs)
	}
	if f := rs.FailedDataIDs[0]; f.Visit != "v001" || f.DataID != "ccd=2" || f.Stage != "measure" || f.Attempt != 1 ||
		!strings.Contains(f.Error, "exited with status 1") {
		t.Errorf("failed data ID %+v; want v001 ccd=2 at measure, attempt 1, with the program's exit", f)
	}

	wo := WaitOptions{Every: time.Millisecond, SlurmEvery: time.Millisecond}
	if _, err := Wait(context.Background(), e.fake, dir, wo); !errors.Is(err, harness.ErrVisitsFailed) {
		t.Errorf("wait after a failed CCD: %v; want ErrVisitsFailed (exit 3)", err)
	}

	// The CCD is mended; resume runs it again, and nothing else.
	if err := os.Remove(filepath.Join(marks, "broken-v001-2")); err != nil {
		t.Fatal(err)
	}
	dry := e.resumeOpts(dir)
	dry.DryRun = true
	if res, err := Resume(context.Background(), dry); err != nil || res.Visits != 1 {
		t.Errorf("resume --dry-run: %+v, %v; want 1 visit to run", res, err)
	}
	res, err := Resume(context.Background(), e.resumeOpts(dir))
	if err != nil {
		t.Fatal(err)
	}
	if res.Complete || res.Retried != 1 || res.Visits != 1 {
		t.Fatalf("resume %+v; want v001 run again", res)
	}
	runJobHere(t, dir, "1002")
	e.fake.forget("1002", "COMPLETED")
	if got := ranTimes(t, marks); fmt.Sprint(got) != fmt.Sprint(reran) {
		t.Errorf("runs per visit and CCD %v; want %v", got, reran)
	}
	if _, err := Wait(context.Background(), e.fake, dir, wo); err != nil {
		t.Errorf("wait once the CCD is done: %v", err)
	}
	if rs := status(t, e, dir); rs.DataIDs["done"] != 4 || len(rs.DataIDs) != 1 || rs.Outcome != OutcomeDone {
		t.Errorf("status once the CCD is done: data IDs %v, %s; want 4 done", rs.DataIDs, rs.Outcome)
	}
}
