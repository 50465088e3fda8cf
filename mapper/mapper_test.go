package mapper_test

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/mapper"
)

// newMapper builds the registered mapper name from settings written in
// YAML, the way a policy's mapper.settings is read, defaults included.
func newMapper(t *testing.T, name, settings string) (mapper.DataMapper, error) {
	t.Helper()
	f, err := mapper.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	d := &conf.Decoder{File: "policy.yaml"}
	n, err := d.Parse([]byte(settings))
	if err != nil {
		t.Fatalf("settings %q: %v", settings, err)
	}
	v := d.Settings(n, "mapper.settings", f.Declared())
	if len(d.Errs) > 0 {
		t.Fatalf("settings %q: %v", settings, d.Errs)
	}
	return f.Build(v)
}

// slices returns n HostInfos at ranks 1..n.
func slices(n int) []mapper.HostInfo {
	hs := make([]mapper.HostInfo, n)
	for i := range hs {
		hs[i] = mapper.HostInfo{Rank: i + 1, Host: fmt.Sprintf("node%d", i/2), CPUs: 1}
	}
	return hs
}

// ids formats an assignment as one line of data IDs per slice.
func ids(got [][]mapper.DataID) []string {
	out := make([]string, len(got))
	for i, l := range got {
		s := make([]string, len(l))
		for j, id := range l {
			s[j] = id.String()
		}
		out[i] = strings.Join(s, " ")
	}
	return out
}

func TestRank(t *testing.T) {
	tests := []struct {
		settings string
		slices   []mapper.HostInfo
		want     []string
	}{
		{"{}", slices(3), []string{"rank=1", "rank=2", "rank=3"}},
		{"key: ccd", slices(2), []string{"ccd=1", "ccd=2"}},
		{"{}", []mapper.HostInfo{{Rank: 7}, {Rank: 3}}, []string{"rank=7", "rank=3"}},
		{"gpu_key: gpu", []mapper.HostInfo{{Rank: 1, GPUs: "0"}, {Rank: 2, GPUs: "0,1"}, {Rank: 3}},
			[]string{"gpu=0,rank=1", "gpu=0,1,rank=2", "gpu=,rank=3"}},
	}
	for _, tt := range tests {
		m, err := newMapper(t, "rank", tt.settings)
		if err != nil {
			t.Fatal(err)
		}
		got, err := mapper.Assign(m, tt.slices)
		if err != nil {
			t.Fatalf("%s: Assign: %v", tt.settings, err)
		}
		if !reflect.DeepEqual(ids(got), tt.want) {
			t.Errorf("%s: got %q, want %q", tt.settings, ids(got), tt.want)
		}
	}
	m, _ := newMapper(t, "rank", "key: ccd")
	if kl, ok := m.(mapper.KeyLister); !ok || !reflect.DeepEqual(kl.Keys(), []string{"ccd"}) {
		t.Errorf("rank mapper keys: %v", m)
	}
	if _, ok := m.(mapper.Enumerator); ok {
		t.Error("the rank mapper should not claim a fixed list of data IDs")
	}
	m, _ = newMapper(t, "rank", "gpu_key: gpu")
	if kl := m.(mapper.KeyLister); !reflect.DeepEqual(kl.Keys(), []string{"rank", "gpu"}) {
		t.Errorf("rank mapper keys with gpu_key: %v", kl.Keys())
	}
	if _, err := newMapper(t, "rank", "{key: ccd, gpu_key: ccd}"); err == nil || !strings.Contains(err.Error(), `gpu_key must differ from key (both "ccd")`) {
		t.Errorf("gpu_key the same as key: %v", err)
	}
}

func TestRange(t *testing.T) {
	tests := []struct {
		name     string
		settings string
		slices   int
		want     []string
	}{
		{
			// The first blocks are the longer ones.
			name:     "10 over 3, first blocks longer",
			settings: "{key: ccd, from: 1, to: 10, format: '%02d'}",
			slices:   3,
			want: []string{
				"ccd=01 ccd=02 ccd=03 ccd=04",
				"ccd=05 ccd=06 ccd=07",
				"ccd=08 ccd=09 ccd=10",
			},
		},
		{
			name:     "step",
			settings: "{key: visit, from: 0, to: 10, step: 3}",
			slices:   2,
			want:     []string{"visit=0 visit=3", "visit=6 visit=9"},
		},
		{
			name:     "even split",
			settings: "{key: ccd, from: 5, to: 8}",
			slices:   4,
			want:     []string{"ccd=5", "ccd=6", "ccd=7", "ccd=8"},
		},
		{
			name:     "one value",
			settings: "{key: ccd, from: 3, to: 3, format: 'c%03d'}",
			slices:   1,
			want:     []string{"ccd=c003"},
		},
		{
			name:     "more slices than values",
			settings: "{key: ccd, from: 1, to: 2}",
			slices:   3,
			want:     []string{"ccd=1", "ccd=2", ""},
		},
		{
			name:     "negative values",
			settings: "{key: x, from: -2, to: 1}",
			slices:   2,
			want:     []string{"x=-2 x=-1", "x=0 x=1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newMapper(t, "range", tt.settings)
			if err != nil {
				t.Fatal(err)
			}
			got, err := mapper.Assign(m, slices(tt.slices))
			if err != nil {
				t.Fatalf("Assign: %v", err)
			}
			if !reflect.DeepEqual(ids(got), tt.want) {
				t.Errorf("got  %q\nwant %q", ids(got), tt.want)
			}
		})
	}
	m, err := newMapper(t, "range", "{key: ccd, from: 1, to: 3}")
	if err != nil {
		t.Fatal(err)
	}
	e, ok := m.(mapper.Enumerator)
	if !ok {
		t.Fatal("the range mapper is not an Enumerator")
	}
	if got := ids([][]mapper.DataID{e.DataIDs()}); got[0] != "ccd=1 ccd=2 ccd=3" {
		t.Errorf("DataIDs = %q", got[0])
	}
	if kl, ok := m.(mapper.KeyLister); !ok || !reflect.DeepEqual(kl.Keys(), []string{"ccd"}) {
		t.Errorf("range mapper keys wrong or missing")
	}
	if _, err := mapper.Assign(m, nil); err == nil || err.Error() != "mapper: no slices to assign 3 data IDs to" {
		t.Errorf("Assign to no slices = %v", err)
	}
}

func TestRangeErrors(t *testing.T) {
	tests := []struct{ settings, want string }{
		{"{key: ccd, from: 5, to: 1}", "range: to (1) is less than from (5)"},
		{"{key: ccd, from: 1, to: 5, step: 0}", "range: step must be at least 1, got 0"},
		{"{key: ccd, from: 1, to: 5, step: -2}", "range: step must be at least 1, got -2"},
		{"{key: '', from: 1, to: 5}", "range: key must not be empty"},
		{"{key: ccd, from: 1, to: 5, format: '%s'}", `range: format "%s" does not format an integer`},
		{"{key: ccd, from: 1, to: 5, format: 'ccd'}", `range: format "ccd" does not format an integer`},
		{"{key: ccd, from: 1, to: 5, format: '%d-%d'}", `range: format "%d-%d" does not format an integer`},
		{"{key: ccd, from: 1, to: 5, format: ''}", `range: format "" does not format an integer`},
		{"{key: ccd, from: 0, to: 20000000}", "range: 20000001 values is more than the 10,000,000 allowed"},
	}
	for _, tt := range tests {
		m, err := newMapper(t, "range", tt.settings)
		if err == nil {
			t.Errorf("%s: got %v, want error %q", tt.settings, m, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("%s: error %q, want %q", tt.settings, err, tt.want)
		}
	}
}

func TestRangeRequiredSettings(t *testing.T) {
	f, err := mapper.Lookup("range")
	if err != nil {
		t.Fatal(err)
	}
	d := &conf.Decoder{File: "policy.yaml"}
	n, err := d.Parse([]byte("key: ccd\n"))
	if err != nil {
		t.Fatal(err)
	}
	d.Settings(n, "mapper.settings", f.Declared())
	want := "policy.yaml:1: mapper.settings.from: required key is missing\n" +
		"policy.yaml:1: mapper.settings.to: required key is missing"
	if got := d.Errs.Error(); got != want {
		t.Errorf("errors:\n got %q\nwant %q", got, want)
	}
}

// Five IDs over two slices: 3 then 2, the first block the longer one (as
// blocks documents).
func TestList(t *testing.T) {
	m, err := newMapper(t, "list", `ids:
  - {raft: "2,2", ccd: 12}
  - {raft: "2,2", ccd: 13}
  - {raft: "1,0", ccd: 1.5, good: true}
  - {raft: "0,0"}
  - {ccd: "x"}
`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := mapper.Assign(m, slices(2))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ccd=12,raft=2,2 ccd=13,raft=2,2 ccd=1.5,good=true,raft=1,0",
		"raft=0,0 ccd=x",
	}
	if !reflect.DeepEqual(ids(got), want) {
		t.Errorf("got  %q\nwant %q", ids(got), want)
	}
	if kl, ok := m.(mapper.KeyLister); !ok || !reflect.DeepEqual(kl.Keys(), []string{"ccd", "good", "raft"}) {
		t.Errorf("list mapper keys wrong or missing: %v", m)
	}
	if e, ok := m.(mapper.Enumerator); !ok || len(e.DataIDs()) != 5 {
		t.Errorf("list mapper DataIDs wrong or missing")
	}
}

func TestListErrors(t *testing.T) {
	tests := []struct{ settings, want string }{
		{"ids: {ccd: 1}", "list: ids must be a non-empty list of mappings"},
		{"ids: []", "list: ids must be a non-empty list of mappings"},
		{"ids: ccd", "list: ids must be a non-empty list of mappings"},
		{"ids: [{ccd: 1}, 5]", "list: ids[1] must be a non-empty mapping such as {ccd: 12}, got 5"},
		{"ids: [{}]", "list: ids[0] must be a non-empty mapping such as {ccd: 12}, got map[]"},
		{"ids: [{ccd: 1, raft: a}, {ccd: 2}, {raft: a, ccd: 1}]", "list: ids[2] repeats ids[0] (ccd=1,raft=a)"},
		{"ids: [{ccd: 1}, {ccd: '1'}]", "list: ids[1] repeats ids[0] (ccd=1)"},
		{"ids: [{ccd: [1, 2]}]", "list: ids[0].ccd must be a string or number, got [1 2]"},
		{"ids: [{ccd: {a: 1}}]", "list: ids[0].ccd must be a string or number, got map[a:1]"},
		{"ids: [{ccd: null}]", "list: ids[0].ccd must be a string or number, got <nil>"},
	}
	for _, tt := range tests {
		m, err := newMapper(t, "list", tt.settings)
		if err == nil {
			t.Errorf("%s: got %v, want error %q", tt.settings, m, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("%s: error %q, want %q", tt.settings, err, tt.want)
		}
	}
}

// fake is a mapper whose assignment is given by the test.
type fake struct {
	assign [][]mapper.DataID
	err    error
}

func (f fake) Assign([]mapper.HostInfo) ([][]mapper.DataID, error) { return f.assign, f.err }

// fakeEnum is a fake that also lists the data IDs it should place.
type fakeEnum struct {
	fake
	all []mapper.DataID
}

func (f fakeEnum) DataIDs() []mapper.DataID { return f.all }

func ccd(n int) mapper.DataID { return mapper.DataID{"ccd": fmt.Sprint(n)} }

func TestCheck(t *testing.T) {
	hs := []mapper.HostInfo{{Rank: 1}, {Rank: 2}, {Rank: 3}}
	var manyIDs []mapper.DataID
	for i := 1; i <= 8; i++ {
		manyIDs = append(manyIDs, ccd(i))
	}
	tests := []struct {
		name string
		m    mapper.DataMapper
		want string // "" for no error
	}{
		{
			name: "good",
			m:    fakeEnum{fake{assign: [][]mapper.DataID{{ccd(1)}, {ccd(2), ccd(3)}, nil}}, []mapper.DataID{ccd(1), ccd(2), ccd(3)}},
		},
		{
			name: "assigned twice",
			m:    fake{assign: [][]mapper.DataID{{ccd(1)}, {ccd(2)}, {ccd(3), ccd(1)}}},
			want: `mapper: data ID "ccd=1" assigned twice (to the slices at rank 1 and rank 3)`,
		},
		{
			name: "assigned twice to one slice",
			m:    fake{assign: [][]mapper.DataID{nil, {ccd(2), ccd(2)}, nil}},
			want: `mapper: data ID "ccd=2" assigned twice (to the slices at rank 2 and rank 2)`,
		},
		{
			name: "never placed",
			m:    fakeEnum{fake{assign: [][]mapper.DataID{{ccd(1)}, nil, {ccd(3)}}}, []mapper.DataID{ccd(1), ccd(2), ccd(3)}},
			want: `mapper: 3 slices could not place data IDs ccd=2`,
		},
		{
			name: "many never placed",
			m:    fakeEnum{fake{assign: [][]mapper.DataID{nil, {ccd(4)}, nil}}, manyIDs},
			want: `mapper: 3 slices could not place data IDs ccd=1; ccd=2; ccd=3; ccd=5; ccd=6 and 2 more`,
		},
		{
			name: "wrong number of lists",
			m:    fake{assign: [][]mapper.DataID{{ccd(1)}, {ccd(2)}}},
			want: `mapper: assigned data to 2 slices, but there are 3`,
		},
		{
			name: "the mapper fails",
			m:    fake{err: fmt.Errorf("no table")},
			want: `mapper: no table`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mapper.Assign(tt.m, hs)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Assign: %v", err)
				}
				if len(got) != len(hs) {
					t.Errorf("got %d lists", len(got))
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Errorf("Assign error = %v, want %q", err, tt.want)
			}
			if got != nil {
				t.Errorf("Assign returned %v with an error", got)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	names := mapper.Names()
	if !sort.StringsAreSorted(names) {
		t.Errorf("Names() = %q, not sorted", names)
	}
	for _, want := range []string{"cpu-weighted", "host-table", "list", "range", "rank"} {
		if i := sort.SearchStrings(names, want); i == len(names) || names[i] != want {
			t.Errorf("Names() = %q, lacks %q", names, want)
		}
	}
	f, err := mapper.Lookup("range")
	if err != nil || f.New == nil || f.Doc == "" || len(f.Settings) != 5 {
		t.Errorf("Lookup(range) = %+v, %v", f, err)
	}
	have := strings.Join(names, ", ") // the five built-ins alone, below
	tests := []struct{ name, want string }{
		{"rnage", `mapper: unknown mapper "rnage" (did you mean "range"?) (have: ` + have + `)`},
		{"tract", `mapper: unknown mapper "tract" (have: ` + have + `)`},
		{"", `mapper: unknown mapper "" (have: ` + have + `)`},
	}
	for _, tt := range tests {
		_, err := mapper.Lookup(tt.name)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Lookup(%q) = %v, want %q", tt.name, err, tt.want)
		}
	}
	if len(names) == 5 {
		_, err := mapper.Lookup("rnage")
		if want := `mapper: unknown mapper "rnage" (did you mean "range"?) (have: cpu-weighted, host-table, list, range, rank)`; err.Error() != want {
			t.Errorf("Lookup(rnage) = %q, want %q", err, want)
		}
	}
}

func TestRegisterPanics(t *testing.T) {
	newFake := func(mapper.Values) (mapper.DataMapper, error) { return fake{}, nil }
	tests := []struct {
		name  string
		f     mapper.Factory
		panic string
	}{
		{"", mapper.Factory{New: newFake}, "mapper: Register with an empty name"},
		{"rank", mapper.Factory{New: newFake}, "mapper: Register called twice for rank"},
		{"test-nil-new", mapper.Factory{}, "mapper: Register test-nil-new with a nil New"},
	}
	for _, tt := range tests {
		func() {
			defer func() {
				r := recover()
				if r == nil {
					t.Errorf("Register(%q) did not panic", tt.name)
					return
				}
				if fmt.Sprint(r) != tt.panic {
					t.Errorf("Register(%q) panicked with %q, want %q", tt.name, r, tt.panic)
				}
			}()
			mapper.Register(tt.name, tt.f)
		}()
	}
	if _, err := mapper.Lookup("test-nil-new"); err == nil {
		t.Error("a factory that made Register panic was registered")
	}
}

func TestDataIDString(t *testing.T) {
	tests := []struct {
		id   mapper.DataID
		want string
	}{
		{mapper.DataID{"raft": "2,2", "ccd": "12"}, "ccd=12,raft=2,2"},
		{mapper.DataID{"visit": "1", "b": "x", "a": "y"}, "a=y,b=x,visit=1"},
		{mapper.DataID{"ccd": ""}, "ccd="},
		{mapper.DataID{}, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		for i := 0; i < 5; i++ { // map order varies between calls
			if got := tt.id.String(); got != tt.want {
				t.Fatalf("%#v.String() = %q, want %q", tt.id, got, tt.want)
			}
		}
	}
}

// The range mapper names as neighbours the slices holding the adjacent
// blocks, symmetric and without wrap-around.
func TestRangeNeighbours(t *testing.T) {
	m, err := newMapper(t, "range", "{key: ccd, from: 1, to: 6}")
	if err != nil {
		t.Fatal(err)
	}
	nm, ok := m.(interface {
		Neighbours([]mapper.HostInfo, [][]mapper.DataID) ([][]int, error)
	})
	if !ok {
		t.Fatal("the range mapper names no neighbours")
	}
	hosts := []mapper.HostInfo{{Rank: 1}, {Rank: 2}, {Rank: 3}}
	got, err := mapper.Assign(m, hosts)
	if err != nil {
		t.Fatal(err)
	}
	nb, err := nm.Neighbours(hosts, got)
	if err != nil || fmt.Sprint(nb) != "[[1] [0 2] [1]]" {
		t.Errorf("neighbours %v, %v; want [[1] [0 2] [1]]", nb, err)
	}
}
