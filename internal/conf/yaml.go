package conf

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Decoder walks one YAML document and collects every problem as an Error
// naming the file, line and key path. Its methods never stop at the first
// problem: they record it and return the zero value.
type Decoder struct {
	File string
	Errs Errors
}

// ReadFile parses path as a single YAML document and returns its root
// mapping node, or an error naming the file and line.
func ReadFile(path string) (*Decoder, *yaml.Node, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	d := &Decoder{File: path}
	n, err := d.Parse(data)
	return d, n, err
}

// Parse parses data as a single YAML document and returns its root node (a
// document's content, never the document node itself). A syntax error
// names the line that holds the offending text (see syntaxLine).
func (d *Decoder) Parse(data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := syntaxLine(data, err)
		return nil, Errors{{File: d.File, Line: line, Msg: "not valid YAML: " + msg}}
	}
	if len(doc.Content) == 0 {
		return nil, Errors{{File: d.File, Msg: "the file is empty"}}
	}
	return doc.Content[0], nil
}

// maxSyntaxProbes bounds the prefixes syntaxLine parses, so that a huge
// file costs a bounded time; past it the line yaml.v3 gave is kept.
const maxSyntaxProbes = 5000

// syntaxLine finds the line of a YAML syntax error, and returns it with the
// error's message (without yaml.v3's "yaml: line N: " prefix).
//
// yaml.v3 does not report where the offending text is: it names the line
// where the enclosing construct began, counted from 0 for parser errors
// and from 1 for scanner errors, or no line at all when that is the first
// one, so a message usually points at the line before the mistake. The
// offending line is found instead as the first line at which the file
// stops parsing the same way: the shortest prefix of whole lines whose
// parse fails with the very same error as the whole file's. Shorter
// prefixes either parse or fail differently (they end early), since the
// parser has not yet read the text that fails.
func syntaxLine(data []byte, err error) (int, string) {
	full := err.Error()
	line, msg := 0, strings.TrimPrefix(full, "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ":"); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line, msg = n, strings.TrimSpace(rest[i+1:])
			}
		}
	}
	end, probes := 0, 0
	for n := 1; end < len(data) && probes < maxSyntaxProbes; n++ {
		nl := bytes.IndexByte(data[end:], '\n')
		if nl < 0 {
			end = len(data)
		} else {
			end += nl + 1
		}
		if n < line {
			continue // yaml.v3's line is never after the offending one
		}
		probes++
		var doc yaml.Node
		if perr := yaml.Unmarshal(data[:end], &doc); perr != nil && perr.Error() == full {
			return n, msg
		}
	}
	return line, msg
}

// Errorf records a problem at node n (which may be nil) and path.
func (d *Decoder) Errorf(n *yaml.Node, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.Errs = append(d.Errs, &Error{File: d.File, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Field describes one key of a mapping for Map.
type Field struct {
	Required bool
	// Decode is called with the key's value node and its path.
	Decode func(n *yaml.Node, path string)
}

// Join appends a key to a path.
func Join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Index appends a list index to a path.
func Index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// Map checks that n is a mapping whose keys are all in fields, reports
// unknown, duplicate and missing required keys (a missing one only when no
// unknown key was close enough to be taken for it), and calls each field's
// Decode on its value. It reports false when n is not a mapping.
func (d *Decoder) Map(n *yaml.Node, path string, fields map[string]Field) bool {
	n = deref(n)
	if !d.isMap(n, path) {
		return false
	}
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	seen := map[string]bool{}
	suggested := map[string]bool{} // keys an unknown key was taken for
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		key := kn.Value
		f, ok := fields[key]
		switch {
		case !ok:
			d.Errorf(kn, Join(path, key), "unknown key%s; expected one of: %s", Suggest(key, names), strings.Join(names, ", "))
			if c := Closest(key, names); c != "" {
				suggested[c] = true
			}
		case seen[key]:
			d.Errorf(kn, Join(path, key), "duplicate key")
		default:
			seen[key] = true
			if f.Decode != nil {
				f.Decode(vn, Join(path, key))
			}
		}
	}
	for _, k := range sortedKeys(fields) {
		// A required key that a misspelt one was taken for is reported
		// once, by the "did you mean" above.
		if fields[k].Required && !seen[k] && !suggested[k] {
			d.Errorf(n, Join(path, k), "required key is missing")
		}
	}
	return true
}

func sortedKeys(m map[string]Field) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Pairs checks that n is a mapping and returns its key and value nodes in
// order, reporting duplicate keys. It returns nil when n is not a mapping.
func (d *Decoder) Pairs(n *yaml.Node, path string) [][2]*yaml.Node {
	n = deref(n)
	if !d.isMap(n, path) {
		return nil
	}
	var out [][2]*yaml.Node
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn := n.Content[i]
		if seen[kn.Value] {
			d.Errorf(kn, Join(path, kn.Value), "duplicate key")
			continue
		}
		seen[kn.Value] = true
		out = append(out, [2]*yaml.Node{kn, n.Content[i+1]})
	}
	return out
}

func (d *Decoder) isMap(n *yaml.Node, path string) bool {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		d.Errorf(n, path, "expected a mapping of keys to values, got %s", describe(n))
		return false
	}
	return true
}

// List checks that n is a sequence and returns its items.
func (d *Decoder) List(n *yaml.Node, path string) []*yaml.Node {
	n = deref(n)
	if n.Kind != yaml.SequenceNode {
		d.Errorf(n, path, "expected a list, got %s", describe(n))
		return nil
	}
	return n.Content
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func (d *Decoder) scalar(n *yaml.Node, path, want string) bool {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.Errorf(n, path, "expected %s, got %s", want, describe(n))
		return false
	}
	return true
}

// String decodes a string scalar (numbers and booleans written without
// quotes are accepted as their text).
func (d *Decoder) String(n *yaml.Node, path string) string {
	n = deref(n)
	if !d.scalar(n, path, "a string") {
		return ""
	}
	return n.Value
}

// NonEmpty decodes a string scalar that must not be empty.
func (d *Decoder) NonEmpty(n *yaml.Node, path string) string {
	n = deref(n)
	s := d.String(n, path)
	if s == "" && n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		d.Errorf(n, path, "must not be empty")
	}
	return s
}

// Int decodes an integer scalar.
func (d *Decoder) Int(n *yaml.Node, path string) int {
	n = deref(n)
	if !d.scalar(n, path, "an integer") {
		return 0
	}
	v, err := strconv.Atoi(n.Value)
	if err != nil || n.Tag != "!!int" {
		d.Errorf(n, path, "expected an integer, got %q", n.Value)
		return 0
	}
	return v
}

// Float decodes a number scalar.
func (d *Decoder) Float(n *yaml.Node, path string) float64 {
	n = deref(n)
	if !d.scalar(n, path, "a number") {
		return 0
	}
	v, err := strconv.ParseFloat(n.Value, 64)
	if err != nil || (n.Tag != "!!int" && n.Tag != "!!float") {
		d.Errorf(n, path, "expected a number, got %q", n.Value)
		return 0
	}
	return v
}

// MaxGrowth bounds a growth factor (Growth): a bigger one is a typo.
const MaxGrowth = 100

// Growth decodes a grow section, {time: F, memory: F}: the factors by
// which a batch job's successor asks for more time, or more memory, after
// the job ran short of it. Each is a number above 1 and at most
// MaxGrowth; 0 when not given (or wrong, with an error).
func (d *Decoder) Growth(n *yaml.Node, path string) (time, memory float64) {
	factor := func(v *float64) Field {
		return Field{Decode: func(n *yaml.Node, path string) {
			before := len(d.Errs)
			f := d.Float(n, path)
			switch {
			case len(d.Errs) > before:
			case f <= 1 || f > MaxGrowth:
				d.Errorf(n, path, "expected a factor above 1 and at most %d, such as 2 or 1.5, got %v", MaxGrowth, f)
			default:
				*v = f
			}
		}}
	}
	d.Map(n, path, map[string]Field{"time": factor(&time), "memory": factor(&memory)})
	return time, memory
}

// Bool decodes true or false.
func (d *Decoder) Bool(n *yaml.Node, path string) bool {
	n = deref(n)
	if !d.scalar(n, path, "true or false") {
		return false
	}
	if n.Tag != "!!bool" {
		d.Errorf(n, path, "expected true or false, got %q", n.Value)
		return false
	}
	return n.Value == "true" || n.Value == "True" || n.Value == "TRUE"
}

// Duration decodes a Go duration such as 90s, 5m or 1h30m.
func (d *Decoder) Duration(n *yaml.Node, path string) time.Duration {
	n = deref(n)
	if !d.scalar(n, path, "a duration such as 30s or 5m") {
		return 0
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		d.Errorf(n, path, "expected a duration such as 30s or 5m, got %q", n.Value)
		return 0
	}
	if v < 0 {
		d.Errorf(n, path, "must not be negative")
	}
	return v
}

// Strings decodes a list of strings; a single string is accepted as a list
// of one.
func (d *Decoder) Strings(n *yaml.Node, path string) []string {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return []string{n.Value}
	}
	items := d.List(n, path)
	out := make([]string, 0, len(items))
	for i, it := range items {
		out = append(out, d.String(it, Index(path, i)))
	}
	return out
}

// StringMap decodes a mapping of keys to string values, keeping the order
// of the file in keys.
func (d *Decoder) StringMap(n *yaml.Node, path string) (m map[string]string, keys []string) {
	n = deref(n)
	m = map[string]string{}
	for _, p := range d.Pairs(n, path) {
		k := p[0].Value
		m[k] = d.String(p[1], Join(path, k))
		keys = append(keys, k)
	}
	return m, keys
}

// Any decodes any YAML value into plain Go values (string, int, float64,
// bool, []any, map[string]any).
func (d *Decoder) Any(n *yaml.Node, path string) any {
	n = deref(n)
	var v any
	if err := n.Decode(&v); err != nil {
		d.Errorf(n, path, "%v", err)
		return nil
	}
	return v
}

// deref follows YAML aliases (*name) to the node they stand for.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}
