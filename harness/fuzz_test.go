package harness

import (
	"errors"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// Fuzz targets for the readers of hostile input: the policy, the visit
// files and a trigger event's properties. Each asserts that nothing panics
// and that every error says where: file and line or key. scripts/fuzz.sh
// runs each for a few seconds; inputs worth keeping are in
// testdata/fuzz/<target>/.

// wantPlaced checks that err is bad input made of errors that each name
// file, and a line or a key unless it is about the whole file.
func wantPlaced(t *testing.T, err error, file string, wholeFile ...string) {
	t.Helper()
	if !errors.Is(err, conf.ErrInvalid) {
		t.Fatalf("error is not bad input (conf.ErrInvalid): %v", err)
	}
	var es conf.Errors
	if !errors.As(err, &es) || len(es) == 0 {
		t.Fatalf("error is not a conf.Errors: %T %v", err, err)
	}
	for _, e := range es {
		if e.File != file {
			t.Errorf("error does not name the file %s: %q", file, e)
		}
		if e.Line > 0 || e.Path != "" {
			continue
		}
		whole := false
		for _, w := range wholeFile {
			whole = whole || strings.HasPrefix(e.Msg, w)
		}
		if !whole {
			t.Errorf("error names neither a line nor a key: %q", e)
		}
	}
}

func FuzzPolicy(f *testing.F) {
	f.Add([]byte(goodPolicy))
	f.Add([]byte("pipeline: p\nslices: per-data-id\nmapper: {type: list, settings: {ids: [{ccd: 1}, {ccd: 2}]}}\nstages:\n  - {name: a, type: exec, settings: {command: [echo, \"{ccd}\"]}}\n"))
	f.Add([]byte("pipeline: p\nslices: 2\nmapper: {type: host-table, settings: {hosts: [{host: 'n*', ids: [{ccd: 1}]}]}}\nstages:\n  - {name: a, type: noop, exchange: {topology: mapper, keys: [x]}}\n"))
	f.Add([]byte("pipeline: p\nslices: 2\nmapper: {type: range, settings: {key: ccd, from: 1, to: 3, format: '%02d'}}\nlocations: {output: \"out/{visit}\"}\nstages:\n  - {name: a, type: output, settings: {files: {x: \"{output}/{ccd}\"}}}\n"))
	f.Add([]byte("pipeline: p\nslices: 2\nmapper: &m {type: rank}\nother: *m\nstages: [{name: a, type: noop}]\n"))
	f.Add([]byte("pipeline: p\nslices: [2\n"))
	const path = "pipeline.yaml" // Parse reads nothing from it
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parse(path, data)
		if err != nil {
			wantPlaced(t, err, path, "the file is empty")
			return
		}
		if err := p.validate(); err != nil {
			wantPlaced(t, err, path)
			return
		}
		if err := p.CheckDataIDValues(); err != nil {
			wantPlaced(t, err, path)
		}
		if _, err := p.SliceCount(); err != nil {
			wantPlaced(t, err, path)
		}
	})
}

// fuzzVisits parses data as a visit file named name and checks what comes
// back: errors placed, or visits with unique, usable IDs and lines.
func fuzzVisits(t *testing.T, name string, data []byte) {
	vs, err := parseNewVisits(name, data)
	if err != nil {
		wantPlaced(t, err, name, "no visits", "more lines are not valid UTF-8")
		return
	}
	seen := map[string]bool{}
	for _, v := range vs {
		if err := CheckVisitID(v.ID); err != nil {
			t.Errorf("line %d: accepted visit %v", v.Line, err)
		}
		if v.ID != strings.TrimSpace(v.ID) {
			t.Errorf("line %d: accepted visit ID %q with white space around it", v.Line, v.ID)
		}
		if seen[v.ID] {
			t.Errorf("line %d: visit %q accepted twice", v.Line, v.ID)
		}
		seen[v.ID] = true
		if v.Line < 1 {
			t.Errorf("visit %q has no line", v.ID)
		}
	}
	// The same bytes under the other name read the same way or fail:
	// never a panic.
	other := "v.jsonl"
	if strings.HasSuffix(name, ".jsonl") {
		other = "v.csv"
	}
	_, _ = parseNewVisits(other, data)
}

func FuzzVisitsCSV(f *testing.F) {
	for _, s := range []string{
		"visitId,filter,exptime\n1001,r,30\n1002,g,15.5\n",
		"# made by hand\nvisitId,note\n  # indented\nv1,\"two\n# lines\"\n",
		"visitId,filter\nv1,\"r\nv2,g\n",
		"visitId,f,f\n1,2,3\n",
		"\xef\xbb\xbfvisitId\n\" v1\"\nv1\n",
		"visitId\n../../..\n-rf\nv\x00\n",
		"visitId,target\nv1,caf\xe9\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzVisits(t, "v.csv", data) })
}

func FuzzVisitsJSONL(f *testing.F) {
	for _, s := range []string{
		`{"visitId": 704, "exptime": 30, "filter": "r", "ccds": [1, 2], "meta": {"n": 3}}` + "\n" + `{"visitId": "v705"}` + "\n",
		"# visits\n\n{\"visitId\": 1}\r\n   \n{\"visitId\": 2}\n",
		`{"visitId": "a", "visitId": "b"}` + "\n",
		`{"visitId": " v1"}` + "\n" + `{"visitId": "v1"}` + "\n",
		`{"visitId": "../x"}` + "\n" + `{"visitId": {"a": 1}}` + "\n" + `{"visitId": -1}` + "\n",
		"{\"visitId\": 1} junk\n[1]\nnull\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzVisits(t, "v.jsonl", data) })
}

// FuzzEventProperties decodes an incoming event as the Pipeline receives
// it (events.Decode) and checks it as a trigger: its visit ID, then its
// properties against declared types and a selection. Every refusal names
// the field, the property or the visit ID it is about.
func FuzzEventProperties(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"topic":"visits","run":"r1","props":{"visitId":"v1","exposure":30,"filter":"r","n":"3","ok":true}}`,
		`{"v":1,"topic":"visits","run":"r1","props":{"visitId":"../../..","exposure":"30.5"}}`,
		`{"v":1,"topic":"visits","run":"r1","props":{"visitId":{"a":1},"exposure":[1]}}`,
		`{"v":1,"topic":"visits","run":"r1","kind":"no-more-data"}`,
		`{"v":1,"topic":"visits","props":{"visitId":-1,"n":1e400,"filter":null}}`,
		`{"v":2,"topic":"visits"}`,
		`{"v":1,"topic":"","time":"yesterday"}`,
		`[1,2]`,
	} {
		f.Add([]byte(s))
	}
	trig := EventFilter{
		Properties: []string{"exposure", "filter", "n", "ok"},
		Types:      map[string]propType{"exposure": propNumber, "filter": propString, "n": propInt, "ok": propBool},
		Select:     map[string]any{"filter": "r"},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := events.Decode(data)
		if err != nil {
			if !errors.Is(err, events.ErrMalformed) {
				t.Errorf("Decode error does not wrap ErrMalformed: %v", err)
			}
			msg := strings.TrimPrefix(err.Error(), events.ErrMalformed.Error()+": ")
			whole := strings.HasPrefix(msg, "not a JSON object") || strings.HasPrefix(msg, "unsupported version")
			if !whole && !strings.Contains(msg, ":") && !strings.HasPrefix(msg, "no \"") {
				t.Errorf("Decode error names no field: %v", err)
			}
			return
		}
		// As the Pipeline does: selection, the properties, the visit ID.
		_ = trig.Selects(e)
		if why := trig.malformed(e.Properties); why != "" {
			named := false
			for _, k := range append([]string{events.PropVisit}, trig.Properties...) {
				named = named || strings.HasPrefix(why, "missing property "+k) || strings.HasPrefix(why, "property "+k+":")
			}
			if !named {
				t.Errorf("refusal names no declared property: %q", why)
			}
			return
		}
		for _, k := range trig.Properties {
			if !hasType(e.Properties[k], trig.Types[k]) {
				t.Errorf("property %s = %#v accepted as %s", k, e.Properties[k], trig.Types[k])
			}
		}
		visit, ok := e.Visit()
		if !ok {
			return
		}
		if err := CheckVisitID(visit); err != nil && !strings.HasPrefix(err.Error(), "visit ID ") {
			t.Errorf("visit ID refusal does not say so: %v", err)
		}
	})
}
