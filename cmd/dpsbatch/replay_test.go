package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// capturesIn lists the capture files of a run directory.
func capturesIn(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "captures", "visit-*", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// A failing visit of dpsbatch local leaves a capture that replay fails
// on again, with the same error; --freeze-dry captures a stage's calls
// as they start, and replay of one runs the exec stage's program on the
// captured inputs, restored from the capture once the originals are gone.
func TestLocalCapturesAndReplay(t *testing.T) {
	dir := t.TempDir()
	ex := filepath.Join(dir, "ex")
	if _, err := run(t, "local", "--run-dir", ex); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(ex, "pipeline", "pipeline.yaml")
	failing := filepath.Join(ex, "pipeline", "visits-with-failure.csv")

	out, err := run(t, "local", policy, "--visits", failing, "--run-dir", filepath.Join(dir, "nope"), "--freeze-dry", "mesure")
	if exitCode(err) != exitBadInput || !strings.Contains(err.Error(), `no stage "mesure"`) || out != "" {
		t.Fatalf("--freeze-dry naming no stage: %v (exit %d), printed %q; want bad input, nothing printed", err, exitCode(err), out)
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); !os.IsNotExist(err) {
		t.Errorf("a run directory was made for a bad --freeze-dry: %v", err)
	}

	f := filepath.Join(dir, "f")
	if _, err := run(t, "local", policy, "--visits", failing, "--run-dir", f); exitCode(err) != exitPartial {
		t.Fatalf("local with a failing visit: %v", err)
	}
	caps := capturesIn(t, f)
	if len(caps) != 1 || !strings.Contains(caps[0], "visit-1004") {
		t.Fatalf("captures %v, want the failed data ID of visit 1004", caps)
	}
	out, err = run(t, "replay", caps[0])
	if exitCode(err) != exitPartial || !strings.Contains(out, "replayed Process of stage read, visit 1004") || !strings.Contains(out, "failed: ") {
		t.Fatalf("replay of a failure: exit %d (%v)\n%s", exitCode(err), err, out)
	}
	out, _ = run(t, "replay", "--json", caps[0])
	var o struct {
		Stage  string `json:"stage"`
		Failed bool   `json:"failed"`
		Error  string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &o); err != nil || o.Stage != "read" || !o.Failed || !strings.Contains(o.Error, "ccd") {
		t.Fatalf("replay --json: %+v, %v\n%s", o, err, out)
	}

	g := filepath.Join(dir, "g")
	if _, err := run(t, "local", policy, "--visits", filepath.Join(ex, "pipeline", "visits.csv"), "--run-dir", g, "--freeze-dry", "measure"); err != nil {
		t.Fatal(err)
	}
	entry := filepath.Join(g, "captures", "visit-1002", "measure.slice1-ccd=1.entry.json")
	out, err = run(t, "replay", entry)
	if err != nil || !strings.Contains(out, "succeeded; put on the clipboard") || !strings.Contains(out, "  mean: ") {
		t.Fatalf("replay of an entry capture: %v\n%s", err, out)
	}
	// Elsewhere: the run's copy of the pipeline's folder (its program and
	// data) is gone.
	if err := os.Rename(filepath.Join(g, "pipeline-files"), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, "replay", "--rest", entry)
	if err != nil || strings.Count(out, "restored input file") != 2 || !strings.Contains(out, "  mean: ") {
		t.Fatalf("replay without the originals: %v\n%s", err, out)
	}
}
