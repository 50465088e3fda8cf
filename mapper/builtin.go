package mapper

import (
	"fmt"
	"hash/maphash"
	"sort"
	"strconv"
	"sync"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/internal/repeats"
)

// The built-in mappers register here, in one place.
func init() {
	Register("rank", Factory{
		Doc: "one data ID per slice, holding the slice's rank (and, with gpu_key, the IDs of its GPUs)",
		Settings: []Setting{
			{Key: "key", Kind: String, Default: "rank", Doc: "name of the data ID key that holds the rank"},
			{Key: "gpu_key", Kind: String, Doc: "name of a data ID key that holds the slice's GPU IDs, such as 0 or 0,1 (empty when it has none); default: no such key"},
		},
		New: newRank,
	})
	Register("range", Factory{
		Doc: "integers from..to (inclusive) under one key, split into contiguous blocks over the slices; for the exchange topology mapper, a slice's neighbours hold the blocks before and after its own",
		Settings: []Setting{
			{Key: "key", Kind: String, Required: true, Doc: "name of the data ID key, such as ccd"},
			{Key: "from", Kind: Int, Required: true, Doc: "first value"},
			{Key: "to", Kind: Int, Required: true, Doc: "last value (inclusive)"},
			{Key: "step", Kind: Int, Default: 1, Doc: "increment, at least 1"},
			{Key: "format", Kind: String, Default: "%d", Doc: "Go format of the value, such as %02d"},
		},
		New: newRange,
	})
	Register("list", Factory{
		Doc: "an explicit list of data IDs, split into contiguous blocks over the slices",
		Settings: []Setting{
			{Key: "ids", Kind: Any, Required: true, Doc: "list of data IDs, each a mapping such as {raft: \"2,2\", ccd: 12}"},
		},
		New: newList,
	})
	Register("host-table", Factory{
		Doc: "data IDs placed by host, for data locality: each entry's data IDs go to the slices whose node or host name matches its pattern, in contiguous blocks",
		Settings: []Setting{
			{Key: "hosts", Kind: Any, Required: true, Doc: "list of entries {host: PATTERN, ids: [{ccd: 1}, ...]}; PATTERN is a shell glob (path.Match) matched against the node name and the host name, such as n[1-2] or node0*"},
			{Key: "fallback", Kind: String, Default: fallbackError, Doc: "for an entry whose pattern matches no slice: error (fail the assignment) or spread (spread its data IDs over all slices)"},
		},
		New: newHostTable,
	})
	Register("cpu-weighted", Factory{
		Doc: "a range (key, from, to, step, format) or a list (ids) of data IDs, split into contiguous blocks sized in proportion to each slice's CPUs",
		Settings: []Setting{
			{Key: "key", Kind: String, Doc: "range form: name of the data ID key, such as ccd"},
			{Key: "from", Kind: Int, Doc: "range form: first value"},
			{Key: "to", Kind: Int, Doc: "range form: last value (inclusive)"},
			{Key: "step", Kind: Int, Default: 1, Doc: "range form: increment, at least 1"},
			{Key: "format", Kind: String, Default: "%d", Doc: "range form: Go format of the value, such as %02d"},
			{Key: "ids", Kind: Any, Doc: "list form, instead of the range: list of data IDs, each a mapping such as {raft: \"2,2\", ccd: 12}"},
		},
		New: newCPUWeighted,
	})
}

type rankMapper struct{ key, gpuKey string }

func newRank(v Values) (DataMapper, error) {
	m := rankMapper{key: v.String("key"), gpuKey: v.String("gpu_key")}
	if m.gpuKey == m.key {
		return nil, fmt.Errorf("rank: gpu_key must differ from key (both %q)", m.key)
	}
	return m, nil
}

func (m rankMapper) Assign(slices []HostInfo) ([][]DataID, error) {
	out := make([][]DataID, len(slices))
	for i, h := range slices {
		id := DataID{m.key: strconv.Itoa(h.Rank)}
		if m.gpuKey != "" {
			id[m.gpuKey] = h.GPUs
		}
		out[i] = []DataID{id}
	}
	return out, nil
}

func (m rankMapper) Keys() []string {
	if m.gpuKey != "" {
		return []string{m.key, m.gpuKey}
	}
	return []string{m.key}
}

// fixed is a mapper over a fixed list of data IDs.
type fixed struct {
	ids  []DataID
	keys []string
	origins
}

func (m fixed) Assign(slices []HostInfo) ([][]DataID, error) {
	if len(slices) == 0 {
		return nil, fmt.Errorf("no slices to assign %d data IDs to", len(m.ids))
	}
	return blocks(m.ids, len(slices)), nil
}

// Neighbours names, for each slice, the slices holding the blocks just
// before and after its own (no wrap-around): the "mapper" exchange
// topology of a pipeline over ordered data, such as strips of sky. It
// satisfies mapper.NeighbourMapper.
func (m fixed) Neighbours(slices []HostInfo, assigned [][]DataID) ([][]int, error) {
	out := make([][]int, len(assigned))
	for i := range assigned {
		if i > 0 {
			out[i] = append(out[i], i-1)
		}
		if i+1 < len(assigned) {
			out[i] = append(out[i], i+1)
		}
	}
	return out, nil
}

func (m fixed) DataIDs() []DataID  { return m.ids }
func (m fixed) Keys() []string     { return m.keys }
func (m fixed) CheckValues() error { return m.origins.check(m.ids) }

// origins says where a mapper's settings define its data IDs, for the
// errors of CheckValues.
type origins struct {
	what   string   // the mapper's name, starting every error
	at     []string // per data ID, the setting that gives it (ids[3]); nil for a range
	format string   // a range's format
}

// check reports the first data ID value that cannot go into a path or a
// command line (conf.CheckElement), naming the setting that defines it.
func (o origins) check(ids []DataID) error {
	for i, id := range ids {
		for _, k := range sortedIDKeys(id) {
			err := conf.CheckElement(id[k])
			switch {
			case err == nil:
				continue
			case o.at != nil:
				return fmt.Errorf("%s: %s.%s: data ID value %q %v", o.what, o.at[i], k, id[k], err)
			case conf.CheckElement(fmt.Sprintf(o.format, 1)) != nil:
				return fmt.Errorf("%s: format: data ID %s=%q: the value %v", o.what, k, id[k], err)
			default: // a negative number
				return fmt.Errorf("%s: from: data ID %s=%q: the value %v (give a format that starts with a letter, such as n%%d)", o.what, k, id[k], err)
			}
		}
	}
	return nil
}

func sortedIDKeys(id DataID) []string {
	keys := make([]string, 0, len(id))
	for k := range id {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func newRange(v Values) (DataMapper, error) {
	return rangeOf("range", v)
}

// rangeMapper is the range mapper: a fixed list of data IDs of one key,
// whose values stay formatted in one string until data IDs are asked for
// (Assign, DataIDs, CheckValues), so that counting a million (Count) and
// a dry assignment of them (DryAssign) make no million maps.
type rangeMapper struct {
	key    string
	values string // every value, one after the other
	ends   []int  // value i ends at ends[i], where value i+1 starts
	made   *madeIDs
	origins
}

// madeIDs holds a rangeMapper's data IDs once made.
type madeIDs struct {
	once sync.Once
	ids  []DataID
}

// rangeOf reads the range settings key, from, to, step and format. Errors
// start with "what: ", the mapper's name.
func rangeOf(what string, v Values) (rangeMapper, error) {
	key, from, to, step, format := v.String("key"), v.Int("from"), v.Int("to"), v.Int("step"), v.String("format")
	switch {
	case key == "":
		return rangeMapper{}, fmt.Errorf("%s: key must not be empty", what)
	case step < 1:
		return rangeMapper{}, fmt.Errorf("%s: step must be at least 1, got %d", what, step)
	case to < from:
		return rangeMapper{}, fmt.Errorf("%s: to (%d) is less than from (%d)", what, to, from)
	case (to-from)/step >= 10_000_000:
		return rangeMapper{}, fmt.Errorf("%s: %d values is more than the 10,000,000 allowed", what, (to-from)/step+1)
	}
	if s := fmt.Sprintf(format, 1); len(s) == 0 || s[0] == '%' || containsBad(s) {
		return rangeMapper{}, fmt.Errorf("%s: format %q does not format an integer", what, format)
	}
	values, ends := formatRange(format, from, step, (to-from)/step+1)
	return rangeMapper{key: key, values: values, ends: ends, made: &madeIDs{}, origins: origins{what: what, format: format}}, nil
}

// formatRange formats the n values from, from+step, ... with format, one
// after the other in one string (a million values are one allocation, not
// a million): value i ends at ends[i].
func formatRange(format string, from, step, n int) (all string, ends []int) {
	buf := make([]byte, 0, n*8)
	ends = make([]int, n)
	for i := range ends {
		if format == "%d" {
			buf = strconv.AppendInt(buf, int64(from+i*step), 10)
		} else {
			buf = fmt.Appendf(buf, format, from+i*step)
		}
		ends[i] = len(buf)
	}
	return string(buf), ends
}

// value is the i'th value of the range.
func (m rangeMapper) value(i int) string {
	start := 0
	if i > 0 {
		start = m.ends[i-1]
	}
	return m.values[start:m.ends[i]]
}

// fixed is the range as a list of data IDs, made at the first call.
func (m rangeMapper) fixed() fixed {
	m.made.once.Do(func() {
		m.made.ids = make([]DataID, len(m.ends))
		for i := range m.made.ids {
			m.made.ids[i] = DataID{m.key: m.value(i)}
		}
	})
	return fixed{ids: m.made.ids, keys: []string{m.key}, origins: m.origins}
}

func (m rangeMapper) Assign(slices []HostInfo) ([][]DataID, error) { return m.fixed().Assign(slices) }

// Neighbours is the neighbours of the range's blocks (fixed.Neighbours).
func (m rangeMapper) Neighbours(slices []HostInfo, assigned [][]DataID) ([][]int, error) {
	return m.fixed().Neighbours(slices, assigned)
}

func (m rangeMapper) DataIDs() []DataID  { return m.fixed().DataIDs() }
func (m rangeMapper) Keys() []string     { return []string{m.key} }
func (m rangeMapper) CheckValues() error { return m.fixed().CheckValues() }
func (m rangeMapper) Count() int         { return len(m.ends) }

// DryAssign says what Assign and then Check would say of an assignment
// to slices (the range in contiguous blocks: no data ID left out, one
// repeated only when the format gives two values the same text), from
// the values alone.
func (m rangeMapper) DryAssign(slices []HostInfo) error {
	n := len(m.ends)
	if len(slices) == 0 {
		return fmt.Errorf("mapper: no slices to assign %d data IDs to", n)
	}
	var h maphash.Hash
	sum := func(i int) uint64 {
		h.Reset()
		h.WriteString(m.key)
		h.WriteByte('=')
		h.WriteString(m.value(i))
		return h.Sum64()
	}
	r, found := repeats.First(n, sum, func(i int) string { return m.key + "=" + m.value(i) })
	if !found {
		return nil
	}
	return assignedTwice(m.key+"="+m.value(r.Later), slices[blockOf(r.First, n, len(slices))], slices[blockOf(r.Later, n, len(slices))])
}

func containsBad(s string) bool {
	for _, r := range s {
		if r == '%' || r == '!' {
			return true
		}
	}
	return false
}

func newList(v Values) (DataMapper, error) {
	s := newIDSet("list")
	if _, err := s.add("ids", v.Raw("ids")); err != nil {
		return nil, err
	}
	return fixed{ids: s.ids, keys: s.sortedKeys(), origins: s.origins()}, nil
}

// idSet gathers data IDs from one or more lists written in settings (plain
// YAML values), rejecting a data ID that any list already gave.
type idSet struct {
	what  string            // the mapper's name, starting every error
	ids   []DataID          // in the order given
	at    []string          // where each was given, such as ids[3]
	keys  map[string]bool   // every key of every data ID
	where map[string]string // data ID (String) -> where it was given, such as ids[3]
}

func newIDSet(what string) *idSet {
	return &idSet{what: what, keys: map[string]bool{}, where: map[string]string{}}
}

// add appends the data IDs of raw, which must be a non-empty list of
// non-empty mappings of strings, numbers or booleans. path names raw in
// errors, such as ids or hosts[2].ids. It returns the new data IDs.
func (s *idSet) add(path string, raw any) ([]DataID, error) {
	list, ok := raw.([]any)
	if !ok || len(list) == 0 {
		return nil, fmt.Errorf("%s: %s must be a non-empty list of mappings", s.what, path)
	}
	start := len(s.ids)
	for i, item := range list {
		at := fmt.Sprintf("%s[%d]", path, i)
		mm, ok := item.(map[string]any)
		if !ok || len(mm) == 0 {
			return nil, fmt.Errorf("%s: %s must be a non-empty mapping such as {ccd: 12}, got %v", s.what, at, item)
		}
		id := DataID{}
		for k, x := range mm {
			switch x := x.(type) {
			case string, int, float64, bool:
				id[k] = fmt.Sprint(x)
			default:
				return nil, fmt.Errorf("%s: %s.%s must be a string or number, got %v", s.what, at, k, x)
			}
		}
		if prev, dup := s.where[id.String()]; dup {
			return nil, fmt.Errorf("%s: %s repeats %s (%s)", s.what, at, prev, id)
		}
		s.where[id.String()] = at
		for k := range id {
			s.keys[k] = true
		}
		s.ids, s.at = append(s.ids, id), append(s.at, at)
	}
	return s.ids[start:], nil
}

func (s *idSet) origins() origins { return origins{what: s.what, at: s.at} }

func (s *idSet) sortedKeys() []string {
	keys := make([]string, 0, len(s.keys))
	for k := range s.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var (
	_ Enumerator   = rangeMapper{}
	_ ValueChecker = rangeMapper{}
	_ KeyLister    = rangeMapper{}
	_ Counter      = rangeMapper{}
	_ DryAssigner  = rangeMapper{}
	_ Enumerator   = fixed{}
	_ ValueChecker = fixed{}
	_ KeyLister    = fixed{}
	_ KeyLister    = rankMapper{}
)
