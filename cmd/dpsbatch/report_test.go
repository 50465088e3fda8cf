package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/testenv"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/state"
)

// report finds every step of a run as its settings list them: the run's
// own state file and each pipeline's under pipelines/ (not a folder there
// that is no step), and writes RUN-DIR/report.html, or stdout with -o -.
func TestReportCommand(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)
	newState(t, filepath.Join(dir, "state.db"), at, nil)
	set, err := rundir.EncodeSettings(rundir.Settings{Pipelines: []rundir.StepEntry{{Name: "calib"}, {Name: "science"}}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(st.SetSettings(set), st.Close()); err != nil {
		t.Fatal(err)
	}
	newState(t, filepath.Join(dir, "pipelines", "calib", "state.db"), at, []string{"c1"})
	newState(t, filepath.Join(dir, "pipelines", "science", "state.db"), at, []string{"s1", "s2"})
	writeFile(t, filepath.Join(dir, "pipelines", "notes", "readme.txt"), "not a step")
	newState(t, filepath.Join(dir, "pipelines", "old", "state.db"), at, []string{"o1"}) // no step of the run

	out, err := run(t, "report", dir)
	if err != nil || out != fmt.Sprintf("report of run %s: %s\n", filepath.Base(dir), filepath.Join(dir, "report.html")) {
		t.Fatalf("report: %v\n%s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	steps := regexp.MustCompile(`<tr class="step"><td>([^<]*)</td>`).FindAllStringSubmatch(string(data), -1)
	if len(steps) != 3 || steps[0][1] != "(run)" || steps[1][1] != "calib" || steps[2][1] != "science" {
		t.Errorf("report's steps %q, want the run's own, calib and science", steps)
	}
	if n := strings.Count(string(data), `<rect class="visit`); n != 3 {
		t.Errorf("%d timeline marks, want 3", n)
	}
	stdout, err := run(t, "report", dir, "-o", "-")
	made := regexp.MustCompile(`Report made [^<]* from`) // the time it was made: a second may have passed
	if err != nil || made.ReplaceAllString(stdout, "") != made.ReplaceAllString(string(data), "") {
		t.Errorf("report -o -: %v; output differs from report.html", err)
	}
	missing := filepath.Join(dir, "no", "such", "report.html")
	if _, err := run(t, "report", dir, "-o", missing); err == nil || !strings.Contains(err.Error(), filepath.Dir(missing)) {
		t.Errorf("report into a missing folder: %v, want an error naming it", err)
	}
	if _, err := run(t, "report", filepath.Join(dir, "nosuch")); exitCode(err) != exitBadInput {
		t.Errorf("report of no run: %v, want bad input", err)
	}
}

// newState writes a state file at path whose job 7 ran visits, each for
// a second at stage work.
func newState(t *testing.T, path string, at time.Time, visits []string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := state.Create(path, state.Run{ID: "r", Name: "r", Created: at})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	check(st.AddVisits(visits))
	check(st.AddJob(state.Job{ID: "7", Attempt: 1, Submitted: at}))
	for i, v := range visits {
		start := at.Add(time.Duration(i) * time.Second)
		check(st.VisitStarted(v, "7", start))
		check(st.StageDone(v, "work", time.Second))
		check(st.VisitEnded(v, state.Done, "", start.Add(time.Second)))
	}
}

// The report of a run on the local cluster, one of whose visits failed on
// both slices with markup in its error, opens in Chromium with a mark per
// visit, a box per stage, a row per failed slice showing the error as
// text, and makes no network request.
func TestReportOfBatchRun(t *testing.T) {
	e := newBatchEnv(t)
	policy, visits := e.twoSlicePipeline("rep", `  - name: isr
    type: exec
    settings: {command: [sh, -c, 'sleep 0.2'], timeout: 120s}
  - name: measure
    type: exec
    settings:
      command: [sh, -c, 'if [ "$1" = v002 ]; then echo "<script>no sources in $1</script>" >&2; exit 1; fi', sh, "{visit}"]
      timeout: 120s
`, "v001", "v002", "v003")
	e.must(0, time.Minute, "submit", policy, "--visits", visits, "--name", "rep")
	e.cancelAtEnd("rep")
	e.must(exitPartial, 3*time.Minute, "wait", "rep", "--interval", "1s")
	e.must(0, time.Minute, "report", "rep")

	dom, requests := testenv.RenderPage(t, filepath.Join(e.root, "rep", "report.html"))
	if len(requests) != 0 {
		t.Errorf("the report made network requests: %q", requests)
	}
	marks := regexp.MustCompile(`<rect class="visit state-(\w+)" data-visit="(\w+)"`).FindAllStringSubmatch(dom, -1)
	var got []string
	for _, m := range marks {
		got = append(got, m[2]+":"+m[1])
	}
	if strings.Join(got, " ") != "v001:done v002:failed v003:done" {
		t.Errorf("timeline marks %q, want one per visit", got)
	}
	if n := strings.Count(dom, `<rect class="box"`); n != 2 {
		t.Errorf("%d stage boxes, want 2 (isr, measure)", n)
	}
	failures := regexp.MustCompile(`<tr class="failure"><td></td><td>v002</td>.*?<td>measure</td><td>(\d)</td>.*?<td class="err">[^<]*&lt;script&gt;no sources in v002&lt;/script&gt;`).FindAllStringSubmatch(dom, -1)
	if len(failures) != 2 || strings.Contains(dom, "<script") {
		t.Errorf("failure rows %q, want one per slice with the error as text; page:\n%s", failures, dom)
	}
}

// status --failures lists, on the local cluster, the failed visit with its
// error and each data ID that failed with its stage and slice; --json
// carries the same list.
func TestStatusFailures(t *testing.T) {
	e := newBatchEnv(t)
	policy, visits := e.twoSlicePipeline("fails", `  - name: measure
    type: exec
    settings:
      command: [sh, -c, 'if [ "$1" = v002 ]; then echo "no sources in $1 $2" >&2; exit 1; fi', sh, "{visit}", "{ccd}"]
`, "v001", "v002")
	e.must(0, time.Minute, "submit", policy, "--visits", visits, "--name", "fails")
	e.cancelAtEnd("fails")
	e.must(exitPartial, 3*time.Minute, "wait", "fails", "--interval", "1s")

	out := e.must(0, time.Minute, "status", "--failures", "fails")
	for _, want := range []string{"failures (3):", "visit v002 (attempt 1) failed: ",
		"visit v002 (attempt 1) stage measure, slice 1, data ID ccd=1: ", "no sources in v002 1",
		"visit v002 (attempt 1) stage measure, slice 2, data ID ccd=2: ", "no sources in v002 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("status --failures lacks %q:\n%s", want, out)
		}
	}
	if out := e.must(0, time.Minute, "status", "fails"); strings.Contains(out, "failures (") {
		t.Errorf("status without --failures lists them:\n%s", out)
	}
	var all []struct {
		Failures []struct {
			Visit  string `json:"visit"`
			Stage  string `json:"stage"`
			Slice  int    `json:"slice"`
			DataID string `json:"dataId"`
			Error  string `json:"error"`
		} `json:"failures"`
	}
	js := e.must(0, time.Minute, "status", "--failures", "--json", "fails")
	if err := json.Unmarshal([]byte(js), &all); err != nil || len(all) != 1 {
		t.Fatalf("status --failures --json: %v\n%s", err, js)
	}
	var got []string
	for _, f := range all[0].Failures {
		got = append(got, fmt.Sprintf("%s/%s/%d/%s", f.Visit, f.Stage, f.Slice, f.DataID))
	}
	if strings.Join(got, " ") != "v002//0/ v002/measure/1/ccd=1 v002/measure/2/ccd=2" {
		t.Errorf("failures in JSON %q", got)
	}
}
