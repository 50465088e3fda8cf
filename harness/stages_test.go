package harness

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/mapper"
)

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

func TestPublishOnlyOnPipeline(t *testing.T) {
	cx := stContext(t, t.TempDir(), nil, "v", nil)
	if err := cx.Publish("x", nil); err == nil || !strings.Contains(err.Error(), "only the Pipeline") {
		t.Errorf("publish from a slice: %v", err)
	}
}
