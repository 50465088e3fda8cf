package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// runSplit runs dpsbatch in this process and returns its stdout apart
// from its stderr.
func runSplit(args ...string) (string, error) {
	app := newApp()
	var stdout bytes.Buffer
	app.Writer, app.ErrWriter = &stdout, &bytes.Buffer{}
	err := app.Run(interspersed(app, append([]string{"dpsbatch"}, args...)))
	return stdout.String(), err
}

// site check --json says the file matches, or lists each mismatch with
// its partition, key and both values, or each problem of a file that
// does not load; exit 2 for the last two, as without --json.
func TestSiteCheckJSON(t *testing.T) {
	needCluster(t, 4, "sinfo")
	dir := t.TempDir()
	siteFile := func(name, cpus, extra string) string {
		f := filepath.Join(dir, name)
		writeFile(t, f, "runs_root: "+filepath.Join(dir, "runs")+`
partitions:
  - {name: debug, default: true, cpus_per_node: `+cpus+`, memory: 2000M, node_list: "n[1-4]", max_time: infinite}
launcher: {kind: srun, flags: [--mpi=none], comm: tcp}
`+extra)
		return f
	}
	type mismatch struct {
		Partition string `json:"partition"`
		Key       string `json:"key"`
		Site      string `json:"site"`
		Live      string `json:"live"`
		Message   string `json:"message"`
	}
	var got struct {
		Site       string     `json:"site"`
		Matches    bool       `json:"matches"`
		Partitions int        `json:"partitions"`
		Mismatches []mismatch `json:"mismatches"`
		Problems   []struct {
			Line int    `json:"line"`
			Key  string `json:"key"`
		} `json:"problems"`
	}
	check := func(file string, code int) {
		t.Helper()
		out, err := runSplit("site", "check", "--json", "--site", file)
		if exitCode(err) != code {
			t.Fatalf("site check %s: exit %d (%v), want %d\n%s", file, exitCode(err), err, code, out)
		}
		got.Mismatches, got.Problems = nil, nil
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("stdout is not one JSON object: %v\n%s", err, out)
		}
	}

	good := siteFile("good.yaml", "4", "")
	check(good, 0)
	if !got.Matches || got.Site != good || got.Partitions != 1 || got.Mismatches == nil || len(got.Mismatches) != 0 {
		t.Errorf("matching file: %+v", got)
	}
	check(siteFile("wrong.yaml", "8", ""), exitBadInput)
	want := mismatch{Partition: "debug", Key: "cpus_per_node", Site: "8", Live: "4"}
	if got.Matches || len(got.Mismatches) != 1 || got.Mismatches[0].Message == "" {
		t.Fatalf("file with 8 CPUs a node: %+v", got)
	}
	if m := got.Mismatches[0]; m.Partition != want.Partition || m.Key != want.Key || m.Site != want.Site || m.Live != want.Live {
		t.Errorf("mismatch %+v, want %+v", m, want)
	}
	check(siteFile("invalid.yaml", "4", "colour: blue\n"), exitBadInput)
	if got.Matches || len(got.Problems) != 1 || got.Problems[0].Key != "colour" || got.Problems[0].Line != 5 {
		t.Errorf("file with an unknown key at line 5: %+v", got)
	}
}

// cancel --json lists the jobs it cancelled; none once the run has no
// live job.
func TestCancelJSON(t *testing.T) {
	e := newBatchEnv(t)
	policy, vf := e.slowPipeline("cj", 1, "0")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "cj-1", "--hold")
	e.cancelAtEnd("cj-1")
	job := e.jobOf("cj-1")
	var got struct {
		Run       string   `json:"run"`
		Cancelled []string `json:"cancelled"`
	}
	out := e.must(0, time.Minute, "cancel", "--json", "cj-1")
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Run != "cj-1" || len(got.Cancelled) != 1 || got.Cancelled[0] != job {
		t.Fatalf("cancel --json: %v %+v, want job %s\n%s", err, got, job, out)
	}
	deadline := time.Now().Add(time.Minute)
	for e.status("cj-1").Live {
		if time.Now().After(deadline) {
			t.Fatalf("run cj-1: its cancelled job is still live")
		}
		time.Sleep(300 * time.Millisecond)
	}
	out = e.must(0, time.Minute, "cancel", "--json", "cj-1")
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Cancelled == nil || len(got.Cancelled) != 0 {
		t.Errorf("cancel --json of a run with no live job: %v %+v, want an empty list\n%s", err, got, out)
	}
}

// stages --json lists what the text lists: every stage type and mapper
// with its settings, and the formats; the text and the JSON come from
// one listing.
func TestStagesJSON(t *testing.T) {
	out, err := run(t, "stages", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var r struct {
		StageTypes []struct {
			Name     string `json:"name"`
			Doc      string `json:"doc"`
			Settings []struct {
				Key      string `json:"key"`
				Kind     string `json:"kind"`
				Default  any    `json:"default"`
				Required bool   `json:"required"`
			} `json:"settings"`
		} `json:"stageTypes"`
		Mappers []struct {
			Name     string            `json:"name"`
			Settings []json.RawMessage `json:"settings"`
		} `json:"mappers"`
		Formats []string `json:"formats"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out)
	}
	text, err := run(t, "stages")
	if err != nil {
		t.Fatal(err)
	}
	var exec bool
	for _, st := range r.StageTypes {
		if !strings.Contains(text, "  "+st.Name+": "+st.Doc) {
			t.Errorf("stage type %q in the JSON is not in the text listing", st.Name)
		}
		if st.Name != "exec" {
			continue
		}
		exec = true
		for _, s := range st.Settings {
			if s.Key == "command" && (!s.Required || s.Kind != "list of strings") {
				t.Errorf("exec's command: %+v", s)
			}
			if s.Key == "timeout" && s.Default != "10m0s" {
				t.Errorf("exec's timeout default: %v (%T)", s.Default, s.Default)
			}
		}
	}
	if !exec || len(r.Mappers) == 0 || !strings.Contains(strings.Join(r.Formats, ","), "json") {
		t.Errorf("stages --json lacks exec, mappers or formats:\n%s", out)
	}
	if strings.Contains(out, `\u003e`) {
		t.Errorf("stages --json escapes > for HTML:\n%s", out)
	}
}
