package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness/comm"
	"github.com/dpsbatch/dpsbatch/mapper"
)

// Test stages and a test mapper for slice-to-slice exchange. They report
// to the sink of loop_test.go.

// xputStage puts "obj" = "obj-<data ID>" on every clipboard, and "odd" =
// the data ID on clipboards whose ccd is odd. It fails the clipboard of
// data ID fail, and puts a value gob cannot encode on that of data ID bad.
type xputStage struct{ fail, bad string }

type unregistered struct{ A int }

func (s xputStage) Process(cx *Context, cb *Clipboard) error {
	id := cx.DataID().String()
	if id == s.fail {
		return errors.New("deliberate failure in " + id)
	}
	if id == s.bad {
		cb.Put("obj", unregistered{1})
	} else {
		cb.Put("obj", "obj-"+id)
	}
	if c, err := strconv.Atoi(cx.DataID()["ccd"]); err == nil && c%2 == 1 {
		cb.Put("odd", id)
	}
	return nil
}

// xrecordStage records, per clipboard, what it holds under "<key>.neighbours"
// for each key of its settings, then adds an entry to each map: a map
// shared between clipboards would show it on the next one.
type xrecordStage struct{ keys []string }

func (s xrecordStage) Keys() (needs, produces []string) {
	for _, k := range s.keys {
		needs = append(needs, NeighboursKey(k))
	}
	return needs, nil
}

func (s xrecordStage) Process(cx *Context, cb *Clipboard) error {
	parts := []string{cx.DataID().String()}
	for _, k := range s.keys {
		v, ok := cb.Get(NeighboursKey(k))
		m, isMap := v.(map[string]any)
		switch {
		case !ok:
			parts = append(parts, k+":<missing>")
			continue
		case !isMap || m == nil:
			parts = append(parts, fmt.Sprintf("%s:<%T>", k, v))
			continue
		}
		parts = append(parts, k+":"+formatNeighbours(m))
		m["mutated by "+cx.DataID().String()] = true
	}
	sink.add(cx.Visit(), strings.Join(parts, " "))
	return nil
}

func formatNeighbours(m map[string]any) string {
	var es []string
	for id, v := range m {
		es = append(es, fmt.Sprintf("%s=>%v", id, v))
	}
	sort.Strings(es)
	return "{" + strings.Join(es, " | ") + "}"
}

// gridMapper places one data ID {row, col} per slice on a rows x cols
// grid, in row-major order, and names as neighbours the slices up, down,
// left and right. With asym, slice 1 does not list slice 0 back.
type gridMapper struct {
	rows, cols int
	asym       bool
}

func (g gridMapper) DataIDs() []mapper.DataID {
	var out []mapper.DataID
	for i := 0; i < g.rows*g.cols; i++ {
		out = append(out, mapper.DataID{"row": strconv.Itoa(i / g.cols), "col": strconv.Itoa(i % g.cols)})
	}
	return out
}

func (g gridMapper) Keys() []string { return []string{"row", "col"} }

func (g gridMapper) Assign(slices []mapper.HostInfo) ([][]mapper.DataID, error) {
	ids := g.DataIDs()
	if len(slices) != len(ids) {
		return nil, fmt.Errorf("test-grid needs %d slices, got %d", len(ids), len(slices))
	}
	out := make([][]mapper.DataID, len(ids))
	for i, id := range ids {
		out[i] = []mapper.DataID{id}
	}
	return out, nil
}

func (g gridMapper) Neighbours(hosts []mapper.HostInfo, assigned [][]mapper.DataID) ([][]int, error) {
	out := make([][]int, len(hosts))
	for i := range hosts {
		r, c := i/g.cols, i%g.cols
		if r > 0 {
			out[i] = append(out[i], i-g.cols)
		}
		if r < g.rows-1 {
			out[i] = append(out[i], i+g.cols)
		}
		if c > 0 {
			out[i] = append(out[i], i-1)
		}
		if c < g.cols-1 {
			out[i] = append(out[i], i+1)
		}
	}
	if g.asym && len(out) > 1 {
		out[1] = slices.DeleteFunc(out[1], func(j int) bool { return j == 0 })
	}
	return out, nil
}

func init() {
	RegisterStage(Type{Name: "test-xput", Produces: []string{"obj", "odd"},
		Settings: []Setting{{Key: "fail", Kind: String}, {Key: "bad", Kind: String}},
		New:      func(s Settings) (Stage, error) { return xputStage{s.String("fail"), s.String("bad")}, nil }})
	RegisterStage(Type{Name: "test-xrecord", Settings: []Setting{{Key: "keys", Kind: Strings, Required: true}},
		New: func(s Settings) (Stage, error) { return xrecordStage{s.Strings("keys")}, nil }})
	mapper.Register("test-grid", mapper.Factory{
		Doc:      "test: one data ID per slice on a grid; neighbours up, down, left, right",
		Settings: []mapper.Setting{{Key: "rows", Kind: mapper.Int, Required: true}, {Key: "cols", Kind: mapper.Int, Required: true}, {Key: "asym", Kind: mapper.Bool}},
		New: func(v mapper.Values) (mapper.DataMapper, error) {
			return gridMapper{rows: v.Int("rows"), cols: v.Int("cols"), asym: v.Bool("asym")}, nil
		}})
}

func ringPolicy(slices int, extra string) string {
	return fmt.Sprintf(`pipeline: x
slices: %d
mapper: {type: range, settings: {key: ccd, from: 1, to: %d}}
failure: {visit: never}
stages:
  - name: put
    type: test-xput
    exchange: {topology: ring, keys: [obj, odd]}%s
  - name: record
    type: test-xrecord
    settings: {keys: [obj, odd]}
`, slices, 2*slices, extra)
}

// wantRing builds the expected records of xrecordStage for the ring
// tests: slice s holds ccd 2s-1 and 2s; nbrs[s] are its neighbours, as
// the topology defines them (written out by hand in the tests); ccds in
// gone failed before the exchange and send nothing.
func wantRing(nbrs map[int][]int, gone ...int) []string {
	var out []string
	isGone := func(c int) bool {
		for _, g := range gone {
			if g == c {
				return true
			}
		}
		return false
	}
	for s := 1; s <= len(nbrs); s++ {
		var obj, odd []string
		for _, n := range nbrs[s] {
			for _, c := range []int{2*n - 1, 2 * n} {
				if isGone(c) {
					continue
				}
				id := fmt.Sprintf("ccd=%d", c)
				obj = append(obj, fmt.Sprintf("%s=>obj-%s", id, id))
				if c%2 == 1 {
					odd = append(odd, fmt.Sprintf("%s=>%s", id, id))
				}
			}
		}
		sort.Strings(obj)
		sort.Strings(odd)
		for _, c := range []int{2*s - 1, 2 * s} {
			if isGone(c) {
				continue
			}
			out = append(out, fmt.Sprintf("ccd=%d obj:{%s} odd:{%s}", c, strings.Join(obj, " | "), strings.Join(odd, " | ")))
		}
	}
	sort.Strings(out)
	return out
}

func TestExchangeRing(t *testing.T) {
	for _, tc := range []struct {
		slices int
		nbrs   map[int][]int
	}{
		{1, map[int][]int{1: nil}},
		{2, map[int][]int{1: {2}, 2: {1}}},
		{4, map[int][]int{1: {4, 2}, 2: {1, 3}, 3: {2, 4}, 4: {3, 1}}},
	} {
		t.Run(strconv.Itoa(tc.slices), func(t *testing.T) {
			sum, _, err := runYAML(t, ringPolicy(tc.slices, ""), []string{"1", "2"})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Done != 2 || sum.SliceFailureCount != 0 {
				t.Fatalf("done %d, slice failures %d: %+v", sum.Done, sum.SliceFailureCount, sum.SliceFailures)
			}
			want := wantRing(tc.nbrs)
			for _, v := range []string{"1", "2"} {
				if got := sink.sorted(v); strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("visit %s, clipboards hold:\n%s\nwant:\n%s", v, strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
			}
		})
	}
}

func TestExchangeMapperGrid(t *testing.T) {
	policy := `pipeline: x
slices: per-data-id
mapper: {type: test-grid, settings: {rows: 2, cols: 3}}
stages:
  - name: put
    type: test-xput
    exchange: {topology: mapper, keys: obj}
  - name: record
    type: test-xrecord
    settings: {keys: [obj]}
`
	sum, _, err := runYAML(t, policy, []string{"9"})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Done != 1 {
		t.Fatalf("done %d", sum.Done)
	}
	// The grid, by slice index (rank - 1):  0 1 2
	//                                        3 4 5
	cell := func(i int) string { return fmt.Sprintf("col=%d,row=%d", i%3, i/3) }
	nbrs := map[int][]int{0: {1, 3}, 1: {0, 2, 4}, 2: {1, 5}, 3: {0, 4}, 4: {1, 3, 5}, 5: {2, 4}}
	var want []string
	for i := 0; i < 6; i++ {
		var es []string
		for _, j := range nbrs[i] {
			es = append(es, fmt.Sprintf("%s=>obj-%s", cell(j), cell(j)))
		}
		sort.Strings(es)
		want = append(want, fmt.Sprintf("%s obj:{%s}", cell(i), strings.Join(es, " | ")))
	}
	sort.Strings(want)
	if got := sink.sorted("9"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("clipboards hold:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestExchangeAsymmetricMapperStopsBeforeFirstVisit(t *testing.T) {
	policy := `pipeline: x
slices: 6
mapper: {type: test-grid, settings: {rows: 2, cols: 3, asym: true}}
stages:
  - name: put
    type: test-xput
    exchange: {topology: mapper, keys: [obj]}
`
	sum, end, err := runYAML(t, policy, []string{"1"})
	if err == nil {
		t.Fatal("run with an asymmetric neighbour relation succeeded")
	}
	for _, w := range []string{`mapper "test-grid": neighbours`, "slice 0 lists slice 1, but slice 1 does not list slice 0"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	if sum.Visits != 0 || len(end.order) != 0 {
		t.Errorf("%d visits started, want none", sum.Visits)
	}
}

func TestExchangeCheckNeighbours(t *testing.T) {
	for _, tc := range []struct {
		lists [][]int
		want  string
	}{
		{[][]int{{1}, {0}}, ""},
		{[][]int{nil, nil, nil}, ""},
		{[][]int{{1}}, "gave neighbour lists for 1 slices, but there are 2"},
		{[][]int{{0}, nil}, "slice 0 lists itself"},
		{[][]int{{1, 1}, {0}}, "slice 0 lists slice 1 twice"},
		{[][]int{{2}, nil}, "slice 0 lists slice 2, out of range [0,2)"},
		{[][]int{{1}, nil}, "slice 0 lists slice 1, but slice 1 does not list slice 0"},
	} {
		n := 2
		if len(tc.lists) == 3 {
			n = 3
		}
		err := checkNeighbours(tc.lists, n)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.lists, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want %q", tc.lists, err, tc.want)
		}
	}
}

func TestExchangeFailedClipboardSendsNothing(t *testing.T) {
	sum, _, err := runYAML(t, ringPolicy(3, "\n    settings: {fail: ccd=3}"), []string{"1"})
	if !errors.Is(err, ErrVisitsFailed) { // the visit carries on; its failed data ID is the run's outcome
		t.Fatal(err)
	}
	if sum.SliceFailureCount != 1 || sum.SliceFailures[0].DataID != "ccd=3" || sum.SliceFailures[0].Stage != "put" {
		t.Fatalf("slice failures %+v, want ccd=3 in stage put", sum.SliceFailures)
	}
	want := wantRing(map[int][]int{1: {2, 3}, 2: {1, 3}, 3: {1, 2}}, 3)
	if got := sink.sorted("1"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("clipboards hold:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestExchangeUnencodableValueFailsItsClipboard(t *testing.T) {
	sum, _, err := runYAML(t, ringPolicy(2, "\n    settings: {bad: ccd=2}"), []string{"1"})
	if !errors.Is(err, ErrVisitsFailed) {
		t.Fatal(err)
	}
	if sum.SliceFailureCount != 1 {
		t.Fatalf("slice failures %+v, want one", sum.SliceFailures)
	}
	if f := sum.SliceFailures[0]; f.DataID != "ccd=2" || f.Slice != 1 || f.Stage != "put" || !strings.Contains(f.Err, `exchange of key "obj"`) {
		t.Errorf("failure recorded as %+v", f)
	}
	want := wantRing(map[int][]int{1: {2}, 2: {1}}, 2)
	if got := sink.sorted("1"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("clipboards hold:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestExchangePolicyErrors(t *testing.T) {
	base := ringPolicy(2, "")
	if err := loadText(t, base); err != nil {
		t.Fatalf("valid policy rejected:\n%v", err)
	}
	const ex = "    exchange: {topology: ring, keys: [obj, odd]}"
	for _, tc := range []struct {
		name, to string
		want     []string
	}{
		{"unknown topology", "    exchange: {topology: rnig, keys: [obj]}",
			[]string{`pipeline.yaml:8: stages[0].exchange.topology: unknown topology "rnig" (did you mean "ring"?); expected ring or mapper`}},
		{"missing keys", "    exchange: {topology: ring}", []string{"pipeline.yaml:8: stages[0].exchange.keys: required key is missing"}},
		{"missing topology", "    exchange: {keys: [obj]}", []string{"pipeline.yaml:8: stages[0].exchange.topology: required key is missing"}},
		{"empty keys", "    exchange: {topology: ring, keys: []}", []string{"pipeline.yaml:8: stages[0].exchange.keys: must list at least one clipboard key"}},
		{"keys of wrong type", "    exchange: {topology: ring, keys: {obj: 1}}", []string{"pipeline.yaml:8: stages[0].exchange.keys: expected a list, got a mapping"}},
		{"not a mapping", "    exchange: ring", []string{"pipeline.yaml:8: stages[0].exchange: expected a mapping of keys to values"}},
		{"unknown key", "    exchange: {topology: ring, keys: [obj], kyes: [odd]}",
			[]string{"pipeline.yaml:8: stages[0].exchange.kyes: unknown key", `did you mean "keys"?`}},
		{"key listed twice", "    exchange: {topology: ring, keys: [obj, obj]}", []string{`stages[0].exchange.keys[1]: clipboard key "obj" listed twice`}},
		{"key never produced", "    exchange:\n      topology: ring\n      keys: [obj, ob]",
			[]string{`pipeline.yaml:10: stages[0].exchange.keys[1]: stage "put" exchanges clipboard key "ob", which neither it nor an earlier stage`}},
		{"mapper without neighbours", "    exchange: {topology: mapper, keys: [obj]}",
			[]string{`pipeline.yaml:8: stages[0].exchange.topology: topology mapper needs a mapper that names each slice's neighbours; mapper "rank" does not`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.Replace(base, ex, tc.to, 1)
			if tc.name == "mapper without neighbours" { // range names them
				text = strings.Replace(text, "{type: range, settings: {key: ccd, from: 1, to: 4}}", "{type: rank, settings: {key: ccd}}", 1)
			}
			// Record only obj.neighbours, so that a change to what is
			// exchanged makes no second error.
			text = strings.Replace(text, "settings: {keys: [obj, odd]}", "settings: {keys: [obj]}", 1)
			err := loadText(t, text)
			wantOneError(t, err, tc.want...)
		})
	}
}

// A stage that needs "<key>.neighbours" of a key no earlier stage
// exchanges does not validate; after the exchanging stage it does.
func TestExchangeNeighboursKeyIsProduced(t *testing.T) {
	bad := strings.Replace(ringPolicy(2, ""), "    exchange: {topology: ring, keys: [obj, odd]}\n", "", 1)
	err := loadText(t, bad)
	if err == nil || !strings.Contains(err.Error(), `stage "record" needs clipboard key "obj.neighbours"`) {
		t.Errorf("error %v, want one about obj.neighbours", err)
	}
}

func TestExchangeOnSerialStageIsAnError(t *testing.T) {
	policy := testHead + `stages:
  - name: hook
    type: test-hook
    exchange: {topology: ring, keys: [visitId]}
`
	err := loadText(t, policy)
	if err == nil || !strings.Contains(err.Error(), `pipeline.yaml:7: stages[0].exchange: stage type "test-hook" has no Process`) {
		t.Errorf("error %v, want one about a stage without Process", err)
	}
}

// countingComm counts the operations a rank calls.
type countingComm struct {
	comm.Comm
	bcast, gather, exchange atomic.Int32
}

func (c *countingComm) Bcast(root int, data []byte) ([]byte, error) {
	c.bcast.Add(1)
	return c.Comm.Bcast(root, data)
}

func (c *countingComm) Gather(root int, data []byte) ([][]byte, error) {
	c.gather.Add(1)
	return c.Comm.Gather(root, data)
}

func (c *countingComm) Exchange(send map[int][]byte, from []int) (map[int][]byte, error) {
	c.exchange.Add(1)
	return c.Comm.Exchange(send, from)
}

// runRanks runs the policy text on size ranks, each its own goroutine
// calling Run with the communicator mk makes for it (and closing it
// after), and returns the Pipeline's summary and every rank's error.
func runRanks(t *testing.T, policy string, size int, visits []string, mk func(rank int) (comm.Comm, error)) (*Summary, []error) {
	t.Helper()
	sum := newSummary()
	return sum, runRanksRecorded(t, policy, size, visits, mk, sum)
}

// runRanksRecorded is runRanks with rec as the Pipeline's Recorder.
func runRanksRecorded(t *testing.T, policy string, size int, visits []string, mk func(rank int) (comm.Comm, error), rec Recorder) []error {
	t.Helper()
	resetSink()
	dir := t.TempDir()
	path := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(path, LoadOptions{})
	if err != nil {
		t.Fatalf("policy:\n%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	broker := events.NewMemory()
	defer broker.Close()
	var vs []Visit
	for _, v := range visits {
		vs = append(vs, Visit{ID: v})
	}
	if err := publishVisits(ctx, broker, p.Trigger.Topic, "x-run", vs); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, size)
	var wg sync.WaitGroup
	for r := 0; r < size; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := mk(r)
			if err != nil {
				errs[r] = err
				return
			}
			defer c.Close()
			o := RunOptions{Comm: c, Policy: p, RunID: "x-run", RunDir: dir, Host: thisMachine()}
			if r == 0 {
				o.Broker, o.Feed, o.Recorder = broker, true, rec
			}
			_, errs[r] = Run(ctx, o)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("run did not end within 30s")
	}
	return errs
}

// Stages without exchange cost one Bcast and one Gather each (the first
// stage's Bcast is the visit's start) and no Exchange; a stage with
// exchange adds exactly one Exchange per visit on every rank, the
// Pipeline's included.
func TestExchangeCommunicatesOnlyForExchangingStages(t *testing.T) {
	const slices, visits = 3, 2
	for _, tc := range []struct {
		name      string
		stages    string
		parallel  int
		exchanges int
	}{
		{"no exchange", "  - {name: a, type: noop}\n  - {name: b, type: test-xput}\n", 2, 0},
		{"one exchange", "  - {name: a, type: noop}\n  - {name: b, type: test-xput, exchange: {topology: ring, keys: [obj]}}\n", 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eps := comm.NewLocal(slices + 1)
			counted := make([]*countingComm, len(eps))
			for i, c := range eps {
				counted[i] = &countingComm{Comm: c}
			}
			policy := fmt.Sprintf("pipeline: x\nslices: %d\nmapper: {type: range, settings: {key: ccd, from: 1, to: 6}}\nstages:\n%s", slices, tc.stages)
			sum, errs := runRanks(t, policy, slices+1, []string{"1", "2"}, func(r int) (comm.Comm, error) { return counted[r], nil })
			for r, err := range errs {
				if err != nil {
					t.Fatalf("rank %d: %v", r, err)
				}
			}
			if sum.Done != visits {
				t.Fatalf("done %d", sum.Done)
			}
			for r, c := range counted {
				// Bcast: per visit one start and one per parallel stage
				// but the first (the start begins it: a noop), then the
				// stop. Gather: the host infos, then one per parallel
				// stage per visit.
				wantB, wantG, wantX := visits*tc.parallel+1, 1+visits*tc.parallel, visits*tc.exchanges
				if b, g, x := int(c.bcast.Load()), int(c.gather.Load()), int(c.exchange.Load()); b != wantB || g != wantG || x != wantX {
					t.Errorf("rank %d: %d bcasts, %d gathers, %d exchanges; want %d, %d, %d", r, b, g, x, wantB, wantG, wantX)
				}
			}
		})
	}
}

// The exchange path over the TCP communicator: every rank is a goroutine
// with its own TCP endpoint, meeting through a rendezvous directory.
func TestExchangeOverTCP(t *testing.T) {
	const slices = 4
	dir := t.TempDir()
	sum, errs := runRanks(t, ringPolicy(slices, "\n    settings: {fail: ccd=5}"), slices+1, []string{"1", "2"}, func(r int) (comm.Comm, error) {
		return comm.NewTCP(context.Background(), comm.TCPConfig{
			Rank: r, Size: slices + 1, Rendezvous: dir, ListenAddr: "127.0.0.1:0",
			ConnectTimeout: 10 * time.Second, Timeout: 5 * time.Second, Heartbeat: 100 * time.Millisecond,
		})
	})
	for r, err := range errs {
		if err != nil && !(r == 0 && errors.Is(err, ErrVisitsFailed)) {
			t.Errorf("rank %d: %v", r, err)
		}
	}
	if sum.Done != 2 || sum.SliceFailureCount != 2 {
		t.Fatalf("done %d, slice failures %d, want 2 and 2 (ccd=5 in each visit)", sum.Done, sum.SliceFailureCount)
	}
	want := wantRing(map[int][]int{1: {4, 2}, 2: {1, 3}, 3: {2, 4}, 4: {3, 1}}, 5)
	for _, v := range []string{"1", "2"} {
		if got := sink.sorted(v); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("visit %s, clipboards hold:\n%s\nwant:\n%s", v, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}
