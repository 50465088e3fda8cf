package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// neverPolicy runs a program per CCD of which one fails, under a rule
// that lets its visit carry on.
const neverPolicy = `pipeline: ccds
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
events: {trigger: {topic: visits}}
failure: {visit: never}
stages:
  - name: measure
    type: exec
    settings:
      command: [sh, -c, 'echo "bad pixels in {ccd}" >&2; test "{visit}-{ccd}" != v001-2']
      results: none
`

// local exits 3 when a data ID failed, even under failure: {visit:
// never}, and its summary names the data ID with its error.
func TestLocalFailedDataIDExits3(t *testing.T) {
	dir, policy, visits := neverRun(t)
	out, err := run(t, "local", policy, "--visits", visits, "--run-dir", filepath.Join(dir, "run"), "--run-id", "never1")
	if exitCode(err) != exitPartial {
		t.Fatalf("exit %d (%v), want %d; output:\n%s", exitCode(err), err, exitPartial, out)
	}
	for _, want := range []string{"2 done, 0 failed", "data IDs: 3 done, 1 failed", "failed data IDs:",
		"visit v001 data ID ccd=2 stage measure: exec: sh exited with status 1", "\n    bad pixels in 2\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// local --json counts the data IDs and names the failed one.
func TestLocalFailedDataIDJSON(t *testing.T) {
	dir, policy, visits := neverRun(t)
	out, err := run(t, "local", "--json", policy, "--visits", visits, "--run-dir", filepath.Join(dir, "run"), "--run-id", "never2")
	if exitCode(err) != exitPartial {
		t.Fatalf("exit %d (%v), want %d", exitCode(err), err, exitPartial)
	}
	var got localRun
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	if got.DataIDs["done"] != 3 || got.DataIDs["failed"] != 1 || len(got.FailedDataIDs) != 1 ||
		got.FailedDataIDs[0].DataID != "ccd=2" || !strings.Contains(got.FailedDataIDs[0].Error, "bad pixels in 2") {
		t.Errorf("data IDs %v, failed %+v; want 3 done, ccd=2 failed with its stderr", got.DataIDs, got.FailedDataIDs)
	}
}

// neverRun writes neverPolicy and a list of two visits in a new folder.
func neverRun(t *testing.T) (dir, policy, visits string) {
	t.Helper()
	dir = t.TempDir()
	policy = filepath.Join(dir, "pipeline.yaml")
	visits = filepath.Join(dir, "visits.csv")
	if err := os.WriteFile(policy, []byte(neverPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(visits, []byte("visitId\nv001\nv002\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, policy, visits
}
