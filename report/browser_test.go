package report

import (
	"os"
	"path/filepath"
	"regexp"
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
	rows := regexp.MustCompile(`<tr class="failure">.*?<td class="err">(.*?)</td></tr>`).FindAllStringSubmatch(failures, -1)
	text := `measure: &lt;script&gt;alert("x")&lt;/script&gt; &amp; no sources`
	if len(rows) != 5 || rows[0][1] != text || rows[4][1] != "pre-step: &lt;b&gt;no calibration&lt;/b&gt;" {
		t.Errorf("failure rows' errors %q, want 4 times %q (text, not markup) and v006's", rows, text)
	}
	if strings.Contains(dom, "<script") || strings.Contains(dom, "<b>") {
		t.Errorf("a visit's error became markup in the page:\n%s", failures)
	}
	if !strings.Contains(element(t, dom, `<section id="resources">`, "</section>"), "Not recorded yet") {
		t.Errorf("the resource usage section does not say it is not recorded yet")
	}
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
