package capture

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"sort"
)

// Value is one clipboard item as the harness hands it over.
type Value struct {
	V      any
	Shared bool
}

// EncodeItems encodes a clipboard's items, in key order. An item that
// neither gob nor JSON can encode is in the second list, with why.
func EncodeItems(items map[string]Value) ([]Item, []Unserialisable) {
	keys := make([]string, 0, len(items))
	for k := range items {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Item
	var bad []Unserialisable
	for _, k := range keys {
		it, why := encodeItem(k, items[k])
		if why != "" {
			bad = append(bad, Unserialisable{Key: k, Type: it.Type, Why: why})
			continue
		}
		out = append(out, it)
	}
	return out, bad
}

// encodeItem encodes one item both ways; why is non-empty when neither
// way worked.
func encodeItem(key string, v Value) (Item, string) {
	it := Item{Key: key, Type: fmt.Sprintf("%T", v.V), Shared: v.Shared}
	gobBytes, gerr := encodeGob(v.V)
	jsonBytes, jerr := json.Marshal(v.V)
	if gerr != nil && jerr != nil {
		return it, fmt.Sprintf("gob: %v; json: %v", gerr, jerr)
	}
	it.Gob = gobBytes
	it.JSON = json.RawMessage("null")
	if jerr == nil {
		it.JSON = jsonBytes
	}
	return it, ""
}

// encodeGob encodes v as an interface value, so decoding gives back its
// type (which must be registered with gob: the harness's RegisterType).
func encodeGob(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(&v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Value decodes the item: from gob when it has gob (its Go type back),
// else from JSON (numbers as float64, objects as map[string]any).
func (it Item) Value() (any, error) {
	var v any
	if it.Gob != nil {
		if err := gob.NewDecoder(bytes.NewReader(it.Gob)).Decode(&v); err != nil {
			return nil, fmt.Errorf("capture: item %q (%s): %w", it.Key, it.Type, err)
		}
		return v, nil
	}
	if err := json.Unmarshal(it.JSON, &v); err != nil {
		return nil, fmt.Errorf("capture: item %q (%s): %w", it.Key, it.Type, err)
	}
	return v, nil
}
