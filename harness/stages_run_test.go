package harness_test

// The built-in stages' tests that run them as a pipeline does, through
// the stage tester: over Slices, with the Pipeline's steps.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/harness/stagetest"
)

func init() {
	harness.RegisterFormat(harness.Format{Name: "test-upper", Extensions: []string{".up"},
		Decode: func(b []byte) (any, error) { return strings.ToUpper(string(b)), nil },
		Encode: func(v any) ([]byte, error) { return []byte(strings.ToLower(v.(string))), nil },
	})
}

func TestInputOutputFormats(t *testing.T) {
	in := t.TempDir()
	writeFiles(t, filepath.Join(in, "v1"), map[string]string{"d7.json": `{"n": 3, "x": 1.5, "tags": ["a", "b"]}`,
		"t7.txt": "hello\n", "b7.bin": "\x00\x01\x02\xff", "u7.up": "shout"})
	r := stagetest.Run(t, stagetest.Case{
		Stages: `- name: read
  type: input
  settings: {format: auto, files: {doc: "{input}/d{ccd}.json", txt: "{input}/t{ccd}.txt", bin: "{input}/b{ccd}.bin", up: "{input}/u{ccd}.up"}}
- name: write
  type: output
  settings: {format: auto, files: {doc: "{output}/d{ccd}.json", txt: "{output}/t{ccd}.txt", bin: "{output}/b{ccd}.bin", up: "{output}/u{ccd}.up"}}`,
		Visit:     "v1",
		DataIDs:   []map[string]any{{"ccd": 7}},
		Locations: map[string]string{"input": in + "/{visit}", "output": "out/{visit}"},
	})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if v := r.Get(t, "ccd=7", "doc"); !reflect.DeepEqual(v, map[string]any{"n": 3, "x": 1.5, "tags": []any{"a", "b"}}) {
		t.Errorf("json read as %#v", v)
	}
	if v := r.Get(t, "ccd=7", "txt"); v != "hello\n" {
		t.Errorf("text read as %#v", v)
	}
	if v := r.Get(t, "ccd=7", "bin"); !reflect.DeepEqual(v, []byte{0, 1, 2, 255}) {
		t.Errorf("raw read as %#v", v)
	}
	if v := r.Get(t, "ccd=7", "up"); v != "SHOUT" {
		t.Errorf("registered format read as %#v", v)
	}
	out := filepath.Join(r.RunDir, "out", "v1")
	var back map[string]any
	data, _ := os.ReadFile(filepath.Join(out, "d7.json"))
	if err := json.Unmarshal(data, &back); err != nil || back["n"] != 3.0 || back["x"] != 1.5 {
		t.Errorf("json written as %s (%v)", data, err)
	}
	for name, want := range map[string]string{"t7.txt": "hello\n", "b7.bin": "\x00\x01\x02\xff", "u7.up": "shout"} {
		if got, _ := os.ReadFile(filepath.Join(out, name)); string(got) != want {
			t.Errorf("%s written as %q, want %q", name, got, want)
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != 4 {
		t.Errorf("output directory holds %d entries (temporary files left?)", len(entries))
	}
}

// A missing input fails its data ID unless the input is optional.
func TestInputMissing(t *testing.T) {
	in := t.TempDir()
	writeFiles(t, in, map[string]string{"x1.txt": "one"})
	c := stagetest.Case{
		Stages:    `- {name: read, type: input, settings: {format: auto, files: {x: "{input}/x{ccd}.txt"}}}`,
		Slices:    2,
		DataIDs:   []map[string]any{{"ccd": 1}, {"ccd": 2}},
		Locations: map[string]string{"input": in},
	}
	r := stagetest.Run(t, c)
	if f, ok := r.Failure("ccd=2"); !ok || f.Stage != "read" || !strings.Contains(f.Err, "x2.txt") {
		t.Errorf("missing input: %+v (failed: %v); want a failure at read naming x2.txt", f, ok)
	}
	if v := r.Get(t, "ccd=1", "x"); v != "one" {
		t.Errorf("ccd=1 read %#v", v)
	}
	c.Stages = `- {name: read, type: input, settings: {format: auto, optional: true, files: {x: "{input}/x{ccd}.txt"}}}`
	r = stagetest.Run(t, c)
	if r.Err != nil || len(r.Failures) != 0 {
		t.Errorf("optional missing input: %v, failures %v", r.Err, r.Failures)
	}
	if r.Clipboards["ccd=2"].Has("x") {
		t.Error("optional missing input put x on the clipboard")
	}
}

// A second visit's link replaces the first's.
func TestSymlinkStage(t *testing.T) {
	run := t.TempDir()
	for _, visit := range []string{"v1", "v2"} {
		r := stagetest.Run(t, stagetest.Case{
			Stages:    `- {name: link, type: symlink, settings: {from: "{output}/c{ccd}.json", to: "{work}/latest/c{ccd}.json"}}`,
			Visit:     visit,
			DataIDs:   []map[string]any{{"ccd": 3}},
			Locations: map[string]string{"output": "out/{visit}", "work": "work"},
			RunDir:    run,
		})
		if r.Err != nil {
			t.Fatalf("visit %s: %v", visit, r.Err)
		}
	}
	target, err := os.Readlink(filepath.Join(run, "work", "latest", "c3.json"))
	if err != nil || target != filepath.Join(run, "out", "v2", "c3.json") {
		t.Errorf("link points at %q (%v), want visit v2's file", target, err)
	}
}

// The event stage publishes from the Pipeline, with the slices' shared
// items gathered.
func TestEventStagePublishes(t *testing.T) {
	r := stagetest.Run(t, stagetest.Case{
		Stages: `- name: share
  type: exec
  settings: {command: [sh, -c, 'printf "{{\"seen\": %s}}" "$1"', sh, "{ccd}"], produces: [seen], shared: [seen]}
- name: tell
  type: event
  settings: {topic: measured, keys: [seen], properties: {label: "{pipeline}-{visitId}-{filter}"}}`,
		Slices:  3,
		DataIDs: []map[string]any{{"ccd": 1}, {"ccd": 2}, {"ccd": 3}, {"ccd": 4}},
		Visit:   "3",
		Event:   map[string]any{"filter": "r"},
	})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	e := firstEvent(t, r, "measured")
	if e.Pipeline != "stagetest" || e.Sender == "" || e.Time.IsZero() ||
		e.Properties["visitId"] != "3" || e.Properties["label"] != "stagetest-3-r" {
		t.Errorf("event %+v", e)
	}
	if seen, _ := e.Properties["seen"].(map[string]any); len(seen) != 4 || seen["ccd=3"] != 3 {
		t.Errorf("event carries gathered values %v, want 4 by data ID", e.Properties["seen"])
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
