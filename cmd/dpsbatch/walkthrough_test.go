package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/testenv"
	"github.com/dpsbatch/dpsbatch/jobs"
	"github.com/dpsbatch/dpsbatch/state"
)

// TestWalkthroughRealProgram follows the README's "A real program, step
// by step": examples/ccdstats runs jq, a Debian-packaged program, as it
// is on every CCD of three visits; visit 1002's ccd3.json is cut short, so
// that data ID fails alone (exit 3) while its visit carries on; status
// names it; once the file is whole again, resume --refresh runs that data
// ID and nothing else, and the run is done. The events carry each CCD's
// mean by data ID, with each data ID's outcome: the first attempt's for
// visit 1002 lacks ccd=3 and says it failed; the second's has ccd=3 alone
// and names the others as done earlier.
func TestWalkthroughRealProgram(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		testenv.SkipOrFail(t, "jq is not installed (scripts/cluster.sh install installs it)")
	}
	src := filepath.Join(t.TempDir(), "ccdstats")
	if err := exec.Command("cp", "-r", filepath.Join("..", "..", "examples", "ccdstats"), src).Run(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "run")
	out, err := run(t, "local", filepath.Join(src, "pipeline.yaml"), "--visits", filepath.Join(src, "visits.csv"), "--run-dir", dir)
	if exitCode(err) != 3 || !strings.Contains(out, "visit 1002 data ID ccd=3 stage stats: exec: jq exited with status") {
		t.Fatalf("local over the cut-short CCD: exit %d (%v), want 3 naming visit 1002's ccd=3\n%s", exitCode(err), err, out)
	}
	rs := localStatus(t, dir)
	if rs.Counts[state.Done] != 3 || rs.DataIDs["done"] != 11 || rs.DataIDs["failed"] != 1 {
		t.Errorf("status after the first run: visits %v, data IDs %v; want 3 visits done, 11 data IDs done and 1 failed", rs.Counts, rs.DataIDs)
	}
	if f := rs.FailedDataIDs; len(f) != 1 || f[0].Visit != "1002" || f[0].DataID != "ccd=3" || f[0].Stage != "stats" || !strings.Contains(f[0].Error, "parse error") {
		t.Errorf("failed data IDs in status: %+v; want visit 1002's ccd=3 in stage stats with jq's parse error", rs.FailedDataIDs)
	}
	means := walkthroughEvents(t, dir)
	if got := means["local-1/1002"]; got.means != "ccd=1 ccd=2 ccd=4" || got.ids != "ccd=1:done ccd=2:done ccd=3:failed ccd=4:done" {
		t.Errorf("the first attempt's event for visit 1002: means of %q, data IDs %q; want ccd=3's missing and failed", got.means, got.ids)
	}
	before := outputTimes(t, filepath.Join(dir, "output"))
	if len(before) != 11 {
		t.Fatalf("the first run wrote %d output files, want 11 (every CCD but 1002's ccd3): %v", len(before), before)
	}

	if err := os.WriteFile(filepath.Join(src, "data", "1002", "ccd3.json"), []byte("[100, 102, 104, 106]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DPSBATCH_SITE", "")
	if out, err := run(t, "resume", "--refresh", dir); err != nil || !strings.Contains(out, "data IDs: 1 done") {
		t.Fatalf("resume --refresh: exit %d: %v\n%s", exitCode(err), err, out)
	}
	rs = localStatus(t, dir)
	if rs.Outcome != jobs.OutcomeDone || rs.DataIDs["done"] != 12 || rs.DataIDs["failed"] != 0 {
		t.Errorf("status after resume: outcome %s, data IDs %v; want done, 12 data IDs done", rs.Outcome, rs.DataIDs)
	}
	after := outputTimes(t, filepath.Join(dir, "output"))
	for f, at := range before {
		if !after[f].Equal(at) {
			t.Errorf("resume wrote %s again: a done data ID ran twice", f)
		}
	}
	if got := walkthroughEvents(t, dir)["local-2/1002"]; got.means != "ccd=3" || got.ids != "ccd=1:earlier ccd=2:earlier ccd=3:done ccd=4:earlier" {
		t.Errorf("the resume's event for visit 1002: means of %q, data IDs %q; want ccd=3's alone, the others done earlier", got.means, got.ids)
	}
	mean, err := os.ReadFile(filepath.Join(dir, "output", "1002", "ccd3-mean.json"))
	if err != nil || strings.TrimSpace(string(mean)) != "103" {
		t.Errorf("visit 1002's ccd3 after resume: %q (%v), want the mean of the whole file, 103", mean, err)
	}
}

// walkthroughEvent is what one ccd-means event says: the data IDs it
// has means of, and each data ID's outcome, each sorted, as text.
type walkthroughEvent struct{ means, ids string }

// walkthroughEvents reads the run's ccd-means events (`events --json`)
// by "JOB/VISIT".
func walkthroughEvents(t *testing.T, dir string) map[string]walkthroughEvent {
	t.Helper()
	out, err := run(t, "events", "--json", "--topic", "ccd-means", dir)
	if err != nil {
		t.Fatalf("events: %v\n%s", err, out)
	}
	evs := map[string]walkthroughEvent{}
	for _, ev := range parseEvents(t, out) {
		means, _ := ev.Props["mean"].(map[string]any)
		outcomes, _ := ev.Props["dataIds"].(map[string]any)
		var ids []string
		for _, id := range sortedKeys(outcomes) {
			ids = append(ids, fmt.Sprintf("%s:%v", id, outcomes[id]))
		}
		evs[fmt.Sprintf("%s/%v", ev.Job, ev.Props["visitId"])] = walkthroughEvent{strings.Join(sortedKeys(means), " "), strings.Join(ids, " ")}
	}
	return evs
}

// outputTimes maps every file under dir to its modification time.
func outputTimes(t *testing.T, dir string) map[string]time.Time {
	t.Helper()
	times := map[string]time.Time{}
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			times[path] = fi.ModTime()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return times
}
