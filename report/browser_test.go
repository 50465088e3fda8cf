package report

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/internal/testenv"
)

// The report opens in a real browser (headless Chromium) with every host
// unresolvable: its charts and tables are in the page as parsed, and the
// page made no network request.
func TestReportInBrowser(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "report.html")
	f, err := os.Create(path)
	must(t, err)
	must(t, Write(f, []Step{{State: night(t, dir, "night")}}, Options{}))
	must(t, f.Close())

	dom, requests := testenv.RenderPage(t, path)
	if len(requests) != 0 {
		t.Errorf("the page made network requests: %q", requests)
	}
	timeline := element(t, dom, `<svg id="timeline-chart"`, "</svg>")
	marks := regexp.MustCompile(`<rect class="visit state-\w+" data-visit="(\w+)"`).FindAllStringSubmatch(timeline, -1)
	var visits []string
	for _, m := range marks {
		visits = append(visits, m[1])
	}
	if got := strings.Join(visits, " "); got != "v001 v002 v003 v004 v005 v006 v008" {
		t.Errorf("timeline marks for %q, want one per visit that started", got)
	}
	stages := element(t, dom, `<svg id="stage-chart"`, "</svg>")
	if n := strings.Count(stages, `<rect class="box"`); n != 2 || !strings.Contains(stages, `data-stage="measure"`) {
		t.Errorf("stage chart: %d boxes, want 2 (isr, measure):\n%s", n, stages)
	}
	failures := element(t, dom, `<section id="failures">`, "</section>")
	rows := regexp.MustCompile(`<tr class="failure">.*?<td class="err">(.*?)</td><td>`).FindAllStringSubmatch(failures, -1)
	text := `measure: &lt;script&gt;alert("x")&lt;/script&gt; &amp; no sources`
	if len(rows) != 5 || rows[0][1] != text || rows[4][1] != "pre-step: &lt;b&gt;no calibration&lt;/b&gt;" {
		t.Errorf("failure rows' errors %q, want 4 times %q (text, not markup) and v006's", rows, text)
	}
	if strings.Contains(dom, "<script") || strings.Contains(dom, "<b>") {
		t.Errorf("a visit's error became markup in the page:\n%s", failures)
	}
	cpu := element(t, dom, `<svg id="usage-time-chart"`, "</svg>")
	if !strings.Contains(cpu, `data-job="101"`) || strings.Count(cpu, `<rect class="used"`) != 1 || strings.Count(cpu, `<rect class="given"`) != 1 {
		t.Errorf("CPU time chart: want one bar of job 101, used over given:\n%s", cpu)
	}
	mem := element(t, dom, `<svg id="usage-memory-chart"`, "</svg>")
	peak := regexp.MustCompile(`<rect class="peak" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"`).FindStringSubmatch(mem)
	asked := regexp.MustCompile(`<line class="asked" x1="([\d.]+)"`).FindStringSubmatch(mem)
	if peak == nil || asked == nil {
		t.Fatalf("memory chart: want job 101's peak and a line at what a slice asked for:\n%s", mem)
	}
	x, w, limit := number(t, peak[1]), number(t, peak[2]), number(t, asked[1])
	if got := w / (limit - x); got < 0.39 || got > 0.41 {
		t.Errorf("memory chart: the peak bar is %.2f of the way to the line at what a slice asked for, want 120/300", got)
	}
	if !strings.Contains(element(t, dom, `<section id="resources">`, "</section>"), "Not recorded yet for job 102") {
		t.Errorf("the resource usage section does not say job 102's usage is not recorded yet")
	}
}

// number reads an SVG coordinate.
func number(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// element returns the part of dom from the first from to the next to.
func element(t *testing.T, dom, from, to string) string {
	t.Helper()
	_, rest, ok := strings.Cut(dom, from)
	if !ok {
		t.Fatalf("the page as rendered has no %s:\n%s", from, dom)
	}
	inner, _, ok := strings.Cut(rest, to)
	if !ok {
		t.Fatalf("the page as rendered has no %s after %s", to, from)
	}
	return inner
}
