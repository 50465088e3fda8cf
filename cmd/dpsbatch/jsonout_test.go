package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/examples"
)

// validate --json says valid, with what the pipeline runs, or lists every
// problem with its file, line and key; the exit status stays as without
// --json.
func TestValidateJSON(t *testing.T) {
	dir := t.TempDir()
	policy, visits, err := examples.Extract(examples.Default, filepath.Join(dir, "ex"))
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		File     string `json:"file"`
		Valid    bool   `json:"valid"`
		Problems []struct {
			File    string `json:"file"`
			Line    int    `json:"line"`
			Key     string `json:"key"`
			Message string `json:"message"`
		} `json:"problems"`
		Pipeline *struct {
			Name   string `json:"name"`
			Stages int    `json:"stages"`
		} `json:"pipeline"`
		Visits *struct {
			Visits int `json:"visits"`
		} `json:"visits"`
	}
	decode := func(out string) result {
		t.Helper()
		var r result
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("stdout is not one JSON object: %v\n%s", err, out)
		}
		return r
	}

	out, err := run(t, "validate", "--json", policy, "--visits", visits)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r := decode(out); !r.Valid || r.File != policy || r.Problems == nil || len(r.Problems) != 0 || r.Pipeline == nil ||
		r.Pipeline.Name != "ccdproc" || r.Pipeline.Stages == 0 || r.Visits == nil || r.Visits.Visits != 3 {
		t.Errorf("valid policy: %+v\n%s", r, out)
	}

	// Two problems: a misspelt stage type and an unknown key.
	data, _ := os.ReadFile(policy)
	data = bytes.Replace(data, []byte("type: exec"), []byte("type: exce"), 1)
	data = bytes.Replace(data, []byte("stages:"), []byte("colour: blue\nstages:"), 1)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, data, 0o644)
	var stdout bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &stdout, &bytes.Buffer{}
	err = app.Run([]string{"dpsbatch", "validate", "--json", bad})
	if exitCode(err) != exitBadInput {
		t.Fatalf("exit %d (%v), want %d", exitCode(err), err, exitBadInput)
	}
	r := decode(stdout.String())
	if r.Valid || r.Pipeline != nil || len(r.Problems) != 2 {
		t.Fatalf("bad policy: %+v\n%s", r, stdout.String())
	}
	byKey := map[string]int{}
	for i, p := range r.Problems {
		if p.File != bad || p.Line == 0 || p.Message == "" {
			t.Errorf("problem %+v: want the file, a line and a message", p)
		}
		byKey[p.Key] = i
	}
	if i, ok := byKey["stages[1].type"]; !ok || !strings.Contains(r.Problems[i].Message, `did you mean "exec"`) {
		t.Errorf("no problem at stages[1].type suggesting exec: %+v", r.Problems)
	}
	if _, ok := byKey["colour"]; !ok {
		t.Errorf("no problem at key colour: %+v", r.Problems)
	}
}

// local --json prints only the run's summary, as one JSON object, with
// the exit status of the run (3: a visit failed).
func TestLocalJSON(t *testing.T) {
	dir := t.TempDir()
	policy, _, err := examples.Extract(examples.Default, filepath.Join(dir, "ex"))
	if err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(dir, "run")
	var stdout bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &stdout, &bytes.Buffer{}
	err = app.Run(interspersed(app, []string{"dpsbatch", "local", "--json", policy, "--visits", filepath.Join(dir, "ex", "visits-with-failure.csv"),
		"--run-dir", runDir, "--run-id", "lj-1"}))
	if exitCode(err) != exitPartial {
		t.Fatalf("exit %d (%v), want %d", exitCode(err), err, exitPartial)
	}
	var got struct {
		Run          string `json:"run"`
		RunDir       string `json:"runDir"`
		Pipeline     string `json:"pipeline"`
		Visits       int    `json:"visits"`
		Done         int    `json:"done"`
		Failed       int    `json:"failed"`
		FailedVisits []struct {
			Visit  string `json:"visit"`
			Reason string `json:"reason"`
		} `json:"failedVisits"`
		Stages []struct {
			Stage        string  `json:"stage"`
			Visits       int     `json:"visits"`
			TotalSeconds float64 `json:"totalSeconds"`
			MeanSeconds  float64 `json:"meanSeconds"`
		} `json:"stages"`
		ElapsedSeconds float64 `json:"elapsedSeconds"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout.String())
	}
	if got.Run != "lj-1" || got.RunDir != runDir || got.Pipeline != "ccdproc" || got.Visits != 4 || got.Done != 3 || got.Failed != 1 ||
		len(got.FailedVisits) != 1 || got.FailedVisits[0].Reason == "" || got.ElapsedSeconds <= 0 {
		t.Errorf("summary %+v; want run lj-1 in %s, 4 visits, 3 done, 1 failed with why\n%s", got, runDir, stdout.String())
	}
	if len(got.Stages) == 0 {
		t.Fatalf("no stage times:\n%s", stdout.String())
	}
	for _, st := range got.Stages {
		if st.Stage == "" || st.Visits == 0 || st.TotalSeconds < st.MeanSeconds {
			t.Errorf("stage %+v: want a name, visits and times", st)
		}
	}
}
