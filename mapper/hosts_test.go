package mapper_test

import (
	"fmt"
	"math/rand/v2"
	"path"
	"reflect"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/mapper"
)

// onNodes returns one HostInfo per node name, at ranks 1..n, each on host
// "h-" + node.
func onNodes(nodes ...string) []mapper.HostInfo {
	hs := make([]mapper.HostInfo, len(nodes))
	for i, n := range nodes {
		hs[i] = mapper.HostInfo{Rank: i + 1, Node: n, Host: "h-" + n, CPUs: 1}
	}
	return hs
}

// withCPUs returns one HostInfo per CPU count, at ranks 1..n.
func withCPUs(cpus ...int) []mapper.HostInfo {
	hs := make([]mapper.HostInfo, len(cpus))
	for i, c := range cpus {
		hs[i] = mapper.HostInfo{Rank: i + 1, Node: fmt.Sprintf("n%d", i), CPUs: c}
	}
	return hs
}

func TestHostTable(t *testing.T) {
	tests := []struct {
		name     string
		settings string
		slices   []mapper.HostInfo
		want     []string
	}{
		{
			name: "node patterns, blocks among the matching slices",
			settings: `hosts:
  - host: n[1-2]
    ids: [{ccd: 1}, {ccd: 2}, {ccd: 3}, {ccd: 4}, {ccd: 5}]
  - {host: "n[3-4]", ids: [{ccd: 6}, {ccd: 7}]}
`,
			slices: onNodes("n1", "n2", "n3", "n4"),
			want:   []string{"ccd=1 ccd=2 ccd=3", "ccd=4 ccd=5", "ccd=6", "ccd=7"},
		},
		{
			name: "host patterns when the node name differs",
			settings: `hosts:
  - {host: node0*, ids: [{ccd: 1}, {ccd: 2}, {ccd: 3}]}
  - {host: "login?", ids: [{ccd: 9}]}
`,
			slices: []mapper.HostInfo{
				{Rank: 1, Host: "node01", Node: "x1"},
				{Rank: 2, Host: "other", Node: "x2"},
				{Rank: 3, Host: "node02", Node: "x3"},
				{Rank: 4, Host: "login1", Node: "x4"},
			},
			want: []string{"ccd=1 ccd=2", "", "ccd=3", "ccd=9"},
		},
		{
			name:     "several slices on one node",
			settings: `hosts: [{host: n1, ids: [{ccd: 1}, {ccd: 2}, {ccd: 3}]}, {host: n2, ids: [{ccd: 4}]}]`,
			slices: []mapper.HostInfo{
				{Rank: 1, LocalRank: 0, Node: "n1"},
				{Rank: 2, LocalRank: 1, Node: "n1"},
				{Rank: 3, LocalRank: 0, Node: "n2"},
				{Rank: 4, LocalRank: 1, Node: "n2"},
			},
			want: []string{"ccd=1 ccd=2", "ccd=3", "ccd=4", ""},
		},
		{
			name: "a slice two entries match gets both, in entry order",
			settings: `hosts:
  - {host: "n*", ids: [{ccd: 1}, {ccd: 2}]}
  - {host: n2, ids: [{ccd: 3}]}
`,
			slices: onNodes("n1", "n2"),
			want:   []string{"ccd=1", "ccd=2 ccd=3"},
		},
		{
			name:     "more matching slices than data IDs",
			settings: `hosts: [{host: "n*", ids: [{ccd: 1}, {ccd: 2}]}]`,
			slices:   onNodes("n1", "n2", "n3"),
			want:     []string{"ccd=1", "ccd=2", ""},
		},
		{
			name: "spread: unmatched data IDs over all slices, after the matched ones",
			settings: `fallback: spread
hosts:
  - {host: n1, ids: [{ccd: 1}]}
  - {host: "gone[0-9]", ids: [{ccd: 2}, {ccd: 3}]}
  - {host: lost, ids: [{ccd: 4}]}
`,
			slices: onNodes("n1", "n2"),
			want:   []string{"ccd=1 ccd=2 ccd=3", "ccd=4"},
		},
		{
			name:     "spread with no matching host at all",
			settings: `{fallback: spread, hosts: [{host: x, ids: [{ccd: 1}, {ccd: 2}, {ccd: 3}]}]}`,
			slices:   onNodes("n1", "n2"),
			want:     []string{"ccd=1 ccd=2", "ccd=3"},
		},
		{
			name:     "spread with more slices than data IDs",
			settings: `{fallback: spread, hosts: [{host: x, ids: [{ccd: 1}]}]}`,
			slices:   onNodes("n1", "n2", "n3"),
			want:     []string{"ccd=1", "", ""},
		},
		{
			name:     "spread unused when everything matches",
			settings: `{fallback: spread, hosts: [{host: n2, ids: [{ccd: 1}, {ccd: 2}]}]}`,
			slices:   onNodes("n1", "n2"),
			want:     []string{"", "ccd=1 ccd=2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newMapper(t, "host-table", tt.settings)
			if err != nil {
				t.Fatal(err)
			}
			got, err := mapper.Assign(m, tt.slices)
			if err != nil {
				t.Fatalf("Assign: %v", err)
			}
			if !reflect.DeepEqual(ids(got), tt.want) {
				t.Errorf("got  %q\nwant %q", ids(got), tt.want)
			}
		})
	}
}

func TestHostTableEnumeratesAndListsKeys(t *testing.T) {
	m, err := newMapper(t, "host-table", `hosts:
  - {host: n1, ids: [{ccd: 1, raft: "2,2"}]}
  - {host: n2, ids: [{visit: 7}, {ccd: 3}]}
`)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := m.(mapper.Enumerator)
	if !ok {
		t.Fatal("host-table is not an Enumerator")
	}
	if got := ids([][]mapper.DataID{e.DataIDs()}); got[0] != "ccd=1,raft=2,2 visit=7 ccd=3" {
		t.Errorf("DataIDs = %q", got[0])
	}
	if kl, ok := m.(mapper.KeyLister); !ok || !reflect.DeepEqual(kl.Keys(), []string{"ccd", "raft", "visit"}) {
		t.Errorf("host-table keys wrong or missing")
	}
	if _, err := mapper.Assign(m, nil); err == nil || err.Error() != "mapper: no slices to assign 3 data IDs to" {
		t.Errorf("Assign to no slices = %v", err)
	}
}

func TestHostTableFallbackError(t *testing.T) {
	tests := []struct {
		name     string
		settings string
		slices   []mapper.HostInfo
		want     string
	}{
		{
			name:     "one entry unmatched",
			settings: `hosts: [{host: n1, ids: [{ccd: 1}]}, {host: "n[3-4]", ids: [{ccd: 5}, {ccd: 6}]}]`,
			slices:   onNodes("n1", "n2"),
			want: `mapper: host-table: hosts[1]: no slice runs on a node or host matching "n[3-4]", for data IDs ccd=5; ccd=6 ` +
				`(the slices run on h-n1, h-n2, n1, n2; fallback: spread would spread these over all slices)`,
		},
		{
			name: "every entry unmatched, the long one cut short",
			settings: `{fallback: error, hosts: [
  {host: a, ids: [{ccd: 1}]},
  {host: b, ids: [{c: 1}, {c: 2}, {c: 3}, {c: 4}, {c: 5}, {c: 6}, {c: 7}]}]}`,
			slices: []mapper.HostInfo{{Rank: 1, Host: "x"}, {Rank: 2}},
			want: `mapper: host-table: hosts[0]: no slice runs on a node or host matching "a", for data IDs ccd=1; ` +
				`hosts[1]: no slice runs on a node or host matching "b", for data IDs c=1; c=2; c=3; c=4; c=5 and 2 more ` +
				`(the slices run on x; fallback: spread would spread these over all slices)`,
		},
		{
			name:     "unnamed hosts",
			settings: `hosts: [{host: a, ids: [{ccd: 1}]}]`,
			slices:   []mapper.HostInfo{{Rank: 1}},
			want: `mapper: host-table: hosts[0]: no slice runs on a node or host matching "a", for data IDs ccd=1 ` +
				`(the slices run on unnamed hosts; fallback: spread would spread these over all slices)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newMapper(t, "host-table", tt.settings)
			if err != nil {
				t.Fatal(err)
			}
			got, err := mapper.Assign(m, tt.slices)
			if err == nil || err.Error() != tt.want {
				t.Errorf("Assign error\n got %v\nwant %s", err, tt.want)
			}
			if got != nil {
				t.Errorf("Assign returned %q with an error", ids(got))
			}
		})
	}
}

func TestHostTableErrors(t *testing.T) {
	tests := []struct{ settings, want string }{
		{"hosts: []", "host-table: hosts must be a non-empty list of entries such as {host: node0*, ids: [{ccd: 1}]}"},
		{"hosts: {host: n1}", "host-table: hosts must be a non-empty list of entries such as {host: node0*, ids: [{ccd: 1}]}"},
		{"hosts: [{host: n1, ids: [{ccd: 1}]}, n2]", "host-table: hosts[1] must be a mapping such as {host: node0*, ids: [{ccd: 1}]}, got n2"},
		{"hosts: [{host: n1, ids: [{ccd: 1}], idz: 2, cpus: 1}]", `host-table: hosts[0]: unknown key "cpus" (an entry has host and ids)`},
		{"hosts: [{ids: [{ccd: 1}]}]", "host-table: hosts[0].host is missing"},
		{"hosts: [{host: '', ids: [{ccd: 1}]}]", "host-table: hosts[0].host must be a non-empty pattern such as node0* or n[1-2], got "},
		{"hosts: [{host: 5, ids: [{ccd: 1}]}]", "host-table: hosts[0].host must be a non-empty pattern such as node0* or n[1-2], got 5"},
		{"hosts: [{host: n1, ids: [{ccd: 1}]}, {host: 'n[1-', ids: [{ccd: 2}]}]", `host-table: hosts[1].host: bad pattern "n[1-": syntax error in pattern`},
		{"hosts: [{host: 'x\\', ids: [{ccd: 2}]}]", `host-table: hosts[0].host: bad pattern "x\\": syntax error in pattern`},
		{"hosts: [{host: n1}]", "host-table: hosts[0].ids must be a non-empty list of mappings"},
		{"hosts: [{host: n1, ids: []}]", "host-table: hosts[0].ids must be a non-empty list of mappings"},
		{"hosts: [{host: n1, ids: [{ccd: 1}, 7]}]", "host-table: hosts[0].ids[1] must be a non-empty mapping such as {ccd: 12}, got 7"},
		{"hosts: [{host: n1, ids: [{ccd: [1]}]}]", "host-table: hosts[0].ids[0].ccd must be a string or number, got [1]"},
		{"hosts: [{host: n1, ids: [{ccd: 1}, {ccd: '1'}]}]", "host-table: hosts[0].ids[1] repeats hosts[0].ids[0] (ccd=1)"},
		{
			"hosts: [{host: n1, ids: [{ccd: 1}, {ccd: 2}]}, {host: n2, ids: [{ccd: 3}]}, {host: n3, ids: [{ccd: 4}, {ccd: 2}]}]",
			"host-table: hosts[2].ids[1] repeats hosts[0].ids[1] (ccd=2)",
		},
		{"{fallback: ignore, hosts: [{host: n1, ids: [{ccd: 1}]}]}", `host-table: fallback must be "error" or "spread", got "ignore"`},
	}
	for _, tt := range tests {
		m, err := newMapper(t, "host-table", tt.settings)
		if err == nil {
			t.Errorf("%s: got %v, want error %q", tt.settings, m, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("%s:\n error %q\n  want %q", tt.settings, err, tt.want)
		}
	}
}

func TestCPUWeighted(t *testing.T) {
	tests := []struct {
		name     string
		settings string
		cpus     []int
		want     []string
	}{
		{
			name:     "exact proportions 4,2,2",
			settings: "{key: ccd, from: 1, to: 8}",
			cpus:     []int{4, 2, 2},
			want:     []string{"ccd=1 ccd=2 ccd=3 ccd=4", "ccd=5 ccd=6", "ccd=7 ccd=8"},
		},
		{
			// Quotas 7.5 and 2.5: floors 7 and 2, and the one left over
			// goes to the first slice on the tie of remainders.
			name:     "3,1 with 10: 8 and 2",
			settings: "{key: ccd, from: 1, to: 10, format: '%02d'}",
			cpus:     []int{3, 1},
			want:     []string{"ccd=01 ccd=02 ccd=03 ccd=04 ccd=05 ccd=06 ccd=07 ccd=08", "ccd=09 ccd=10"},
		},
		{
			// Quotas 3.5, 2.1, 1.4: floors 3, 2, 1 and the one left goes to
			// the largest remainder, 0.5.
			name:     "5,3,2 with 7: 4, 2, 1",
			settings: "{key: ccd, from: 1, to: 7}",
			cpus:     []int{5, 3, 2},
			want:     []string{"ccd=1 ccd=2 ccd=3 ccd=4", "ccd=5 ccd=6", "ccd=7"},
		},
		{
			// Quotas 2.4, 0.8, 0.8: floors 2, 0, 0; the two left go to the
			// later slices, whose remainders are larger.
			name:     "3,1,1 with 4: remainders beat slice order",
			settings: "{key: ccd, from: 1, to: 4}",
			cpus:     []int{3, 1, 1},
			want:     []string{"ccd=1 ccd=2", "ccd=3", "ccd=4"},
		},
		{
			name:     "equal CPUs tie: first slices first",
			settings: "{key: ccd, from: 1, to: 5}",
			cpus:     []int{2, 2, 2},
			want:     []string{"ccd=1 ccd=2", "ccd=3 ccd=4", "ccd=5"},
		},
		{
			// Quotas 1, 0.5, 0.5: the one left goes to slice 2 on the tie.
			name:     "2,1,1 with 2: tie between the later slices",
			settings: "{key: ccd, from: 1, to: 2}",
			cpus:     []int{2, 1, 1},
			want:     []string{"ccd=1", "ccd=2", ""},
		},
		{
			name:     "0 and negative CPUs count as 1",
			settings: "{key: ccd, from: 1, to: 6}",
			cpus:     []int{0, 1, -4},
			want:     []string{"ccd=1 ccd=2", "ccd=3 ccd=4", "ccd=5 ccd=6"},
		},
		{
			name:     "more slices than data IDs",
			settings: "{key: ccd, from: 1, to: 2}",
			cpus:     []int{1, 1, 1, 8},
			want:     []string{"", "", "", "ccd=1 ccd=2"},
		},
		{
			name:     "step",
			settings: "{key: visit, from: 0, to: 10, step: 5}",
			cpus:     []int{1, 2},
			want:     []string{"visit=0", "visit=5 visit=10"},
		},
		{
			name:     "list form",
			settings: `ids: [{raft: "2,2", ccd: 1}, {ccd: 2}, {ccd: 3}, {ccd: 4}]`,
			cpus:     []int{1, 3},
			want:     []string{"ccd=1,raft=2,2", "ccd=2 ccd=3 ccd=4"},
		},
		{
			name:     "one slice",
			settings: "{key: ccd, from: 1, to: 3}",
			cpus:     []int{16},
			want:     []string{"ccd=1 ccd=2 ccd=3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newMapper(t, "cpu-weighted", tt.settings)
			if err != nil {
				t.Fatal(err)
			}
			got, err := mapper.Assign(m, withCPUs(tt.cpus...))
			if err != nil {
				t.Fatalf("Assign: %v", err)
			}
			if !reflect.DeepEqual(ids(got), tt.want) {
				t.Errorf("got  %q\nwant %q", ids(got), tt.want)
			}
		})
	}
}

func TestCPUWeightedEnumeratesAndListsKeys(t *testing.T) {
	tests := []struct {
		settings string
		ids      string
		keys     []string
	}{
		{"{key: ccd, from: 1, to: 3}", "ccd=1 ccd=2 ccd=3", []string{"ccd"}},
		{`ids: [{raft: "2,2", ccd: 1}, {visit: 2}]`, "ccd=1,raft=2,2 visit=2", []string{"ccd", "raft", "visit"}},
	}
	for _, tt := range tests {
		m, err := newMapper(t, "cpu-weighted", tt.settings)
		if err != nil {
			t.Fatal(err)
		}
		e, ok := m.(mapper.Enumerator)
		if !ok {
			t.Fatal("cpu-weighted is not an Enumerator")
		}
		if got := ids([][]mapper.DataID{e.DataIDs()}); got[0] != tt.ids {
			t.Errorf("%s: DataIDs = %q, want %q", tt.settings, got[0], tt.ids)
		}
		if kl, ok := m.(mapper.KeyLister); !ok || !reflect.DeepEqual(kl.Keys(), tt.keys) {
			t.Errorf("%s: keys wrong or missing", tt.settings)
		}
		if _, err := mapper.Assign(m, nil); err == nil || !strings.HasPrefix(err.Error(), "mapper: no slices to assign") {
			t.Errorf("%s: Assign to no slices = %v", tt.settings, err)
		}
	}
}

func TestCPUWeightedErrors(t *testing.T) {
	tests := []struct{ settings, want string }{
		{"{}", "cpu-weighted: give either ids (a list of data IDs) or a range (key, from, to)"},
		{"{ids: [{ccd: 1}], key: ccd, from: 1}", "cpu-weighted: give either ids or a range (key, from, to), not both; got ids and key, from"},
		{"{ids: [{ccd: 1}], step: 2}", "cpu-weighted: give either ids or a range (key, from, to), not both; got ids and step"},
		{"{key: ccd}", "cpu-weighted: a range needs key, from and to; missing from, to"},
		{"{from: 1, to: 3}", "cpu-weighted: a range needs key, from and to; missing key"},
		{"{format: '%02d'}", "cpu-weighted: a range needs key, from and to; missing key, from, to"},
		{"{key: ccd, from: 5, to: 1}", "cpu-weighted: to (1) is less than from (5)"},
		{"{key: ccd, from: 1, to: 5, step: 0}", "cpu-weighted: step must be at least 1, got 0"},
		{"{key: '', from: 1, to: 5}", "cpu-weighted: key must not be empty"},
		{"{key: ccd, from: 1, to: 5, format: '%s'}", `cpu-weighted: format "%s" does not format an integer`},
		{"{key: ccd, from: 0, to: 20000000}", "cpu-weighted: 20000001 values is more than the 10,000,000 allowed"},
		{"ids: []", "cpu-weighted: ids must be a non-empty list of mappings"},
		{"ids: null", "cpu-weighted: ids must be a non-empty list of mappings"},
		{"ids: [{ccd: 1}, 5]", "cpu-weighted: ids[1] must be a non-empty mapping such as {ccd: 12}, got 5"},
		{"ids: [{ccd: 1}, {ccd: '1'}]", "cpu-weighted: ids[1] repeats ids[0] (ccd=1)"},
		{"ids: [{ccd: null}]", "cpu-weighted: ids[0].ccd must be a string or number, got <nil>"},
	}
	for _, tt := range tests {
		m, err := newMapper(t, "cpu-weighted", tt.settings)
		if err == nil {
			t.Errorf("%s: got %v, want error %q", tt.settings, m, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("%s:\n error %q\n  want %q", tt.settings, err, tt.want)
		}
	}
}

// TestHostMappersAlwaysPlaceEverything builds random slices (node names,
// host names, CPUs) and checks, through mapper.Assign and so Check, that
// every data ID is placed exactly once; that host-table puts data on a
// matching slice whenever one exists and fails only when none does; and
// that cpu-weighted's blocks are contiguous and within one of their quota.
func TestHostMappersAlwaysPlaceEverything(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	patterns := []string{"n1", "n[1-2]", "n*", "node0?", "h-*", "zz", "n[!3]"}
	failed, placed := 0, 0 // host-table assignments, to show both cases ran
	for iter := 0; iter < 1000; iter++ {
		// Random slices.
		hs := make([]mapper.HostInfo, 1+r.IntN(9))
		for i := range hs {
			hs[i] = mapper.HostInfo{
				Rank: i + 1,
				Node: fmt.Sprintf("n%d", r.IntN(4)),
				Host: []string{"", "node01", "node02", "h-x"}[r.IntN(4)],
				CPUs: r.IntN(10) - 2,
			}
		}

		// host-table over random entries, with each fallback.
		var b strings.Builder
		b.WriteString("hosts:\n")
		next := 0
		var entries [][2]any // pattern, number of IDs
		for e := 0; e < 1+r.IntN(4); e++ {
			p, n := patterns[r.IntN(len(patterns))], 1+r.IntN(6)
			fmt.Fprintf(&b, "  - host: %q\n    ids:\n", p)
			for k := 0; k < n; k++ {
				fmt.Fprintf(&b, "      - {ccd: %d}\n", next)
				next++
			}
			entries = append(entries, [2]any{p, n})
		}
		for _, fb := range []string{"error", "spread"} {
			settings := "fallback: " + fb + "\n" + b.String()
			m, err := newMapper(t, "host-table", settings)
			if err != nil {
				t.Fatalf("%s: %v", settings, err)
			}
			got, err := mapper.Assign(m, hs)
			unmatched := false
			for _, e := range entries {
				if !anyMatch(e[0].(string), hs) {
					unmatched = true
				}
			}
			if fb == "error" && unmatched {
				if err == nil || !strings.Contains(err.Error(), "no slice runs on a node or host matching") {
					t.Fatalf("%s\nslices %+v: Assign = %q, %v; want an unmatched error", settings, hs, ids(got), err)
				}
				failed++
				continue
			}
			if err != nil {
				t.Fatalf("%s\nslices %+v: %v", settings, hs, err)
			}
			placed++
			// Each ID of a matched entry sits on a matching slice.
			id := 0
			where := map[string]int{}
			for i, l := range got {
				for _, d := range l {
					where[d.String()] = i
				}
			}
			for _, e := range entries {
				p := e[0].(string)
				for k := 0; k < e[1].(int); k++ {
					i := where[fmt.Sprintf("ccd=%d", id)]
					if anyMatch(p, hs) && !match(p, hs[i]) {
						t.Fatalf("%s\nslices %+v: ccd=%d on slice %d, which %q does not match", settings, hs, id, i, p)
					}
					id++
				}
			}
		}

		// cpu-weighted over a random range.
		n := r.IntN(30)
		if n == 0 {
			continue
		}
		m, err := newMapper(t, "cpu-weighted", fmt.Sprintf("{key: ccd, from: 1, to: %d}", n))
		if err != nil {
			t.Fatal(err)
		}
		got, err := mapper.Assign(m, hs)
		if err != nil {
			t.Fatalf("cpu-weighted, %d IDs, slices %+v: %v", n, hs, err)
		}
		total := 0
		for _, h := range hs {
			total += max(h.CPUs, 1)
		}
		next = 1
		for i, l := range got {
			w := max(hs[i].CPUs, 1)
			lo := n * w / total // floor of the quota
			if len(l) != lo && len(l) != lo+1 {
				t.Fatalf("cpu-weighted, %d IDs, slices %+v: slice %d got %d, quota %d/%d", n, hs, i, len(l), n*w, total)
			}
			if len(l) == lo+1 && n*w%total == 0 {
				t.Fatalf("cpu-weighted, %d IDs, slices %+v: slice %d got more than its whole quota %d", n, hs, i, lo)
			}
			for _, d := range l {
				if d["ccd"] != fmt.Sprint(next) {
					t.Fatalf("cpu-weighted, %d IDs, slices %+v: blocks not contiguous: %q", n, hs, ids(got))
				}
				next++
			}
		}
	}
	if failed < 100 || placed < 100 {
		t.Errorf("host-table: %d assignments failed and %d placed everything; the random cases miss one side", failed, placed)
	}
}

func match(p string, h mapper.HostInfo) bool {
	a, _ := path.Match(p, h.Node)
	b, _ := path.Match(p, h.Host)
	return a || b
}

func anyMatch(p string, hs []mapper.HostInfo) bool {
	for _, h := range hs {
		if match(p, h) {
			return true
		}
	}
	return false
}
