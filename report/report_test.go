package report

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"
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

func TestReportCounts(t *testing.T) {
	page := render(t, Step{State: night(t, t.TempDir(), "night")})
	want := map[string]string{"done": "4", "failed": "2", "running": "1", "interrupted": "0", "pending": "1"}
	for st, n := range want {
		if got := cells(page, "count-"+st); len(got) != 1 || got[0] != n {
			t.Errorf("%s visits: %q, want [%s]", st, got, n)
		}
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
