package mapper

// This file holds the mappers that place data by what the slices report
// about where they run (HostInfo): host-table, for data locality, and
// cpu-weighted. Both register in builtin.go's init.

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// The values of host-table's fallback setting.
const (
	fallbackError  = "error"
	fallbackSpread = "spread"
)

// hostEntry is one entry of a host table: data IDs for the slices whose
// node or host name matches pattern.
type hostEntry struct {
	pattern string
	ids     []DataID
}

// matches reports whether the slice h runs on a node or host that the
// entry's pattern matches. The pattern was checked when the entry was made.
func (e hostEntry) matches(h HostInfo) bool {
	ok, _ := path.Match(e.pattern, h.Node)
	if !ok {
		ok, _ = path.Match(e.pattern, h.Host)
	}
	return ok
}

// hostTable places each entry's data IDs on the slices that match its
// pattern, in contiguous blocks (see blocks) in slice order. A slice that
// several entries match gets the data IDs of each, in entry order. Data IDs
// of entries that match no slice make Assign fail or, with spread, are
// split in blocks over all slices after the matched ones.
type hostTable struct {
	entries []hostEntry
	spread  bool
	ids     []DataID // every entry's, in entry order
	keys    []string
	origins
}

func newHostTable(v Values) (DataMapper, error) {
	fb := v.String("fallback")
	if fb != fallbackError && fb != fallbackSpread {
		return nil, fmt.Errorf("host-table: fallback must be %q or %q, got %q", fallbackError, fallbackSpread, fb)
	}
	raw, ok := v.Raw("hosts").([]any)
	if !ok || len(raw) == 0 {
		return nil, fmt.Errorf("host-table: hosts must be a non-empty list of entries such as {host: node0*, ids: [{ccd: 1}]}")
	}
	m := &hostTable{spread: fb == fallbackSpread}
	s := newIDSet("host-table")
	for i, item := range raw {
		at := fmt.Sprintf("hosts[%d]", i)
		e, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("host-table: %s must be a mapping such as {host: node0*, ids: [{ccd: 1}]}, got %v", at, item)
		}
		var unknown []string
		for k := range e {
			if k != "host" && k != "ids" {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return nil, fmt.Errorf("host-table: %s: unknown key %q (an entry has host and ids)", at, unknown[0])
		}
		h, present := e["host"]
		pattern, ok := h.(string)
		switch {
		case !present:
			return nil, fmt.Errorf("host-table: %s.host is missing", at)
		case !ok || pattern == "":
			return nil, fmt.Errorf("host-table: %s.host must be a non-empty pattern such as node0* or n[1-2], got %v", at, h)
		}
		// path.Match checks the whole pattern, even past a mismatch.
		if _, err := path.Match(pattern, ""); err != nil {
			return nil, fmt.Errorf("host-table: %s.host: bad pattern %q: %w", at, pattern, err)
		}
		ids, err := s.add(at+".ids", e["ids"])
		if err != nil {
			return nil, err
		}
		m.entries = append(m.entries, hostEntry{pattern: pattern, ids: ids})
	}
	m.ids, m.keys, m.origins = s.ids, s.sortedKeys(), s.origins()
	return m, nil
}

func (m *hostTable) Assign(slices []HostInfo) ([][]DataID, error) {
	if len(slices) == 0 {
		return nil, fmt.Errorf("no slices to assign %d data IDs to", len(m.ids))
	}
	out := make([][]DataID, len(slices))
	var spread []DataID
	var unmatched []string
	for i, e := range m.entries {
		var on []int // indexes of the matching slices
		for j, h := range slices {
			if e.matches(h) {
				on = append(on, j)
			}
		}
		if len(on) == 0 {
			if m.spread {
				spread = append(spread, e.ids...)
			} else {
				unmatched = append(unmatched, fmt.Sprintf("hosts[%d]: no slice runs on a node or host matching %q, for data IDs %s", i, e.pattern, joinIDs(idStrings(e.ids))))
			}
			continue
		}
		for k, b := range blocks(e.ids, len(on)) {
			out[on[k]] = append(out[on[k]], b...)
		}
	}
	if len(unmatched) > 0 {
		return nil, fmt.Errorf("host-table: %s (the slices run on %s; fallback: spread would spread these over all slices)", strings.Join(unmatched, "; "), hostNames(slices))
	}
	for j, b := range blocks(spread, len(slices)) {
		out[j] = append(out[j], b...)
	}
	return out, nil
}

func (m *hostTable) DataIDs() []DataID { return m.ids }
func (m *hostTable) Keys() []string    { return m.keys }

// hostNames lists the distinct node and host names of slices, sorted.
func hostNames(slices []HostInfo) string {
	seen := map[string]bool{}
	var names []string
	for _, h := range slices {
		for _, n := range []string{h.Node, h.Host} {
			if n != "" && !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	if len(names) == 0 {
		return "unnamed hosts"
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func idStrings(ids []DataID) []string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return s
}

// maxCPUWeight bounds a slice's weight so that weight times the number of
// data IDs cannot overflow.
const maxCPUWeight = 1 << 24

// cpuWeighted splits a fixed list of data IDs into contiguous blocks, in
// slice order, sized in proportion to each slice's CPUs (see weightedCounts).
type cpuWeighted struct{ fixed }

func newCPUWeighted(v Values) (DataMapper, error) {
	var given []string // the range form's keys that were given
	for _, k := range []string{"key", "from", "to", "step", "format"} {
		if v.Has(k) {
			given = append(given, k)
		}
	}
	switch {
	case v.Has("ids") && len(given) > 0:
		return nil, fmt.Errorf("cpu-weighted: give either ids or a range (key, from, to), not both; got ids and %s", strings.Join(given, ", "))
	case v.Has("ids"):
		s := newIDSet("cpu-weighted")
		if _, err := s.add("ids", v.Raw("ids")); err != nil {
			return nil, err
		}
		return cpuWeighted{fixed{ids: s.ids, keys: s.sortedKeys(), origins: s.origins()}}, nil
	case len(given) == 0:
		return nil, fmt.Errorf("cpu-weighted: give either ids (a list of data IDs) or a range (key, from, to)")
	}
	var missing []string
	for _, k := range []string{"key", "from", "to"} {
		if !v.Has(k) {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("cpu-weighted: a range needs key, from and to; missing %s", strings.Join(missing, ", "))
	}
	r, err := rangeOf("cpu-weighted", v)
	if err != nil {
		return nil, err
	}
	return cpuWeighted{r.fixed()}, nil
}

func (m cpuWeighted) Assign(slices []HostInfo) ([][]DataID, error) {
	if len(slices) == 0 {
		return nil, fmt.Errorf("no slices to assign %d data IDs to", len(m.ids))
	}
	out := make([][]DataID, len(slices))
	start := 0
	for i, c := range weightedCounts(len(m.ids), slices) {
		out[i] = m.ids[start : start+c : start+c]
		start += c
	}
	return out, nil
}

// weightedCounts splits n into one count per slice, in proportion to the
// slices' CPUs, by the largest remainder method: each slice gets the whole
// part of its quota n*w/W, and the units left over go one each to the
// slices with the largest remainders, the earlier slice first on a tie.
// The counts sum to n. A slice's weight w is its CPUs, 1 when it reports
// fewer, and at most maxCPUWeight.
func weightedCounts(n int, slices []HostInfo) []int {
	w := make([]int64, len(slices))
	var total int64
	for i, h := range slices {
		w[i] = int64(min(max(h.CPUs, 1), maxCPUWeight))
		total += w[i]
	}
	counts := make([]int, len(slices))
	rem := make([]int64, len(slices))
	left := n
	for i := range w {
		q := int64(n) * w[i]
		counts[i], rem[i] = int(q/total), q%total
		left -= counts[i]
	}
	order := make([]int, len(slices))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return rem[order[a]] > rem[order[b]] })
	for _, i := range order[:left] {
		counts[i]++
	}
	return counts
}

func (m *hostTable) CheckValues() error { return m.origins.check(m.ids) }

var (
	_ ValueChecker = (*hostTable)(nil)
	_ ValueChecker = cpuWeighted{}
	_ Enumerator   = (*hostTable)(nil)
	_ KeyLister    = (*hostTable)(nil)
	_ Enumerator   = cpuWeighted{}
	_ KeyLister    = cpuWeighted{}
)
