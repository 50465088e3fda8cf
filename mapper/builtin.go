package mapper

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// The built-in mappers register here, in one place.
func init() {
	Register("rank", Factory{
		Doc: "one data ID per slice, holding the slice's rank",
		Settings: []Setting{
			{Key: "key", Kind: conf.String, Default: "rank", Doc: "name of the data ID key that holds the rank"},
		},
		New: func(v Values) (DataMapper, error) { return rankMapper{key: v.String("key")}, nil },
	})
	Register("range", Factory{
		Doc: "integers from..to (inclusive) under one key, split into contiguous blocks over the slices",
		Settings: []Setting{
			{Key: "key", Kind: conf.String, Required: true, Doc: "name of the data ID key, such as ccd"},
			{Key: "from", Kind: conf.Int, Required: true, Doc: "first value"},
			{Key: "to", Kind: conf.Int, Required: true, Doc: "last value (inclusive)"},
			{Key: "step", Kind: conf.Int, Default: 1, Doc: "increment, at least 1"},
			{Key: "format", Kind: conf.String, Default: "%d", Doc: "Go format of the value, such as %02d"},
		},
		New: newRange,
	})
	Register("list", Factory{
		Doc: "an explicit list of data IDs, split into contiguous blocks over the slices",
		Settings: []Setting{
			{Key: "ids", Kind: conf.Any, Required: true, Doc: "list of data IDs, each a mapping such as {raft: \"2,2\", ccd: 12}"},
		},
		New: newList,
	})
}

type rankMapper struct{ key string }

func (m rankMapper) Assign(slices []HostInfo) ([][]DataID, error) {
	out := make([][]DataID, len(slices))
	for i, h := range slices {
		out[i] = []DataID{{m.key: strconv.Itoa(h.Rank)}}
	}
	return out, nil
}

func (m rankMapper) Keys() []string { return []string{m.key} }

// fixed is a mapper over a fixed list of data IDs.
type fixed struct {
	ids  []DataID
	keys []string
}

func (m fixed) Assign(slices []HostInfo) ([][]DataID, error) {
	if len(slices) == 0 {
		return nil, fmt.Errorf("no slices to assign %d data IDs to", len(m.ids))
	}
	return blocks(m.ids, len(slices)), nil
}

func (m fixed) DataIDs() []DataID { return m.ids }
func (m fixed) Keys() []string    { return m.keys }

func newRange(v Values) (DataMapper, error) {
	key, from, to, step, format := v.String("key"), v.Int("from"), v.Int("to"), v.Int("step"), v.String("format")
	switch {
	case key == "":
		return nil, fmt.Errorf("range: key must not be empty")
	case step < 1:
		return nil, fmt.Errorf("range: step must be at least 1, got %d", step)
	case to < from:
		return nil, fmt.Errorf("range: to (%d) is less than from (%d)", to, from)
	case (to-from)/step >= 10_000_000:
		return nil, fmt.Errorf("range: %d values is more than the 10,000,000 allowed", (to-from)/step+1)
	}
	if s := fmt.Sprintf(format, 1); len(s) == 0 || s[0] == '%' || containsBad(s) {
		return nil, fmt.Errorf("range: format %q does not format an integer", format)
	}
	m := fixed{keys: []string{key}}
	for i := from; i <= to; i += step {
		m.ids = append(m.ids, DataID{key: fmt.Sprintf(format, i)})
	}
	return m, nil
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
	raw, ok := v.Raw("ids").([]any)
	if !ok || len(raw) == 0 {
		return nil, fmt.Errorf("list: ids must be a non-empty list of mappings")
	}
	m := fixed{}
	keys := map[string]bool{}
	seen := map[string]int{}
	for i, item := range raw {
		mm, ok := item.(map[string]any)
		if !ok || len(mm) == 0 {
			return nil, fmt.Errorf("list: ids[%d] must be a non-empty mapping such as {ccd: 12}, got %v", i, item)
		}
		id := DataID{}
		for k, x := range mm {
			switch x := x.(type) {
			case string, int, float64, bool:
				id[k] = fmt.Sprint(x)
			default:
				return nil, fmt.Errorf("list: ids[%d].%s must be a string or number, got %v", i, k, x)
			}
			keys[k] = true
		}
		if j, dup := seen[id.String()]; dup {
			return nil, fmt.Errorf("list: ids[%d] repeats ids[%d] (%s)", i, j, id)
		}
		seen[id.String()] = i
		m.ids = append(m.ids, id)
	}
	for k := range keys {
		m.keys = append(m.keys, k)
	}
	sort.Strings(m.keys)
	return m, nil
}

var (
	_ Enumerator = fixed{}
	_ KeyLister  = fixed{}
	_ KeyLister  = rankMapper{}
)
