package mapper_test

import (
	"fmt"
	"math/rand/v2"
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

// checkBefore is Check as it was before it compared hashes: a map of every
// assigned data ID's String. TestCheckAsBefore holds Check to it.
func checkBefore(m mapper.DataMapper, slices []mapper.HostInfo, got [][]mapper.DataID) error {
	if len(got) != len(slices) {
		return fmt.Errorf("mapper: assigned data to %d slices, but there are %d", len(got), len(slices))
	}
	where := map[string]int{}
	for i, ids := range got {
		for _, id := range ids {
			s := id.String()
			if j, dup := where[s]; dup {
				return fmt.Errorf("mapper: data ID %q assigned twice (to the slices at rank %d and rank %d)", s, slices[j].Rank, slices[i].Rank)
			}
			where[s] = i
		}
	}
	if e, ok := m.(mapper.Enumerator); ok {
		var missing []string
		for _, id := range e.DataIDs() {
			if _, ok := where[id.String()]; !ok {
				missing = append(missing, id.String())
			}
		}
		if len(missing) > 0 {
			if len(missing) > 5 {
				return fmt.Errorf("mapper: %d slices could not place data IDs %s and %d more", len(slices), strings.Join(missing[:5], "; "), len(missing)-5)
			}
			return fmt.Errorf("mapper: %d slices could not place data IDs %s", len(slices), strings.Join(missing, "; "))
		}
	}
	return nil
}

// Check gives the answer it gave before (checkBefore) on assignments drawn
// at random from a small pool of data IDs, so that repeats are common:
// IDs of one and of several keys, two that differ as maps but print the
// same ("a=1,b=2"), the empty one; enumerations that are the assignment
// itself (its blocks, or the same maps copied), shuffled, short of some
// IDs or with extra ones.
func TestCheckAsBefore(t *testing.T) {
	pool := []mapper.DataID{
		{"ccd": "1"}, {"ccd": "2"}, {"ccd": "3"}, {"ccd": "10"}, {"raft": "2,2"},
		{"a": "1", "b": "2"}, {"a": "1,b=2"}, {"b": "2", "a": "1"}, {}, nil,
		{"ccd": "1", "raft": "0,0"}, {"x": ""},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(n int) []mapper.DataID {
		out := make([]mapper.DataID, n)
		for i := range out {
			out[i] = pool[rng.IntN(len(pool))]
		}
		return out
	}
	failed := 0
	for c := range 5000 {
		nSlices := rng.IntN(5)
		hosts := make([]mapper.HostInfo, nSlices)
		for i := range hosts {
			hosts[i] = mapper.HostInfo{Rank: rng.IntN(9) + 1}
		}
		list := pick(rng.IntN(9))
		got := make([][]mapper.DataID, nSlices+rng.IntN(4)/3) // now and then one list too many
		rest := list
		for i := range got {
			n := rng.IntN(len(rest) + 1)
			if i == len(got)-1 && rng.IntN(2) == 0 {
				n = len(rest)
			}
			got[i], rest = rest[:n:n], rest[n:]
		}
		var m mapper.DataMapper = fake{assign: got}
		switch rng.IntN(6) {
		case 0: // not an Enumerator
		case 1: // the list itself, whose blocks got holds
			m = fakeEnum{fake{assign: got}, list}
		case 2: // the same data IDs in a list of their own
			m = fakeEnum{fake{assign: got}, append([]mapper.DataID(nil), list...)}
		case 3: // shuffled
			all := append([]mapper.DataID(nil), list...)
			rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
			m = fakeEnum{fake{assign: got}, all}
		default: // other data IDs
			m = fakeEnum{fake{assign: got}, pick(rng.IntN(9))}
		}
		want, err := checkBefore(m, hosts, got), mapper.Check(m, hosts, got)
		if fmt.Sprint(err) != fmt.Sprint(want) {
			t.Errorf("case %d: %d slices, got %v, enumerated %v:\n Check  = %v\n before = %v", c, nSlices, ids(got), m, err, want)
			if failed++; failed == 5 {
				t.FailNow()
			}
		}
	}
}

// The range mapper's values are fmt.Sprintf(format, value) for every value
// from, from+step, ... up to to, whatever the format (it formats "%d"
// itself, the others through fmt, all into one string).
func TestRangeValuesAsSprintf(t *testing.T) {
	tests := []struct {
		format         string
		from, to, step int
	}{
		{"%d", -25, 130, 1}, {"%d", 1, 1000, 7}, {"%02d", -3, 120, 1}, {"c%03d", 0, 2000, 13},
		{"%x", 0, 300, 5}, {"%+d", -5, 5, 2}, {"n%d-raw", 9, 10, 1}, {"%d", 7, 7, 3},
	}
	for _, tt := range tests {
		settings := fmt.Sprintf("{key: k, from: %d, to: %d, step: %d, format: '%s'}", tt.from, tt.to, tt.step, tt.format)
		m, err := newMapper(t, "range", settings)
		if err != nil {
			t.Fatalf("%s: %v", settings, err)
		}
		var want []string
		for v := tt.from; v <= tt.to; v += tt.step {
			want = append(want, "k="+fmt.Sprintf(tt.format, v))
		}
		if got := strings.Fields(ids([][]mapper.DataID{m.(mapper.Enumerator).DataIDs()})[0]); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: data IDs\n got %q\nwant %q", settings, got, want)
		}
	}
}

// A range's dry assignment says what its assignment, checked, says: for
// formats that give every value its own text and one that does not ('%c'
// past the last Unicode character gives U+FFFD each time), over no slice,
// fewer slices than values and more, at varied ranks. Count is the number
// of data IDs.
func TestRangeDryAssignAsAssign(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, settings := range []string{
		"{key: ccd, from: 1, to: 10}", "{key: ccd, from: -7, to: 40, step: 3, format: 'c%03d'}",
		"{key: u, from: 1114105, to: 1114120, format: '%c'}", "{key: v, from: 1, to: 1}",
	} {
		m, err := newMapper(t, "range", settings)
		if err != nil {
			t.Fatal(err)
		}
		if c, n := mapper.Count(m.(mapper.Enumerator)), len(m.(mapper.Enumerator).DataIDs()); c != n {
			t.Errorf("%s: Count %d, want %d", settings, c, n)
		}
		for n := range 20 {
			hosts := make([]mapper.HostInfo, n)
			for i := range hosts {
				hosts[i] = mapper.HostInfo{Rank: rng.IntN(30) + 1}
			}
			_, want := mapper.Assign(m, hosts)
			if got := mapper.AssignDry(m, hosts); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s over %d slices: AssignDry = %v, Assign = %v", settings, n, got, want)
			}
		}
	}
}
