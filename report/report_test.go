package report

import (
	"bytes"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/state"
)

// render writes the report of steps and returns it.
func render(t *testing.T, steps ...Step) string {
	t.Helper()
	var b bytes.Buffer
	must(t, Write(&b, steps, Options{Now: t0.Add(time.Hour)}))
	return b.String()
}

// cells returns the text of every element with class class.
func cells(page, class string) []string {
	re := regexp.MustCompile(`class="[^"]*\b` + regexp.QuoteMeta(class) + `\b[^"]*"[^>]*>([^<]*)<`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(page, -1) {
		out = append(out, m[1])
	}
	return out
}

// The visits per state and the input, as status shows them.
func TestReportCounts(t *testing.T) {
	page := render(t, Step{State: night(t, t.TempDir(), "night")})
	want := map[string]string{"done": "4", "failed": "2", "running": "1", "interrupted": "0", "pending": "1"}
	for st, n := range want {
		if got := cells(page, "count-"+st); len(got) != 1 || got[0] != n {
			t.Errorf("%s visits: %q, want [%s]", st, got, n)
		}
	}
	if got := cells(page, "input"); len(got) != 1 || got[0] != "closed 2026-03-01 22:05:54 UTC: no-more-data on visits from ops@n0" {
		t.Errorf("input: %q", got)
	}
}

// A run no visit of which has started has a report that says so.
func TestReportOfNewRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := state.Create(path, state.Run{ID: "new", Created: t0})
	must(t, err)
	must(t, st.AddVisits([]string{"a", "b"}))
	must(t, st.Close())
	page := render(t, Step{State: path})
	if got := cells(page, "count-pending"); len(got) != 1 || got[0] != "2" {
		t.Errorf("pending visits: %q, want [2]", got)
	}
	for _, want := range []string{"<h1>Run new</h1>", "No job's usage is recorded.", "No visit has started.", "No stage time recorded", "No visit has ended.", "No failure recorded.", `<td class="input">open</td>`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(page, "<svg") {
		t.Errorf("the page draws a chart of nothing")
	}
}

// A visit's error is text: the page holds no script, and shows the error
// escaped, in the failures table and nowhere as markup.
func TestReportEscapesErrors(t *testing.T) {
	page := render(t, Step{State: night(t, t.TempDir(), "night")})
	if strings.Contains(strings.ToLower(page), "<script") || strings.Contains(page, "<b>") {
		t.Errorf("the page holds markup from a visit's error:\n%s", page)
	}
	errs := cells(page, "err")
	escaped := `measure: &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; no sources`
	if len(errs) != 5 || errs[0] != escaped || errs[4] != "pre-step: &lt;b&gt;no calibration&lt;/b&gt;" {
		t.Errorf("failure errors: %q, want 4 times %q and v006's", errs, escaped)
	}
}

// The timeline has a mark per visit that started, in its job's lane; the
// stage chart a box per stage.
func TestReportCharts(t *testing.T) {
	page := render(t, Step{State: night(t, t.TempDir(), "night")})
	marks := regexp.MustCompile(`<rect class="visit state-(\w+)" data-visit="(\w+)"`).FindAllStringSubmatch(page, -1)
	var got []string
	for _, m := range marks {
		got = append(got, m[2]+":"+m[1])
	}
	want := "v001:done v002:done v003:done v004:failed v005:done v006:failed v008:running"
	if strings.Join(got, " ") != want {
		t.Errorf("timeline marks %q, want %q", got, want)
	}
	if lanes := cells(page, "label"); strings.Join(lanes, "|") != "job 101|job 101|job 101|job 102|isr|measure" {
		t.Errorf("chart labels %q, want job 101's usage (CPU time, memory), the jobs' lanes and the stages", lanes)
	}
	if n := strings.Count(page, `<rect class="box"`); n != 2 {
		t.Errorf("%d stage boxes, want 2", n)
	}
	slow := regexp.MustCompile(`<tr class="slow"><td></td><td>(\w+)</td><td class="n">([^<]+)<`).FindAllStringSubmatch(page, -1)
	if len(slow) != 6 || slow[0][1] != "v005" || slow[0][2] != "40s" || slow[5][1] != "v006" {
		t.Errorf("slowest visits %q, want v005 (40s) first, v006 last of 6 ended", slow)
	}
}

// The page loads nothing: no script, no link, no source, and a policy
// that forbids any load; what is not recorded yet says so.
func TestReportSelfContained(t *testing.T) {
	page := render(t, Step{State: night(t, t.TempDir(), "night")})
	for _, bad := range []string{"<script", "<link", "src=", "href=", "url(", "@import", "https:"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page holds %q", bad)
		}
	}
	if n := strings.Count(page, "http://"); n != 4 || strings.Count(page, "<svg") != n { // the SVG namespace of each chart
		t.Errorf("the page names %d http URLs, want the four charts' SVG namespace", n)
	}
	for _, want := range []string{`content="default-src 'none'; style-src 'unsafe-inline'"`,
		`<section id="resources">`, "Not recorded yet for job 102", "the command that runs that stage again"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

// A run of several steps reports each: its counts, its jobs' lanes and
// its stages, named by the step.
func TestReportSteps(t *testing.T) {
	dir := t.TempDir()
	page := render(t, Step{State: night(t, dir, "prod")},
		Step{Name: "calib", State: night(t, filepath.Join(dir, "calib"), "prod")},
		Step{Name: "science", State: night(t, filepath.Join(dir, "science"), "prod")})
	if got := cells(page, "count-done"); strings.Join(got, " ") != "4 4 4" {
		t.Errorf("done per step: %q, want 4 for each of 3", got)
	}
	labels := strings.Join(cells(page, "label"), "|")
	for _, want := range []string{"job 101|job 102|calib: job 101|calib: job 102|science: job 101|science: job 102|",
		"|calib: isr|calib: measure|science: isr|science: measure"} {
		if !strings.Contains(labels, want) {
			t.Errorf("chart labels %q lack %q", labels, want)
		}
	}
	if n := strings.Count(page, `<rect class="visit`); n != 21 {
		t.Errorf("%d timeline marks, want 21", n)
	}
	if n := strings.Count(page, `<tr class="failure">`); n != 15 {
		t.Errorf("%d failure rows, want 15", n)
	}
}

// A state file that is not there is an error naming it, and nothing is
// written.
func TestReportMissingState(t *testing.T) {
	var b bytes.Buffer
	path := filepath.Join(t.TempDir(), "state.db")
	err := Write(&b, []Step{{State: path}}, Options{})
	if !errors.Is(err, state.ErrNotFound) || !strings.Contains(err.Error(), path) || b.Len() != 0 {
		t.Errorf("Write of a missing state file: err %v, %d bytes written", err, b.Len())
	}
	if err := Write(&b, nil, Options{}); err == nil {
		t.Errorf("Write of no step: no error")
	}
}

// A failure whose call was captured has the command that replays it,
// with the capture's path in the step's directory; one without, none.
func TestReportReplayCommands(t *testing.T) {
	dir := t.TempDir()
	page := render(t, Step{State: night(t, dir, "night")})
	rows := regexp.MustCompile(`<tr class="failure"><td></td><td>(\w+)</td>.*?<td>(\d)</td><td>ccd=\d</td>.*?</td><td>(.*?)</td></tr>`).FindAllStringSubmatch(page, -1)
	if len(rows) == 0 {
		t.Fatalf("no failure rows:\n%s", page)
	}
	for _, r := range rows {
		want := ""
		if r[2] == "2" {
			want = `<code class="replay">dpsbatch replay ` + filepath.Join(dir, "captures", "visit-"+r[1], "measure.slice2-ccd=2.failed.json") + `</code>`
		}
		if r[3] != want {
			t.Errorf("visit %s slice %s: replay cell %q, want %q", r[1], r[2], r[3], want)
		}
	}
}
