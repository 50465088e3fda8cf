package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// nightlyVisits are the visits of examples/nightly/detect/visits.csv.
var nightlyVisits = []string{"3001", "3002", "3003", "3004", "3005", "3006"}

// TestLocalProduction runs examples/nightly, a production of three
// pipelines, on this machine: detect works through its visit list and
// publishes on the in-memory broker; mops and association listen, and
// their input closes once detect has ended (the after rule), so the run
// ends. Each pipeline runs in RUN-DIR/pipelines/NAME, as in a batch job
// (association reads detect's outputs there), and each prints its summary.
func TestLocalProduction(t *testing.T) {
	prod, err := filepath.Abs(filepath.Join("..", "..", "examples", "nightly", "production.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "night")
	out, err := run(t, "local", prod, "--run-dir", dir, "--run-id", "night1")
	if err != nil {
		t.Fatalf("local %s: exit %d: %v\n%s", prod, exitCode(err), err, out)
	}
	for _, name := range []string{"detect", "mops", "association"} {
		if !strings.Contains(out, "pipeline "+name+": visits: 6 run, 6 done, 0 failed") {
			t.Errorf("no summary of %s saying 6 visits done:\n%s", name, out)
		}
	}
	for _, v := range nightlyVisits {
		for _, ccd := range []string{"1", "2"} {
			f := filepath.Join(dir, "pipelines", "association", "output", v, "ccd"+ccd+"-associated.json")
			if _, err := os.Stat(f); err != nil {
				t.Errorf("association's output of visit %s: %v", v, err)
			}
		}
	}

	// --json: one object, a summary per pipeline in the production's order.
	out, err = run(t, "local", "--json", prod, "--run-dir", filepath.Join(t.TempDir(), "j"), "--run-id", "night2")
	if err != nil {
		t.Fatalf("local --json: %v\n%s", err, out)
	}
	var got struct {
		Run      string     `json:"run"`
		Steps    []localRun `json:"steps"`
		Pipeline string     `json:"pipeline"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("local --json: %v\n%s", err, out)
	}
	if got.Run != "night2" || got.Pipeline != "nightly" || len(got.Steps) != 3 {
		t.Fatalf("local --json = %+v", got)
	}
	for i, name := range []string{"detect", "mops", "association"} {
		s := got.Steps[i]
		if s.Pipeline != name || s.Done != len(nightlyVisits) || s.Failed != 0 {
			t.Errorf("step %d = %s: %d done, %d failed; want %s, %d done", i, s.Pipeline, s.Done, s.Failed, name, len(nightlyVisits))
		}
	}

	// What a production sets per pipeline is refused, before anything runs.
	for _, args := range [][]string{
		{"local", prod, "--visits", filepath.Join(filepath.Dir(prod), "detect", "visits.csv")},
		{"local", prod, "--slices", "2"},
	} {
		bad := filepath.Join(t.TempDir(), "bad")
		_, err := run(t, append(args, "--run-dir", bad)...)
		if exitCode(err) != 2 || err == nil || !strings.Contains(err.Error(), "production") {
			t.Errorf("%v: exit %d (%v), want 2 naming the production", args, exitCode(err), err)
		}
		if _, serr := os.Stat(bad); serr == nil {
			t.Errorf("%v: a run directory was made", args)
		}
	}
}
