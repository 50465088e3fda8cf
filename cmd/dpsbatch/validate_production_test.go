package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFiles writes name -> text under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// validate takes a production file as well as a policy: it says what each
// pipeline reads, or reports the production's problems with file and line
// (exit status 2).
func TestValidateProduction(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a/pipeline.yaml": "pipeline: a\nslices: 2\nmapper: {type: range, settings: {key: ccd, from: 1, to: 2}}\n" +
			"events: {trigger: {topic: visits}}\nstages:\n  - {name: work, type: noop}\n  - {name: tell, type: event, settings: {topic: found}}\n",
		"a/visits.csv":    "visitId\nv1\nv2\n",
		"b/pipeline.yaml": "pipeline: b\nslices: 1\nmapper: {type: rank}\nevents: {trigger: {topic: found}}\nstages:\n  - {name: work, type: noop}\n",
		"prod.yaml":       "production: pair\npipelines:\n  - {policy: a/pipeline.yaml, visits: a/visits.csv}\n  - {policy: b/pipeline.yaml, after: [a]}\n",
		"bad.yaml":        "production: pair\npipelines:\n  - {policy: a/pipeline.yaml, visits: a/visits.csv}\n  - {policy: b/pipeline.yaml, after: [c]}\n",
	})
	out, err := run(t, "validate", filepath.Join(dir, "prod.yaml"))
	if err != nil {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	for _, want := range []string{"valid: production pair, 2 pipelines", "a: pipeline a, 2 slices, 2 visits",
		"b: pipeline b, 1 slice, trigger events on found until a ended"} {
		if !strings.Contains(out, want) {
			t.Errorf("validate says:\n%s\nwant %q", out, want)
		}
	}
	out, err = run(t, "validate", filepath.Join(dir, "bad.yaml"))
	if code := exitCode(err); code != 2 || !strings.Contains(err.Error(), "bad.yaml:4") || !strings.Contains(err.Error(), `no pipeline "c"`) {
		t.Errorf("validate bad.yaml: exit %d, %v\n%s; want 2 naming bad.yaml:4 and c", code, err, out)
	}
	if _, err := run(t, "validate", filepath.Join(dir, "prod.yaml"), "--visits", filepath.Join(dir, "a/visits.csv")); exitCode(err) != 2 {
		t.Errorf("validate production --visits: %v; want exit 2", err)
	}
}
