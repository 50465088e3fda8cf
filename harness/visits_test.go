package harness

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
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
				{ID: "1", Props: map[string]any{}, Line: 2},
				{ID: "2", Props: map[string]any{}, Line: 3},
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
				{ID: "1", Props: map[string]any{}, Line: 3},
				{ID: "2", Props: map[string]any{}, Line: 5},
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
			want: []Visit{{ID: "a", Props: map[string]any{}, Line: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVisits(tt.path, []byte(tt.data))
			if err != nil {
				t.Fatalf("ParseVisits: %v", err)
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
	vs, err := ParseVisits("v.jsonl", []byte(`{"visitId": 1, "n": 3, "x": 2.5, "l": [4]}`))
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
			vs, err := ParseVisits(tt.path, []byte(tt.data))
			if err == nil {
				t.Fatalf("ParseVisits = %+v, want errors %q", vs, tt.want)
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
	vs, err := ParseVisits("v.jsonl", []byte("{\"visitId\": 1} {\"visitId\": 2}\n{\"visitId\": 3} junk\n"))
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
	p := &Policy{File: "pipe.yaml", Trigger: TriggerSpec{Topic: "visits", EventFilter: EventFilter{Properties: []string{"filter", "exptime"}}}}
	vs, err := ParseVisits("v.jsonl", []byte(
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
