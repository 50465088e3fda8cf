package conf

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Kind is the type of a declared setting.
type Kind string

// The kinds a setting may have, with the Go type each decodes to.
const (
	String    Kind = "string"          // string
	Int       Kind = "int"             // int
	Float     Kind = "float"           // float64
	Bool      Kind = "bool"            // bool
	Duration  Kind = "duration"        // time.Duration
	Strings   Kind = "list of strings" // []string
	StringMap Kind = "map of strings"  // []Pair, in the file's order
	Any       Kind = "any"             // plain YAML values
)

// Pair is one entry of a StringMap setting.
type Pair struct{ Key, Value string }

// Setting declares one key of a component's settings: a stage's or a
// mapper's. Default is used when the key is absent and must be of the
// kind's Go type (see Kind).
type Setting struct {
	Key      string
	Kind     Kind
	Default  any
	Required bool
	Doc      string
}

// Describe formats a setting for help listings: "key (kind, default x): doc".
func (s Setting) Describe() string {
	attrs := []string{string(s.Kind)}
	if s.Required {
		attrs = append(attrs, "required")
	}
	if s.Default != nil {
		attrs = append(attrs, fmt.Sprintf("default %v", s.Default))
	}
	return fmt.Sprintf("%s (%s): %s", s.Key, strings.Join(attrs, ", "), s.Doc)
}

// Values holds decoded settings with defaults filled in. Its getters return
// the zero value for a key that was not declared.
type Values struct {
	vals  map[string]any
	set   map[string]bool
	nodes map[string]*yaml.Node // each given key's value, for Locate
}

// NewValues builds Values from plain values, for tests and for code that
// constructs components without a file.
func NewValues(m map[string]any) Values {
	v := Values{vals: map[string]any{}, set: map[string]bool{}}
	for k, x := range m {
		v.vals[k], v.set[k] = x, true
	}
	return v
}

func (v Values) String(k string) string { s, _ := v.vals[k].(string); return s }
func (v Values) Int(k string) int       { i, _ := v.vals[k].(int); return i }
func (v Values) Float(k string) float64 { f, _ := v.vals[k].(float64); return f }
func (v Values) Bool(k string) bool     { b, _ := v.vals[k].(bool); return b }
func (v Values) Duration(k string) time.Duration {
	d, _ := v.vals[k].(time.Duration)
	return d
}
func (v Values) Strings(k string) []string { s, _ := v.vals[k].([]string); return s }
func (v Values) Pairs(k string) []Pair     { p, _ := v.vals[k].([]Pair); return p }
func (v Values) Raw(k string) any          { return v.vals[k] }

// Has reports whether the key was given (not defaulted).
func (v Values) Has(k string) bool { return v.set[k] }

// Settings decodes n (a mapping; nil or null for none) against specs,
// reporting unknown keys, wrong kinds and missing required keys at path.
func (d *Decoder) Settings(n *yaml.Node, path string, specs []Setting) Values {
	n = deref(n)
	v := Values{vals: map[string]any{}, set: map[string]bool{}, nodes: map[string]*yaml.Node{}}
	for _, s := range specs {
		if s.Default != nil {
			v.vals[s.Key] = s.Default
		}
	}
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		for _, s := range specs {
			if s.Required {
				d.Errorf(n, Join(path, s.Key), "required key is missing")
			}
		}
		return v
	}
	fields := map[string]Field{}
	for _, s := range specs {
		fields[s.Key] = Field{Required: s.Required, Decode: func(n *yaml.Node, p string) {
			v.nodes[s.Key] = n
			if x, ok := d.kind(n, p, s.Kind); ok {
				v.vals[s.Key], v.set[s.Key] = x, true
			}
		}}
	}
	d.Map(n, path, fields)
	return v
}

func (d *Decoder) kind(n *yaml.Node, path string, k Kind) (any, bool) {
	before := len(d.Errs)
	var v any
	switch k {
	case String:
		v = d.String(n, path)
	case Int:
		v = d.Int(n, path)
	case Float:
		v = d.Float(n, path)
	case Bool:
		v = d.Bool(n, path)
	case Duration:
		v = d.Duration(n, path)
	case Strings:
		v = d.Strings(n, path)
	case StringMap:
		m, keys := d.StringMap(n, path)
		ps := make([]Pair, len(keys))
		for i, key := range keys {
			ps[i] = Pair{key, m[key]}
		}
		v = ps
	default:
		v = d.Any(n, path)
	}
	return v, len(d.Errs) == before
}

// Locate finds the setting that an error message from a component's
// constructor is about. Constructors start such a message with the key
// path within the settings, followed by ": " or a space: "timeout must
// be positive", "command[1]: ...", "env.HOME: ...", "ids[3].ccd ...".
// Locate returns that path, the line of the value it names (the deepest
// list item or mapping value of the file that the path reaches), and the
// message without the path when ": " followed it. ok is false when the
// message starts with no key the settings were given.
func (v Values) Locate(msg string) (path string, line int, rest string, ok bool) {
	end := strings.IndexAny(msg, " :")
	if end <= 0 {
		return "", 0, msg, false
	}
	path, rest = msg[:end], msg[end:]
	key := path
	if i := strings.IndexAny(key, ".["); i >= 0 {
		key = key[:i]
	}
	n, given := v.nodes[key]
	if !given {
		return "", 0, msg, false
	}
	line = valueLine(deref(n), path[len(key):])
	if r, cut := strings.CutPrefix(rest, ": "); cut {
		rest = r
	} else {
		rest = msg
	}
	return path, line, rest, true
}

// valueLine follows sub, a path such as "[2].name" or ".HOME", from n as
// far as the file's nodes go, and returns the line of the last node
// reached.
func valueLine(n *yaml.Node, sub string) int {
	for sub != "" && n != nil {
		var next *yaml.Node
		switch {
		case sub[0] == '[':
			j := strings.IndexByte(sub, ']')
			if j < 0 {
				return n.Line
			}
			i, err := strconv.Atoi(sub[1:j])
			if err == nil && n.Kind == yaml.SequenceNode && i >= 0 && i < len(n.Content) {
				next = n.Content[i]
			}
			sub = sub[j+1:]
		case sub[0] == '.':
			sub = sub[1:]
			j := strings.IndexAny(sub, ".[")
			if j < 0 {
				j = len(sub)
			}
			key := sub[:j]
			if n.Kind == yaml.MappingNode {
				for k := 0; k+1 < len(n.Content); k += 2 {
					if n.Content[k].Value == key {
						next = n.Content[k+1]
					}
				}
			}
			sub = sub[j:]
		default:
			return n.Line
		}
		if next == nil {
			return n.Line
		}
		n = deref(next)
	}
	return n.Line
}
