package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Format turns file contents into a clipboard value and back. The input
// and output stages read and write through formats; a Go stage author adds
// one with RegisterFormat (FITS, say) and names it in the stage settings.
type Format struct {
	Name string
	// Extensions (with the dot, such as ".json") that select this format
	// when a stage's format is "auto".
	Extensions []string
	Decode     func(data []byte) (any, error)
	Encode     func(v any) ([]byte, error)
}

var (
	fmtMu   sync.RWMutex
	formats = map[string]Format{}
)

// RegisterFormat makes a persistence format available by name. It panics
// on an empty or duplicate name or missing functions.
func RegisterFormat(f Format) {
	fmtMu.Lock()
	defer fmtMu.Unlock()
	if f.Name == "" || f.Name == "auto" {
		panic(fmt.Sprintf("harness: RegisterFormat with name %q", f.Name))
	}
	if f.Decode == nil || f.Encode == nil {
		panic("harness: RegisterFormat " + f.Name + " without Decode or Encode")
	}
	if _, dup := formats[f.Name]; dup {
		panic("harness: RegisterFormat called twice for " + f.Name)
	}
	formats[f.Name] = f
}

// lookupFormat returns the format registered under name.
func lookupFormat(name string) (Format, error) {
	fmtMu.RLock()
	defer fmtMu.RUnlock()
	f, ok := formats[name]
	if !ok {
		return Format{}, fmt.Errorf("harness: unknown format %q (have: auto, %s)", name, strings.Join(formatNamesLocked(), ", "))
	}
	return f, nil
}

// FormatNames lists the registered formats, sorted.
func FormatNames() []string {
	fmtMu.RLock()
	defer fmtMu.RUnlock()
	return formatNamesLocked()
}

func formatNamesLocked() []string {
	ns := make([]string, 0, len(formats))
	for n := range formats {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

// formatFor resolves a stage's format setting for one path: a named format,
// or for "auto" the format claiming the path's extension, else raw.
func formatFor(name, path string) (Format, error) {
	if name != "auto" {
		return lookupFormat(name)
	}
	ext := strings.ToLower(filepath.Ext(path))
	fmtMu.RLock()
	defer fmtMu.RUnlock()
	for _, n := range formatNamesLocked() {
		for _, e := range formats[n].Extensions {
			if e == ext {
				return formats[n], nil
			}
		}
	}
	return formats["raw"], nil
}

func init() {
	RegisterFormat(Format{
		Name:   "raw",
		Decode: func(b []byte) (any, error) { return b, nil },
		Encode: func(v any) ([]byte, error) {
			switch v := v.(type) {
			case []byte:
				return v, nil
			case string:
				return []byte(v), nil
			}
			return nil, fmt.Errorf("raw format writes []byte or string, got %T", v)
		},
	})
	RegisterFormat(Format{
		Name:       "text",
		Extensions: []string{".txt", ".csv", ".log"},
		Decode:     func(b []byte) (any, error) { return string(b), nil },
		Encode: func(v any) ([]byte, error) {
			if b, ok := v.([]byte); ok {
				return b, nil
			}
			s, err := scalarText("value", v)
			return []byte(s), err
		},
	})
	RegisterFormat(Format{
		Name:       "json",
		Extensions: []string{".json"},
		Decode: func(b []byte) (any, error) {
			var v any
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.UseNumber()
			if err := dec.Decode(&v); err != nil {
				return nil, err
			}
			return plainJSON(v), nil
		},
		Encode: func(v any) ([]byte, error) {
			b, err := json.MarshalIndent(v, "", "  ")
			return append(b, '\n'), err
		},
	})
}

// plainJSON turns json.Number into int (when integral) or float64, so JSON
// values on the clipboard look like YAML and gob values do.
func plainJSON(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil && int64(int(i)) == i {
			return int(i)
		}
		f, _ := v.Float64()
		return f
	case []any:
		for i := range v {
			v[i] = plainJSON(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = plainJSON(v[k])
		}
	}
	return v
}
