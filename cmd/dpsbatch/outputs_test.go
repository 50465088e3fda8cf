package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/jobs"
	"github.com/dpsbatch/dpsbatch/state"
)

// TestLocalRecordsDeclaredOutputs: the files an exec stage declares
// (outputs:) are recorded in the run's state file with their sizes, by
// visit and data ID, once the program has ended; a data ID whose program
// failed records none, and one that failed in a later stage keeps what
// the earlier stages made.
func TestLocalRecordsDeclaredOutputs(t *testing.T) {
	src := t.TempDir()
	for ccd, numbers := range map[int]string{1: "3\n1\n2\n", 2: "10\n"} {
		os.MkdirAll(filepath.Join(src, "data", "v1"), 0o755)
		if err := os.WriteFile(filepath.Join(src, "data", "v1", fmt.Sprintf("ccd%d.txt", ccd)), []byte(numbers), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	policy := filepath.Join(src, "pipeline.yaml")
	os.WriteFile(policy, []byte(`pipeline: sorts
slices: 1
mapper: {type: range, settings: {key: ccd, from: 1, to: 3}}
failure: {visit: never}
locations: {input: "{pipelinedir}/data/{visit}", output: "output/{visit}"}
stages:
  - name: sort
    type: exec
    settings:
      command: [sort, -n, -o, "{output}/sorted-{ccd}.txt", "{input}/ccd{ccd}.txt"]
      outputs: ["{output}/sorted-{ccd}.txt"]
  - name: mark
    type: exec
    settings:
      command: [sh, -c, 'test "$1" != 2 && echo done > "$2"', sh, "{ccd}", "{output}/mark-{ccd}.txt"]
      outputs: ["{output}/mark-{ccd}.txt"]
`), 0o644)
	os.WriteFile(filepath.Join(src, "visits.csv"), []byte("visitId\nv1\n"), 0o644)
	dir := filepath.Join(t.TempDir(), "run")
	if out, err := run(t, "local", policy, "--visits", filepath.Join(src, "visits.csv"), "--run-dir", dir); exitCode(err) != 3 {
		t.Fatalf("local with ccd3 missing: exit %d (%v), want 3\n%s", exitCode(err), err, out)
	}
	db, err := state.OpenReadOnly(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.Outputs("v1")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "output", "v1")
	// ccd=2 fails in the second stage: what the first made is recorded.
	want := []state.Output{
		{Visit: "v1", DataID: "ccd=1", Path: filepath.Join(out, "mark-1.txt"), Size: 5, Attempt: 1},
		{Visit: "v1", DataID: "ccd=1", Path: filepath.Join(out, "sorted-1.txt"), Size: 6, Attempt: 1},
		{Visit: "v1", DataID: "ccd=2", Path: filepath.Join(out, "sorted-2.txt"), Size: 3, Attempt: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("outputs recorded for v1: %+v\nwant %+v", got, want)
	}

	// status --outputs shows them (before, only sqlite3 could).
	text, err := run(t, "status", "--outputs", dir)
	if err != nil {
		t.Fatalf("status --outputs: %v\n%s", err, text)
	}
	wantText := "  outputs (3):\n" +
		"    visit v1 (attempt 1) data ID ccd=1: " + filepath.Join(out, "mark-1.txt") + " (5 bytes)\n" +
		"    visit v1 (attempt 1) data ID ccd=1: " + filepath.Join(out, "sorted-1.txt") + " (6 bytes)\n" +
		"    visit v1 (attempt 1) data ID ccd=2: " + filepath.Join(out, "sorted-2.txt") + " (3 bytes)\n"
	if !strings.Contains(text, wantText) {
		t.Errorf("status --outputs:\n%s\nwant it to hold\n%s", text, wantText)
	}
	js, err := run(t, "status", "--outputs", "--json", dir)
	if err != nil {
		t.Fatalf("status --outputs --json: %v\n%s", err, js)
	}
	var all []jobs.RunStatus
	if err := json.Unmarshal([]byte(js), &all); err != nil || len(all) != 1 {
		t.Fatalf("status --outputs --json: %v\n%s", err, js)
	}
	wantJSON := []jobs.Output{
		{Visit: "v1", DataID: "ccd=1", Path: filepath.Join(out, "mark-1.txt"), Size: 5, Attempt: 1},
		{Visit: "v1", DataID: "ccd=1", Path: filepath.Join(out, "sorted-1.txt"), Size: 6, Attempt: 1},
		{Visit: "v1", DataID: "ccd=2", Path: filepath.Join(out, "sorted-2.txt"), Size: 3, Attempt: 1},
	}
	if !reflect.DeepEqual(all[0].Outputs, wantJSON) {
		t.Errorf("status --outputs --json outputs: %+v\nwant %+v", all[0].Outputs, wantJSON)
	}
	// With --watch too: the run has ended, so one status, with them
	// (before, --watch printed a progress bar and dropped them).
	if watched, err := run(t, "status", "--watch", "--outputs", dir); err != nil || !strings.Contains(watched, wantText) {
		t.Errorf("status --watch --outputs (%v):\n%s\nwant it to hold\n%s", err, watched, wantText)
	}
	if plain, err := run(t, "status", dir); err != nil || strings.Contains(plain, "outputs (") {
		t.Errorf("status without --outputs (%v) lists them:\n%s", err, plain)
	}
}
