package harness

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/mapper"
)

func init() {
	RegisterFormat(Format{Name: "test-upper", Extensions: []string{".up"},
		Decode: func(b []byte) (any, error) { return strings.ToUpper(string(b)), nil },
		Encode: func(v any) ([]byte, error) { s, err := scalarText("v", v); return []byte(strings.ToLower(s)), err },
	})
}

// stContext builds a Context for calling a stage directly, outside a run.
func stContext(t *testing.T, runDir string, locs map[string]string, visit string, id mapper.DataID) *Context {
	t.Helper()
	tmpls := map[string]Pattern{}
	for k, v := range locs {
		tmpls[k] = mustPattern(v)
	}
	static := map[string]string{"run": "r1", "pipeline": "p", "pipelinedir": runDir}
	return &Context{ctx: context.Background(), visit: visit, stage: "s", slice: 1, dataID: id,
		run: &runInfo{id: "r1", pipeline: "p", static: static, locs: newLocations(runDir, tmpls, static), log: discardLogger()}}
}

func newStage(t *testing.T, typ string, settings map[string]any) Stage {
	t.Helper()
	ty, err := LookupStage(typ)
	if err != nil {
		t.Fatal(err)
	}
	st, err := ty.New(settingsOf(settings))
	if err != nil {
		t.Fatalf("%s: %v", typ, err)
	}
	return st
}

func TestInputOutputFormats(t *testing.T) {
	in := t.TempDir()
	run := t.TempDir()
	os.MkdirAll(filepath.Join(in, "v1"), 0o755)
	doc := `{"n": 3, "x": 1.5, "tags": ["a", "b"]}`
	os.WriteFile(filepath.Join(in, "v1", "d7.json"), []byte(doc), 0o644)
	os.WriteFile(filepath.Join(in, "v1", "t7.txt"), []byte("hello\n"), 0o644)
	os.WriteFile(filepath.Join(in, "v1", "b7.bin"), []byte{0, 1, 2, 255}, 0o644)
	os.WriteFile(filepath.Join(in, "v1", "u7.up"), []byte("shout"), 0o644)
	locs := map[string]string{"input": in + "/{visit}", "output": "out/{visit}"}
	cx := stContext(t, run, locs, "v1", mapper.DataID{"ccd": "7"})
	cb := newClipboard()
	inp := newStage(t, "input", map[string]any{"files": pairs("doc", "{input}/d{ccd}.json", "txt", "{input}/t{ccd}.txt",
		"bin", "{input}/b{ccd}.bin", "up", "{input}/u{ccd}.up"), "format": "auto"})
	if err := inp.(Processor).Process(cx, cb); err != nil {
		t.Fatal(err)
	}
	if v, _ := cb.Get("doc"); !reflect.DeepEqual(v, map[string]any{"n": 3, "x": 1.5, "tags": []any{"a", "b"}}) {
		t.Errorf("json read as %#v", v)
	}
	if v, _ := cb.Get("txt"); v != "hello\n" {
		t.Errorf("text read as %#v", v)
	}
	if v, _ := cb.Get("bin"); !reflect.DeepEqual(v, []byte{0, 1, 2, 255}) {
		t.Errorf("raw read as %#v", v)
	}
	if v, _ := cb.Get("up"); v != "SHOUT" {
		t.Errorf("registered format read as %#v", v)
	}
	out := newStage(t, "output", map[string]any{"files": pairs("doc", "{output}/d{ccd}.json", "txt", "{output}/t{ccd}.txt",
		"bin", "{output}/b{ccd}.bin", "up", "{output}/u{ccd}.up"), "format": "auto"})
	if err := out.(Processor).Process(cx, cb); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	data, _ := os.ReadFile(filepath.Join(run, "out", "v1", "d7.json"))
	if err := json.Unmarshal(data, &back); err != nil || back["n"] != 3.0 || back["x"] != 1.5 {
		t.Errorf("json written as %s (%v)", data, err)
	}
	for name, want := range map[string]string{"t7.txt": "hello\n", "b7.bin": "\x00\x01\x02\xff", "u7.up": "shout"} {
		if got, _ := os.ReadFile(filepath.Join(run, "out", "v1", name)); string(got) != want {
			t.Errorf("%s written as %q, want %q", name, got, want)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(run, "out", "v1"))
	if len(entries) != 4 {
		t.Errorf("output directory holds %d entries (temporary files left?)", len(entries))
	}
	// A missing input fails unless optional.
	cb2 := newClipboard()
	miss := newStage(t, "input", map[string]any{"files": pairs("x", "{input}/nope{ccd}.txt"), "format": "auto"})
	if err := miss.(Processor).Process(cx, cb2); err == nil || !strings.Contains(err.Error(), "nope7.txt") {
		t.Errorf("missing input: %v", err)
	}
	opt := newStage(t, "input", map[string]any{"files": pairs("x", "{input}/nope{ccd}.txt"), "format": "auto", "optional": true})
	if err := opt.(Processor).Process(cx, cb2); err != nil || cb2.Has("x") {
		t.Errorf("optional missing input: %v, has x: %v", err, cb2.Has("x"))
	}
}

func TestPathsCannotEscape(t *testing.T) {
	run := t.TempDir()
	locs := map[string]string{"output": "out/{visit}"}
	out := newStage(t, "output", map[string]any{"files": pairs("v", "{output}/{name}.txt"), "format": "auto"})
	for _, bad := range []string{"..", "a/b", "."} {
		cx := stContext(t, run, locs, "v1", mapper.DataID{"name": bad})
		cb := newClipboard()
		cb.Put("v", "x")
		err := out.(Processor).Process(cx, cb)
		if err == nil || !strings.Contains(err.Error(), "{name}") {
			t.Errorf("name %q: %v", bad, err)
		}
	}
	// A visit ID of ".." cannot climb out either.
	cx := stContext(t, run, locs, "..", mapper.DataID{"name": "x"})
	cb := newClipboard()
	cb.Put("v", "x")
	if err := out.(Processor).Process(cx, cb); err == nil {
		t.Error("visit '..' accepted in a path")
	}
	// Nor a literal climb in the template.
	climb := newStage(t, "output", map[string]any{"files": pairs("v", "{output}/../../../../etc/x"), "format": "auto"})
	cx = stContext(t, run, locs, "v1", mapper.DataID{"name": "x"})
	if err := climb.(Processor).Process(cx, cb); err == nil || !strings.Contains(err.Error(), "outside the run directory") {
		t.Errorf("climbing template: %v", err)
	}
}

func TestSymlinkStage(t *testing.T) {
	run := t.TempDir()
	locs := map[string]string{"output": "out/{visit}", "work": "work"}
	st := newStage(t, "symlink", map[string]any{"from": "{output}/c{ccd}.json", "to": "{work}/latest/c{ccd}.json"})
	for _, visit := range []string{"v1", "v2"} {
		cx := stContext(t, run, locs, visit, mapper.DataID{"ccd": "3"})
		if err := st.(Processor).Process(cx, newClipboard()); err != nil {
			t.Fatal(err)
		}
	}
	target, err := os.Readlink(filepath.Join(run, "work", "latest", "c3.json"))
	if err != nil || target != filepath.Join(run, "out", "v2", "c3.json") {
		t.Errorf("link points at %q (%v), want visit v2's file", target, err)
	}
}

func TestExecStage(t *testing.T) {
	run := t.TempDir()
	locs := map[string]string{"work": "work/{visit}"}
	cx := stContext(t, run, locs, "v9", mapper.DataID{"ccd": "4"})
	script := `printf '{{"sum": %d, "who": "%s", "env": "%s", "f": 2.5}}' $(($1 + $2)) "$DPSBATCH_DATAID" "$X"`
	st := newStage(t, "exec", map[string]any{
		"command":  []string{"sh", "-c", script, "sh", "{ccd}", "{gain}"},
		"env":      pairs("X", "{visit}-{ccd}"),
		"dir":      "{work}",
		"timeout":  10 * time.Second,
		"produces": []string{"sum", "who"},
		"shared":   []string{"sum"},
	})
	cb := newClipboard()
	cb.Put("gain", 10)
	if err := st.(Processor).Process(cx, cb); err != nil {
		t.Fatal(err)
	}
	if v, _ := cb.Get("sum"); v != 14 {
		t.Errorf("sum = %#v, want int 14", v)
	}
	if v, _ := cb.Get("who"); v != "ccd=4" {
		t.Errorf("who = %#v", v)
	}
	if v, _ := cb.Get("env"); v != "v9-4" {
		t.Errorf("env = %#v", v)
	}
	if v, _ := cb.Get("f"); v != 2.5 {
		t.Errorf("f = %#v", v)
	}
	if !cb.IsShared("sum") || cb.IsShared("who") {
		t.Error("shared marks wrong")
	}
	if _, err := os.Stat(filepath.Join(run, "work", "v9")); err != nil {
		t.Errorf("working directory not made: %v", err)
	}
	if n, p := st.(KeyDeclarer).Keys(); !reflect.DeepEqual(n, []string{"ccd", "gain"}) || !reflect.DeepEqual(p, []string{"sum", "who"}) {
		t.Errorf("keys: needs %v produces %v", n, p)
	}
}

func TestExecStageFailures(t *testing.T) {
	run := t.TempDir()
	cx := stContext(t, run, nil, "v1", mapper.DataID{"ccd": "1"})
	for _, tc := range []struct {
		name     string
		settings map[string]any
		want     []string
	}{
		{"non-zero exit", map[string]any{"command": []string{"sh", "-c", "for i in 1 2 3; do echo line$i >&2; done; exit 4"}},
			[]string{"exited with status 4", "stderr ends:", "line1\nline2\nline3"}},
		{"timeout kills children", map[string]any{"command": []string{"sh", "-c", "sleep 30 & sleep 30; wait"}, "timeout": 200 * time.Millisecond},
			[]string{"timed out after 200ms"}},
		{"not JSON", map[string]any{"command": []string{"echo", "hello"}}, []string{"stdout is not one JSON object", "hello"}},
		{"two objects", map[string]any{"command": []string{"echo", `{{"a":1}} {{"b":2}}`}}, []string{"stdout is not one JSON object"}},
		{"missing produced key", map[string]any{"command": []string{"echo", `{{"a":1}}`}, "produces": []string{"a", "b"}},
			[]string{`did not print "b"`}},
		{"no such program", map[string]any{"command": []string{"/nonexistent/prog"}}, []string{"/nonexistent/prog"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := tc.settings["timeout"]; !ok {
				tc.settings["timeout"] = 10 * time.Second
			}
			st := newStage(t, "exec", tc.settings)
			start := time.Now()
			err := st.(Processor).Process(cx, newClipboard())
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if time.Since(start) > 20*time.Second {
				t.Errorf("took %s: the program's children were not killed", time.Since(start))
			}
		})
	}
}

func TestEventStagePublishes(t *testing.T) {
	b := events.NewMemory()
	ctx := context.Background()
	sub, err := b.Subscribe(ctx, "measured", "test-run")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = runYAML(t, testHead+`events: {trigger: {properties: [filter]}}
stages:
  - {name: share, type: test-share}
  - name: tell
    type: event
    settings: {topic: measured, keys: [seen], properties: {label: "{pipeline}-{visitId}-{filter}"}}
`, []string{"3"}, func(lr *RunOptions) { lr.Broker = b })
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	e, err := sub.Next(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if e.RunID != "test-run" || e.Pipeline != "t" || e.Sender == "" || e.Time.IsZero() ||
		e.Properties["visitId"] != "3" || e.Properties["label"] != "t-3-r3" {
		t.Errorf("event %+v", e)
	}
	if seen, _ := e.Properties["seen"].([]any); len(seen) != 6 {
		t.Errorf("event carries %d gathered values, want 6", len(seen))
	}
}

func TestPublishOnlyOnPipeline(t *testing.T) {
	cx := stContext(t, t.TempDir(), nil, "v", nil)
	if err := cx.Publish("x", nil); err == nil || !strings.Contains(err.Error(), "only the Pipeline") {
		t.Errorf("publish from a slice: %v", err)
	}
}
