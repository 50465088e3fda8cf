package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/internal/conf"
)

func TestParseVisitsGood(t *testing.T) {
	tests := []struct {
		name string
		path string
		data string
		want []Visit
	}{
		{
			name: "csv with extra columns",
			path: "visits.csv",
			data: "filter,visitId, exptime\nr,704,30\ng,705,15.5\n",
			want: []Visit{
				{ID: "704", Props: map[string]any{"filter": "r", "exptime": "30"}, Line: 2},
				{ID: "705", Props: map[string]any{"filter": "g", "exptime": "15.5"}, Line: 3},
			},
		},
		{
			name: "csv with comments, blank lines and spaces",
			path: "visits.csv",
			data: "# made by hand\nvisitId,filter\n\n# first\n  v1 , r\nv2,i\n",
			want: []Visit{
				{ID: "v1", Props: map[string]any{"filter": "r"}, Line: 5},
				{ID: "v2", Props: map[string]any{"filter": "i"}, Line: 6},
			},
		},
		{
			name: "csv with only a visitId column",
			path: "list.txt",
			data: "visitId\n1\n2\n",
			want: []Visit{
				{ID: "1", Line: 2},
				{ID: "2", Line: 3},
			},
		},
		{
			name: "json lines with typed properties",
			path: "visits.jsonl",
			data: `{"visitId": 704, "exptime": 30, "airmass": 1.25, "filter": "r", "ok": true, "ccds": [1, 2], "meta": {"n": 3}}` + "\n" +
				`{"visitId": "v705", "exptime": 15}` + "\n",
			want: []Visit{
				{ID: "704", Props: map[string]any{"exptime": 30, "airmass": 1.25, "filter": "r", "ok": true,
					"ccds": []any{1, 2}, "meta": map[string]any{"n": 3}}, Line: 1},
				{ID: "v705", Props: map[string]any{"exptime": 15}, Line: 2},
			},
		},
		{
			name: "json lines with comments and blank lines",
			path: "visits.ndjson",
			data: "# visits\n\n{\"visitId\": 1}\r\n   \n{\"visitId\": 2}\n",
			want: []Visit{
				{ID: "1", Line: 3},
				{ID: "2", Line: 5},
			},
		},
		{
			name: "json lines found by content",
			path: "visits",
			data: "\n{\"visitId\": 9, \"big\": 12345678901}\n",
			want: []Visit{{ID: "9", Props: map[string]any{"big": 12345678901}, Line: 2}},
		},
		{
			name: "json extension",
			path: "VISITS.JSON",
			data: "{\"visitId\": \"a\"}\n",
			want: []Visit{{ID: "a", Line: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseNewVisits(tt.path, []byte(tt.data))
			if err != nil {
				t.Fatalf("parseNewVisits: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

// Numbers in JSON lines keep their type: ints are int, not float64 or
// json.Number.
func TestParseVisitsJSONTypes(t *testing.T) {
	vs, err := parseNewVisits("v.jsonl", []byte(`{"visitId": 1, "n": 3, "x": 2.5, "l": [4]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := vs[0].Props["n"].(int); !ok {
		t.Errorf("n is %T, want int", vs[0].Props["n"])
	}
	if _, ok := vs[0].Props["x"].(float64); !ok {
		t.Errorf("x is %T, want float64", vs[0].Props["x"])
	}
	if _, ok := vs[0].Props["l"].([]any)[0].(int); !ok {
		t.Errorf("l[0] is %T, want int", vs[0].Props["l"].([]any)[0])
	}
	if _, ok := vs[0].Props[events.PropVisit]; ok {
		t.Error("visitId is among the properties")
	}
}

func TestParseVisitsErrors(t *testing.T) {
	tests := []struct {
		name string
		path string
		data string
		want []string // every error, exactly, in line order
	}{
		{
			name: "csv without visitId column",
			path: "v.csv",
			data: "# header next\nvisit,filter\n1,r\n",
			want: []string{"v.csv:2: the header has no visitId column (it has: visit, filter)"},
		},
		{
			name: "csv empty visitId",
			path: "v.csv",
			data: "visitId,filter\n1,r\n,g\n  ,i\n",
			want: []string{"v.csv:3: visitId: is empty", "v.csv:4: visitId: is empty"},
		},
		{
			name: "csv duplicate visit",
			path: "v.csv",
			data: "visitId,filter\n1,r\n2,g\n1,i\n",
			want: []string{`v.csv:4: visit "1" repeats line 2`},
		},
		{
			name: "csv wrong number of fields",
			path: "v.csv",
			data: "visitId,filter\n1,r\n2\n3,i\n",
			want: []string{"v.csv:3: wrong number of fields"},
		},
		{
			name: "csv bad quote",
			path: "v.csv",
			data: "visitId,filter\n1,\"r\n",
			want: []string{`v.csv:2: extraneous or missing " in quoted-field`},
		},
		{
			name: "csv empty file",
			path: "v.csv",
			data: "",
			want: []string{"v.csv: no visits (the file is empty)"},
		},
		{
			name: "csv only comments",
			path: "v.csv",
			data: "# nothing yet\n",
			want: []string{"v.csv: no visits (the file is empty)"},
		},
		{
			name: "csv header only",
			path: "v.csv",
			data: "visitId,filter\n",
			want: []string{"v.csv: no visits"},
		},
		{
			name: "json empty file",
			path: "v.jsonl",
			data: "",
			want: []string{"v.jsonl: no visits"},
		},
		{
			name: "json only comments and blanks",
			path: "v.jsonl",
			data: "# none\n\n",
			want: []string{"v.jsonl: no visits"},
		},
		{
			name: "json malformed line",
			path: "v.jsonl",
			data: "{\"visitId\": 1}\n{\"visitId\": 2,}\n{\"visitId\": 3}\n",
			want: []string{"v.jsonl:2: expected a JSON object: invalid character '}' looking for beginning of object key string"},
		},
		{
			name: "json not an object",
			path: "v.jsonl",
			data: "{\"visitId\": 1}\n[1, 2]\nnull\n",
			want: []string{
				"v.jsonl:2: expected a JSON object: json: cannot unmarshal array into Go value of type map[string]interface {}",
				"v.jsonl:3: expected a JSON object",
			},
		},
		{
			name: "json missing, empty and bad visitId",
			path: "v.jsonl",
			data: "{\"filter\": \"r\"}\n{\"visitId\": \"\"}\n{\"visitId\": null}\n{\"visitId\": true}\n{\"visitId\": \"ok\"}\n",
			want: []string{
				"v.jsonl:1: visitId: is missing",
				"v.jsonl:2: visitId: is empty",
				"v.jsonl:3: visitId: is empty",
				"v.jsonl:4: visitId: must be a string or number, got true",
			},
		},
		{
			name: "json duplicate, number and string alike",
			path: "v.jsonl",
			data: "{\"visitId\": 7}\n\n{\"visitId\": \"7\"}\n",
			want: []string{`v.jsonl:3: visit "7" repeats line 1`},
		},
		{
			name: "several problems, sorted by line",
			path: "v.csv",
			data: "visitId,filter\n1,r\n,g\n1,i\n4\n",
			want: []string{
				"v.csv:3: visitId: is empty",
				`v.csv:4: visit "1" repeats line 2`,
				"v.csv:5: wrong number of fields",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs, err := parseNewVisits(tt.path, []byte(tt.data))
			if err == nil {
				t.Fatalf("parseNewVisits = %+v, want errors %q", vs, tt.want)
			}
			if vs != nil {
				t.Errorf("visits returned with an error: %+v", vs)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
			}
			var es conf.Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %T is not a conf.Errors", err)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// A JSON line must hold one object and nothing else.
func TestParseVisitsJSONTrailingData(t *testing.T) {
	vs, err := parseNewVisits("v.jsonl", []byte("{\"visitId\": 1} {\"visitId\": 2}\n{\"visitId\": 3} junk\n"))
	if err == nil {
		t.Fatalf("a line with data after its object is accepted: %+v", vs)
	}
	for _, want := range []string{"v.jsonl:1:", "v.jsonl:2:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestReadVisits(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "visits.csv")
	if err := os.WriteFile(path, []byte("visitId,filter\n1,r\n1,g\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadVisits(path)
	if want := path + `:3: visit "1" repeats line 2`; err == nil || err.Error() != want {
		t.Errorf("ReadVisits = %v, want %q", err, want)
	}
	_, err = ReadVisits(filepath.Join(dir, "missing.csv"))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "missing.csv") {
		t.Errorf("ReadVisits(missing) = %v, want ErrInvalid naming the file", err)
	}
}

func TestCheckVisits(t *testing.T) {
	p := &Policy{File: "pipe.yaml", Trigger: triggerSpec{Topic: "visits", EventFilter: EventFilter{Properties: []string{"filter", "exptime"}}}}
	vs, err := parseNewVisits("v.jsonl", []byte(
		`{"visitId": 1, "filter": "r", "exptime": 30}`+"\n"+
			`{"visitId": 2, "filter": "g"}`+"\n"+
			`{"visitId": 3}`+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = CheckVisits(p, "v.jsonl", vs)
	want := []string{
		`v.jsonl:2: visit "2" has no property "exptime", which pipe.yaml declares in events.trigger.properties`,
		`v.jsonl:3: visit "3" has no property "filter", which pipe.yaml declares in events.trigger.properties`,
		`v.jsonl:3: visit "3" has no property "exptime", which pipe.yaml declares in events.trigger.properties`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("CheckVisits = %v\nwant %q", err, want)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("errors.Is(err, ErrInvalid) = false")
	}
	if err := CheckVisits(p, "v.jsonl", vs[:1]); err != nil {
		t.Errorf("CheckVisits on a complete visit = %v", err)
	}
	if err := CheckVisits(&Policy{File: "p.yaml"}, "v.jsonl", vs); err != nil {
		t.Errorf("CheckVisits with nothing declared = %v", err)
	}
}

func TestVisitEvent(t *testing.T) {
	v := Visit{ID: "704", Props: map[string]any{"filter": "r"}, Line: 2}
	e := v.Event("visits", "run-1")
	want := events.Event{Topic: "visits", RunID: "run-1", Kind: events.KindData,
		Properties: map[string]any{"filter": "r", "visitId": "704"}}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("Event = %+v, want %+v", e, want)
	}
	if _, ok := v.Props[events.PropVisit]; ok {
		t.Error("Event changed the visit's properties")
	}
}

// Hostile and careless visit files (issue: hostile and malformed input).
// Each is refused with the line, or read the same way in both formats.
func TestParseVisitsRefused(t *testing.T) {
	long := strings.Repeat("x", 256)
	tests := []struct {
		name string
		path string
		data string
		want []string // every error, exactly, in line order
	}{
		{
			name: "csv visit IDs that would leave the run directory or read as options",
			path: "v.csv",
			data: "visitId,filter\n../../..,r\na/b,g\n-rf,i\n..,z\nv\x00x,y\nok,r\n" + long + ",r\n",
			want: []string{
				`v.csv:2: visitId: visit ID "../../.." contains '/', which would make it a path of several folders`,
				`v.csv:3: visitId: visit ID "a/b" contains '/', which would make it a path of several folders`,
				`v.csv:4: visitId: visit ID "-rf" starts with '-', which would read as an option on a command line`,
				`v.csv:5: visitId: visit ID ".." is "..", which names a folder in a path`,
				`v.csv:6: visitId: visit ID "v\x00x" contains the control character U+0000 at byte 1`,
				`v.csv:8: visitId: visit ID "` + long + `" is 256 bytes long, more than the 255 a file name may have`,
			},
		},
		{
			name: "json visit IDs that would leave the run directory or read as options",
			path: "v.jsonl",
			data: `{"visitId": "../../.."}` + "\n" + `{"visitId": "/etc"}` + "\n" + `{"visitId": -5}` + "\n" + `{"visitId": "a\u0000b"}` + "\n" + `{"visitId": "."}` + "\n",
			want: []string{
				`v.jsonl:1: visitId: visit ID "../../.." contains '/', which would make it a path of several folders`,
				`v.jsonl:2: visitId: visit ID "/etc" contains '/', which would make it a path of several folders`,
				`v.jsonl:3: visitId: visit ID "-5" starts with '-', which would read as an option on a command line`,
				`v.jsonl:4: visitId: visit ID "a\x00b" contains the control character U+0000 at byte 1`,
				`v.jsonl:5: visitId: visit ID "." is ".", which names a folder in a path`,
			},
		},
		{
			name: "csv header naming a column twice",
			path: "v.csv",
			data: "# visits\nvisitId,filter, filter\n1,r,g\n",
			want: []string{`v.csv:2: the header names column 3 "filter", like column 2: each column must have its own name`},
		},
		{
			name: "csv header naming visitId twice",
			path: "v.csv",
			data: "visitId,filter,visitId\n1,r,2\n",
			want: []string{`v.csv:1: the header names column 3 "visitId", like column 1: each column must have its own name`},
		},
		{
			name: "json object with a key twice",
			path: "v.jsonl",
			data: `{"visitId": "a"}` + "\n" + `{"visitId": "b", "filter": "r", "visitId": "c"}` + "\n",
			want: []string{`v.jsonl:2: visitId: appears twice in the object: each key must appear once`},
		},
		{
			// " v1" and "v1" are one visit in both formats.
			name: "json visit IDs differing by white space",
			path: "v.jsonl",
			data: `{"visitId": "v1"}` + "\n" + `{"visitId": " v1"}` + "\n",
			want: []string{`v.jsonl:2: visit "v1" repeats line 1`},
		},
		{
			name: "csv visit IDs differing by white space",
			path: "v.csv",
			data: "visitId\nv1\n\" v1\"\n",
			want: []string{`v.csv:3: visit "v1" repeats line 2`},
		},
		{
			name: "latin-1 csv",
			path: "v.csv",
			data: "visitId,target\nv1,caf\xe9\nv2,ok\nv3,na\xefve\n",
			want: []string{
				"v.csv:2: not valid UTF-8 (a visit file must be UTF-8: convert a Latin-1 file with iconv -f latin1 -t utf-8)",
				"v.csv:4: not valid UTF-8 (a visit file must be UTF-8: convert a Latin-1 file with iconv -f latin1 -t utf-8)",
			},
		},
		{
			name: "latin-1 json lines",
			path: "v.jsonl",
			data: "{\"visitId\": \"v1\"}\n{\"visitId\": \"caf\xe9\"}\n",
			want: []string{"v.jsonl:2: not valid UTF-8 (a visit file must be UTF-8: convert a Latin-1 file with iconv -f latin1 -t utf-8)"},
		},
		{
			// The reader notices the open quote at the end of the file;
			// the error names the line where the record starts.
			name: "csv quote never closed",
			path: "v.csv",
			data: "visitId,filter\nv1,r\nv2,\"g\nv3,r\nv4,r\nv5,r\n",
			want: []string{`v.csv:3: extraneous or missing " in quoted-field: the record starting on this line runs on to line 6 (is a quote not closed?)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs, err := parseNewVisits(tt.path, []byte(tt.data))
			if err == nil {
				t.Fatalf("parseNewVisits = %+v, want errors %q", vs, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
			}
			var es conf.Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %T is not a conf.Errors", err)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// A comment is a line whose first non-blank character is '#', in both
// formats, and validate counts them; in CSV a '#' inside a quoted field
// is data.
func TestVisitComments(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name, data string
		ids        []string
		comments   int
	}{
		{"visits.csv", "# made by hand\nvisitId,note\n  # indented: a comment too\nv1,\"two\n# lines\"\n\t# tab\nv2,x\n", []string{"v1", "v2"}, 3},
		{"visits.jsonl", "# made by hand\n  # indented\n{\"visitId\": \"v1\"}\n\n{\"visitId\": \"v2\"}\n", []string{"v1", "v2"}, 2},
	} {
		path := filepath.Join(dir, tt.name)
		if err := os.WriteFile(path, []byte(tt.data), 0o644); err != nil {
			t.Fatal(err)
		}
		l, err := ReadVisitList(path)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var ids []string
		for _, v := range l.Visits {
			ids = append(ids, v.ID)
		}
		if !reflect.DeepEqual(ids, tt.ids) || l.Comments != tt.comments {
			t.Errorf("%s: visits %q, %d comments; want %q, %d", tt.name, ids, l.Comments, tt.ids, tt.comments)
		}
		if tt.name == "visits.csv" && l.Visits[0].Props["note"] != "two\n# lines" {
			t.Errorf("the quoted field holding a '#' line = %q", l.Visits[0].Props["note"])
		}
	}
}

// A quote opened early in a long file is reported where its record
// starts, not at the file's last line.
func TestCSVOpenQuoteLine(t *testing.T) {
	var b strings.Builder
	b.WriteString("visitId,filter\n")
	for i := 2; i <= 5000; i++ {
		if i == 100 {
			fmt.Fprintf(&b, "v%d,\"r\n", i)
			continue
		}
		fmt.Fprintf(&b, "v%d,r\n", i)
	}
	_, err := parseNewVisits("v.csv", []byte(b.String()))
	var es conf.Errors
	if !errors.As(err, &es) || len(es) != 1 || es[0].Line != 100 {
		t.Fatalf("parseNewVisits = %v, want one error at line 100", err)
	}
}

// The visit list of a run that exists is read as it was accepted, so that
// a run created before the checks of new visit files still resumes, and
// indexed by the IDs a state file may name: a run created before holds a
// JSON visit ID with its white space, one created since without.
func TestReadRunVisitsKeepsOldRuns(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name, data string
		ids        []string
	}{
		{"visits.csv", "visitId,f,f\n../x,r,g\n  # old,r,g\n", []string{"# old", "../x"}},
		{"visits.jsonl", "{\"visitId\": \" v1\"}\n{\"visitId\": \"v2\", \"visitId\": \"-v2\"}\n", []string{" v1", "-v2", "v1"}},
	} {
		path := filepath.Join(dir, tt.name)
		if err := os.WriteFile(path, []byte(tt.data), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadVisits(path); err == nil {
			t.Errorf("%s: ReadVisits accepts it as new input", tt.name)
		}
		byID, err := ReadRunVisits(path)
		if err != nil {
			t.Fatalf("%s: ReadRunVisits: %v", tt.name, err)
		}
		var ids []string
		for id, v := range byID {
			ids = append(ids, id)
			if v.ID != id {
				t.Errorf("%s: the visit under %q has ID %q", tt.name, id, v.ID)
			}
		}
		sort.Strings(ids)
		if !reflect.DeepEqual(ids, tt.ids) {
			t.Errorf("%s: ReadRunVisits IDs %q, want %q", tt.name, ids, tt.ids)
		}
	}
}

// A run created since reads its own list back with the IDs submit put in
// its state file.
func TestReadRunVisitsMatchesNewRuns(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{
		"visits.csv":   "# tonight\nvisitId,filter\n  # later\n v1 ,r\n\"v2 \",g\n",
		"visits.jsonl": "# tonight\n  # later\n{\"visitId\": \" v1\", \"filter\": \"r\"}\n{\"visitId\": \"v2 \", \"filter\": \"g\"}\n",
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		vs, err := ReadVisits(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		byID, err := ReadRunVisits(path)
		if err != nil {
			t.Fatalf("%s: ReadRunVisits: %v", name, err)
		}
		for _, v := range vs {
			got, ok := byID[v.ID]
			if !ok || got.ID != v.ID || !reflect.DeepEqual(got.Props, v.Props) {
				t.Errorf("%s: visit %q read back as %+v, %v", name, v.ID, got, ok)
			}
		}
	}
}
