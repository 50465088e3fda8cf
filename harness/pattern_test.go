package harness

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/mapper"
)

// tmplCtx builds a Context in run r1 of pipeline p, at stage s on slice 2,
// with the given locations, visit and data ID.
func tmplCtx(runDir, pipeDir string, locs map[string]string, visit string, id mapper.DataID) *Context {
	tmpls := map[string]Pattern{}
	for k, v := range locs {
		tmpls[k] = mustPattern(v)
	}
	static := map[string]string{"run": "r1", "pipeline": "p", "pipelinedir": pipeDir}
	return &Context{ctx: context.Background(), visit: visit, stage: "s", slice: 2, dataID: id,
		run: &runInfo{id: "r1", pipeline: "p", static: static, locs: newLocations(runDir, tmpls, static)}}
}

// tmplMap is a lookup over a fixed map.
func tmplMap(m map[string]string) func(string) (string, error) {
	return func(name string) (string, error) {
		v, ok := m[name]
		if !ok {
			return "", fmt.Errorf("no %s", name)
		}
		return v, nil
	}
}

func TestPatternParseAndExpand(t *testing.T) {
	vals := map[string]string{"x": "1", "visit": "v7", "ccd": "12", "a.b-c_9": "z"}
	tests := []struct {
		in    string
		names []string
		want  string
	}{
		{"", nil, ""},
		{"plain/path.txt", nil, "plain/path.txt"},
		{"{x}", []string{"x"}, "1"},
		{"a{{b}}c", nil, "a{b}c"},
		{"{{x}}", nil, "{x}"},
		{"{{{x}}}", []string{"x"}, "{1}"},
		{"}}{{", nil, "}{"},
		{"{x}}}", []string{"x"}, "1}"},
		{"{visit}/c{ccd}-{visit}.{x}", []string{"visit", "ccd", "x"}, "v7/c12-v7.1"},
		{"{a.b-c_9}", []string{"a.b-c_9"}, "z"},
		{"awk '{{print $1}}' {ccd}", []string{"ccd"}, "awk '{print $1}' 12"},
	}
	for _, tt := range tests {
		tp, err := parsePattern(tt.in)
		if err != nil {
			t.Errorf("parsePattern(%q): %v", tt.in, err)
			continue
		}
		if tp.String() != tt.in {
			t.Errorf("String() = %q, want %q", tp.String(), tt.in)
		}
		if got := tp.Names(); !reflect.DeepEqual(got, tt.names) {
			t.Errorf("%q: Names() = %q, want %q", tt.in, got, tt.names)
		}
		got, err := tp.Expand(tmplMap(vals))
		if err != nil || got != tt.want {
			t.Errorf("%q: Expand = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	_, err := mustPattern("a/{nope}/b").Expand(tmplMap(vals))
	if want := `template "a/{nope}/b": no nope`; err == nil || err.Error() != want {
		t.Errorf("Expand error = %v, want %q", err, want)
	}
}

func TestPatternParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a{b", `template "a{b": '{' at offset 1 is never closed`},
		{"{x}/{", `template "{x}/{": '{' at offset 4 is never closed`},
		{"a}b", `template "a}b": '}' at offset 1 has no '{' (write }} for a literal brace)`},
		{"{x}}", `template "{x}}": '}' at offset 3 has no '{' (write }} for a literal brace)`},
		{"{}", `template "{}": "" is not a valid name (letters, digits, _ . -)`},
		{"{a b}", `template "{a b}": "a b" is not a valid name (letters, digits, _ . -)`},
		{"{a/b}", `template "{a/b}": "a/b" is not a valid name (letters, digits, _ . -)`},
		{"{a{b}", `template "{a{b}": "a{b" is not a valid name (letters, digits, _ . -)`},
		{"{$HOME}", `template "{$HOME}": "$HOME" is not a valid name (letters, digits, _ . -)`},
		{"{ccd}", ""},
	}
	for _, tt := range tests {
		_, err := parsePattern(tt.in)
		got := ""
		if err != nil {
			got = err.Error()
		}
		// Exact up to an optional hint at the end.
		if tt.want == "" && got != "" || !strings.HasPrefix(got, tt.want) {
			t.Errorf("parsePattern(%q) error = %q, want %q", tt.in, got, tt.want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("mustPattern did not panic on a bad template")
		}
	}()
	mustPattern("{")
}

func TestContextExpandOrder(t *testing.T) {
	run := t.TempDir()
	pipe := filepath.Join(t.TempDir(), "pipe")
	locs := map[string]string{"output": "out/{visit}/{ccd}", "input": "/data/{run}"}
	// The data ID has keys that built-ins and locations shadow.
	id := mapper.DataID{"ccd": "12", "visit": "not-this", "stage": "not-this", "output": "not-this", "raft": "2,2"}
	cx := tmplCtx(run, pipe, locs, "v1", id)
	cb := newClipboard()
	cb.Put("ccd", "not-this")   // the data ID wins
	cb.Put("run", "not-this")   // the built-in wins
	cb.Put("exptime", 30)       // numbers are text
	cb.Put("ok", true)          // so are booleans
	cb.Put("filter", "r")       // strings as they are
	cb.Put("list", []int{1, 2}) // lists are not
	cb.Put("sub", "a/b")        // '/' is fine outside paths
	tests := []struct{ in, want string }{
		{"{run} {visit} {slice} {stage} {pipeline}", "r1 v1 2 s p"},
		{"{pipelinedir}/bin", pipe + "/bin"},
		{"{output}", filepath.Join(run, "out/v1/12")},
		{"{input}/x", "/data/r1/x"},
		{"{raft}:{ccd}", "2,2:12"},
		{"{exptime}s {ok} {filter}", "30s true r"},
		{"{sub}", "a/b"},
		{"..", ".."},
	}
	for _, tt := range tests {
		got, err := cx.Expand(mustPattern(tt.in), cb)
		if err != nil || got != tt.want {
			t.Errorf("Expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	errTests := []struct {
		in   string
		cb   *Clipboard
		want string
	}{
		{"{list}", cb, `template "{list}": clipboard key "list" holds []int, which is not text`},
		{"{nope}", cb, `template "{nope}": nothing is called {nope}: not a built-in (run, visit, slice, stage, pipeline, pipelinedir), a location, a data ID key or a clipboard key`},
		{"{exptime}", nil, `template "{exptime}": nothing is called {exptime}`},
	}
	for _, tt := range errTests {
		_, err := cx.Expand(mustPattern(tt.in), tt.cb)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Expand(%q) error = %v, want %q", tt.in, err, tt.want)
		}
	}
	// Outside a visit (Initialize, Shutdown) there is no {visit}.
	cx = tmplCtx(run, pipe, locs, "", nil)
	_, err := cx.Expand(mustPattern("{visit}"), nil)
	if want := `template "{visit}": {visit} used outside a visit`; err == nil || err.Error() != want {
		t.Errorf("Expand({visit}) outside a visit = %v, want %q", err, want)
	}
	// A location that needs the visit fails outside one, naming the location.
	_, err = cx.Expand(mustPattern("{output}"), nil)
	if err == nil || !strings.Contains(err.Error(), "location output: ") || !strings.Contains(err.Error(), "used outside a visit") {
		t.Errorf("Expand({output}) outside a visit = %v", err)
	}
}

func TestContextPathSegments(t *testing.T) {
	run := t.TempDir()
	locs := map[string]string{"output": "out/{visit}"}
	for _, tt := range []struct{ val, want string }{
		{"..", `{x} is "..", which may not appear in a path`},
		{".", `{x} is ".", which may not appear in a path`},
		{"a/b", `{x} is "a/b", which contains '/' and may not be put into a path`},
		{"/etc", `{x} is "/etc", which contains '/' and may not be put into a path`},
		{"", `{x} is empty, which would change the path's shape`},
	} {
		for _, tmpl := range []string{"{x}", "sub/{x}/f.txt", "{output}/{x}"} {
			cx := tmplCtx(run, run, locs, "v1", mapper.DataID{"ccd": "1"})
			cb := newClipboard()
			cb.Put("x", tt.val)
			p, err := cx.Path(mustPattern(tmpl), cb)
			want := fmt.Sprintf("template %q: %s", tmpl, tt.want)
			if err == nil || err.Error() != want {
				t.Errorf("Path(%q) with x=%q = %q, %v; want error %q", tmpl, tt.val, p, err, want)
			}
		}
	}
	// The same through the data ID, the visit, and inside a location.
	for _, tt := range []struct {
		visit string
		id    mapper.DataID
		tmpl  string
		want  string
	}{
		{"v1", mapper.DataID{"ccd": ".."}, "c{ccd}/x", `{ccd} is ".."`},
		{"v1", mapper.DataID{"ccd": "1/2"}, "c{ccd}", `{ccd} is "1/2"`},
		{"..", nil, "{visit}", `{visit} is ".."`},
		{"..", nil, "{output}/x", `location output: `},
		{"a/b", nil, "{output}/x", `{visit} is "a/b"`},
	} {
		cx := tmplCtx(run, run, locs, tt.visit, tt.id)
		p, err := cx.Path(mustPattern(tt.tmpl), nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Path(%q) visit %q id %v = %q, %v; want error containing %q", tt.tmpl, tt.visit, tt.id, p, err, tt.want)
		}
	}
	// Values that merely contain dots are fine.
	cx := tmplCtx(run, run, locs, "v1", mapper.DataID{"ccd": "..12"})
	cb := newClipboard()
	cb.Put("x", "a..b")
	p, err := cx.Path(mustPattern("{output}/{ccd}.{x}"), cb)
	if want := filepath.Join(run, "out/v1/..12.a..b"); err != nil || p != want {
		t.Errorf("Path = %q, %v; want %q", p, err, want)
	}
}

func TestContextPathContainment(t *testing.T) {
	root := t.TempDir()
	run := filepath.Join(root, "runs", "r1")
	data := filepath.Join(root, "data")
	tests := []struct {
		name string
		locs map[string]string
		tmpl string
		want string // the path, or "outside" for a containment error
	}{
		{"relative resolves in the run dir", nil, "out/{visit}.txt", filepath.Join(run, "out/v1.txt")},
		{"literal .. staying inside", nil, "a/b/../../c/{visit}", filepath.Join(run, "c/v1")},
		{"the run dir itself", nil, ".", run},
		{"literal .. climbing out", nil, "../{visit}.txt", "outside"},
		{"literal .. climbing far out", nil, "a/../../../etc/{visit}", "outside"},
		{"absolute outside", nil, "/etc/passwd", "outside"},
		{"sibling sharing a prefix", nil, run + "-other/{visit}", "outside"},
		{"location climbing out", map[string]string{"output": "out/{visit}"}, "{output}/../../../x", "outside"},
		{"location staying in", map[string]string{"output": "out/{visit}"}, "{output}/../v2/x", filepath.Join(run, "out/v2/x")},
		{
			"absolute input: under its fixed part",
			map[string]string{"input": data + "/raw/{visit}"},
			"{input}/calexp.fits", filepath.Join(data, "raw/v1/calexp.fits"),
		},
		{
			"absolute input: another visit under the fixed part",
			map[string]string{"input": data + "/raw/{visit}"},
			data + "/raw/v9/x", filepath.Join(data, "raw/v9/x"),
		},
		{
			"absolute input: beside the fixed part",
			map[string]string{"input": data + "/raw/{visit}"},
			data + "/other/x", "outside",
		},
		{
			"absolute input: climbing out of the fixed part",
			map[string]string{"input": data + "/raw/{visit}"},
			"{input}/../../secret", "outside",
		},
		{
			"absolute input: placeholder inside a segment",
			map[string]string{"input": data + "/raw/v{visit}/x"},
			"{input}/f", filepath.Join(data, "raw/vv1/x/f"),
		},
		{
			"absolute input: beside a segment with a placeholder",
			map[string]string{"input": data + "/raw/v{visit}/x"},
			data + "/cooked/f", "outside",
		},
		{
			"static names belong to the fixed part",
			map[string]string{"output": data + "/out/{run}/{visit}"},
			data + "/out/r1/v5/f", filepath.Join(data, "out/r1/v5/f"),
		},
		{
			"another run is outside the fixed part",
			map[string]string{"output": data + "/out/{run}/{visit}"},
			data + "/out/r2/f", "outside",
		},
		{
			"pipelinedir anchors a location",
			map[string]string{"input": "{pipelinedir}/data/{visit}"},
			"{input}/ccd1.txt", filepath.Join(root, "pipe/data/v1/ccd1.txt"),
		},
		{
			"the pipeline directory is allowed (scripts, calibrations)",
			map[string]string{"input": "{pipelinedir}/data/{visit}"},
			"{pipelinedir}/bin/x", filepath.Join(root, "pipe/bin/x"),
		},
		{
			"a location without placeholders: inside",
			map[string]string{"output": data + "/out"},
			"{output}/f", filepath.Join(data, "out/f"),
		},
		{
			"a location without placeholders: beside it",
			map[string]string{"output": data + "/out"},
			data + "/elsewhere/f", "outside",
		},
		{
			// A location one level below / must not open the whole
			// file system.
			"a top-level location without placeholders",
			map[string]string{"scratch": "/dpsbatch-scratch"},
			"/etc/passwd", "outside",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cx := tmplCtx(run, filepath.Join(root, "pipe"), tt.locs, "v1", mapper.DataID{"ccd": "1"})
			got, err := cx.Path(mustPattern(tt.tmpl), nil)
			if tt.want == "outside" {
				if err == nil {
					t.Fatalf("Path(%q) = %q, want an error: it is outside the run dir and locations %v", tt.tmpl, got, tt.locs)
				}
				if !strings.Contains(err.Error(), "is outside the run directory, the pipeline directory and every location (") {
					t.Errorf("Path(%q) error = %v", tt.tmpl, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Path(%q) = %q, %v; want %q", tt.tmpl, got, err, tt.want)
			}
		})
	}
}

// The containment error names the path and every allowed base.
func TestContextPathErrorText(t *testing.T) {
	root := t.TempDir()
	run := filepath.Join(root, "run")
	cx := tmplCtx(run, run, map[string]string{"input": root + "/in/{visit}"}, "v1", nil)
	_, err := cx.Path(mustPattern("../x/{visit}"), nil)
	want := fmt.Sprintf("path %q is outside the run directory, the pipeline directory and every location (%s, %s)",
		filepath.Join(root, "x/v1"), run, filepath.Join(root, "in"))
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant    %s", err, want)
	}
}

func TestPatternNeeds(t *testing.T) {
	got := patternNeeds(mustPattern("{output}/{visit}/c{ccd}.{ext}"), mustPattern("{run}-{ccd}-{band}"))
	if want := []string{"ccd", "ext", "band"}; !reflect.DeepEqual(got, want) {
		t.Errorf("patternNeeds = %q, want %q", got, want)
	}
}

// A location expands under its declared root wherever it is used: in a
// path, and also as a value (an exec stage's argument or environment
// variable), whatever the visit, data ID or clipboard put into it.
func TestLocationStaysUnderItsRoot(t *testing.T) {
	root := t.TempDir()
	run := filepath.Join(root, "runs", "r1")
	data := filepath.Join(root, "data")
	for _, tt := range []struct {
		name  string
		loc   string
		visit string
		id    mapper.DataID
		x     string // the clipboard's x
		want  string // the expansion of {output}, or an error's text
	}{
		{"fine", "out/{visit}/{ccd}", "v1", mapper.DataID{"ccd": "1"}, "", filepath.Join(run, "out/v1/1")},
		{"visit climbing out", "out/{visit}", "../../..", nil, "", `{visit} is "../../..", which contains '/'`},
		{"visit of dots", "out/{visit}", "..", nil, "", `{visit} is ".."`},
		{"data ID climbing out", "out/{ccd}", "v1", mapper.DataID{"ccd": "../../etc"}, "", `{ccd} is "../../etc"`},
		{"clipboard value climbing out", "out/{x}", "v1", nil, "../x", `{x} is "../x"`},
		{"empty value", "out/{x}/f", "v1", nil, "", `{x} is empty`},
		{"literal .. after a placeholder", "out/{visit}/../../..", "v1", nil, "", "is outside its root " + filepath.Join(run, "out")},
		{"absolute, fine", data + "/raw/{visit}", "v1", nil, "", filepath.Join(data, "raw/v1")},
		{"absolute, climbing out", data + "/raw/{visit}/../../x", "v1", nil, "", "is outside its root " + filepath.Join(data, "raw")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cx := tmplCtx(run, run, map[string]string{"output": tt.loc}, tt.visit, tt.id)
			cb := newClipboard()
			cb.Put("x", tt.x)
			got, err := cx.Expand(mustPattern("{output}"), cb)
			if strings.HasPrefix(tt.want, "/") {
				if err != nil || got != tt.want {
					t.Errorf("Expand({output}) = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "location output: ") {
				t.Errorf("Expand({output}) = %q, %v; want an error about location output containing %q", got, err, tt.want)
			}
		})
	}
}
