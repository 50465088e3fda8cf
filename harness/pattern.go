package harness

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Pattern is a string with {name} placeholders, as used in location maps
// and in the built-in stages' paths, commands and event properties (policy
// files and messages call it a template; it is not the job script's
// templates.Template). Names
// are looked up, in this order, among the built-ins (run, visit, slice,
// stage, pipeline, pipelinedir), the run's locations (input, output,
// scratch, work), the data ID's keys and the clipboard's scalar values.
// "{{" and "}}" stand for literal braces.
type Pattern struct {
	raw   string
	parts []tmplPart
}

type tmplPart struct {
	lit  string
	name string // placeholder when non-empty
}

// Builtin template names, known on every rank.
var builtinNames = []string{"run", "visit", "slice", "stage", "pipeline", "pipelinedir"}

// parsePattern parses s, rejecting unbalanced braces and bad names.
func parsePattern(s string) (Pattern, error) {
	t := Pattern{raw: s}
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			lit.WriteByte('{')
			i++
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte('}')
			i++
		case c == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return Pattern{}, fmt.Errorf("template %q: '{' at offset %d is never closed", s, i)
			}
			name := s[i+1 : i+end]
			if !validName(name) {
				return Pattern{}, fmt.Errorf("template %q: %q is not a valid name (letters, digits, _ . -); write {{ and }} for literal braces", s, name)
			}
			if lit.Len() > 0 {
				t.parts = append(t.parts, tmplPart{lit: lit.String()})
				lit.Reset()
			}
			t.parts = append(t.parts, tmplPart{name: name})
			i += end
		case c == '}':
			return Pattern{}, fmt.Errorf("template %q: '}' at offset %d has no '{' (write }} for a literal brace)", s, i)
		default:
			lit.WriteByte(c)
		}
	}
	if lit.Len() > 0 {
		t.parts = append(t.parts, tmplPart{lit: lit.String()})
	}
	return t, nil
}

// mustPattern is parsePattern for patterns known to be valid.
func mustPattern(s string) Pattern {
	t, err := parsePattern(s)
	if err != nil {
		panic(err)
	}
	return t
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '.' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// String returns the template as written.
func (t Pattern) String() string { return t.raw }

// Names returns the placeholder names in order of appearance, once each.
func (t Pattern) Names() []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range t.parts {
		if p.name != "" && !seen[p.name] {
			seen[p.name] = true
			out = append(out, p.name)
		}
	}
	return out
}

// Expand substitutes every placeholder with lookup's answer.
func (t Pattern) Expand(lookup func(name string) (string, error)) (string, error) {
	if len(t.parts) == 1 && t.parts[0].name == "" {
		return t.parts[0].lit, nil
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.name == "" {
			b.WriteString(p.lit)
			continue
		}
		v, err := lookup(p.name)
		if err != nil {
			return "", fmt.Errorf("template %q: %w", t.raw, err)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// staticPrefix expands the template up to its first placeholder that is
// not in static, and returns that prefix and whether it is the whole
// template (no placeholder changes per visit).
func (t Pattern) staticPrefix(static map[string]string) (string, bool) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.name == "" {
			b.WriteString(p.lit)
			continue
		}
		v, ok := static[p.name]
		if !ok {
			return b.String(), false
		}
		b.WriteString(v)
	}
	return b.String(), true
}

// locationNames are the keys of a policy's location map.
var locationNames = []string{"input", "output", "scratch", "work"}

// locationMap is a run's location map: where its input is read and its
// output, scratch and work files go. Relative templates resolve against the
// run directory. Every path a stage builds from a template must stay inside
// the run directory or one of the locations' fixed parts (the directory
// before the first per-visit placeholder); a value substituted into a path
// may not contain '/' or be '..'. A location itself, wherever it is
// expanded (a path, or a value such as an exec stage's argument), stays
// under its own root: its fixed part, or the run directory when that is
// "/".
type locationMap struct {
	runDir string
	tmpls  map[string]Pattern
	bases  []string
	roots  map[string]string // location name -> its root
}

// newLocations builds a location map for a run directory (absolute).
// static holds the names known for the whole run (run, pipeline,
// pipelinedir), used to find each location's fixed part.
func newLocations(runDir string, tmpls map[string]Pattern, static map[string]string) *locationMap {
	l := &locationMap{runDir: filepath.Clean(runDir), tmpls: tmpls, roots: map[string]string{}}
	l.bases = append(l.bases, l.runDir)
	if d := filepath.Clean(static["pipelinedir"]); d != "." && d != "/" && d != l.runDir {
		// The pipeline's own directory (scripts, calibration files).
		l.bases = append(l.bases, filepath.Clean(d))
	}
	for _, name := range locationNames {
		t, ok := tmpls[name]
		if !ok {
			continue
		}
		prefix, whole := t.staticPrefix(static)
		if !whole && !strings.HasSuffix(prefix, "/") {
			// A placeholder cut the last element short ("out/v{visit}"):
			// only its directory is fixed.
			prefix = filepath.Dir(prefix)
		}
		base := l.abs(prefix)
		if base == "/" {
			// A location whose fixed part is the root would allow
			// every path; its paths must then be in the run directory.
			base = l.runDir
		}
		l.roots[name] = base
		if !contains(l.bases, base) {
			l.bases = append(l.bases, base)
		}
	}
	return l
}

// location checks p, the expansion of location name, and returns it
// absolute and clean: it must be its root or under it.
func (l *locationMap) location(name, p string) (string, error) {
	p = l.abs(p)
	root := l.roots[name]
	if root == "" {
		root = l.runDir
	}
	if p != root && !strings.HasPrefix(p, strings.TrimSuffix(root, "/")+"/") {
		return "", fmt.Errorf("%q is outside its root %s", p, root)
	}
	return p, nil
}

// RunDir is the run directory.
func (l *locationMap) RunDir() string { return l.runDir }

func (l *locationMap) abs(p string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(l.runDir, p)
	}
	return filepath.Clean(p)
}

// contain checks that p (absolute, clean) is inside the run directory or a
// location's fixed part.
func (l *locationMap) contain(p string) error {
	for _, b := range l.bases {
		if p == b || strings.HasPrefix(p, b+string(filepath.Separator)) {
			return nil
		}
	}
	return fmt.Errorf("path %q is outside the run directory, the pipeline directory and every location (%s)", p, strings.Join(l.bases, ", "))
}

// safeSegment rejects a substituted value that could move a path
// somewhere else.
func safeSegment(name, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("{%s} is empty, which would change the path's shape", name)
	case v == "." || v == "..":
		return fmt.Errorf("{%s} is %q, which may not appear in a path", name, v)
	case strings.ContainsAny(v, "/\x00"):
		return fmt.Errorf("{%s} is %q, which contains '/' and may not be put into a path", name, v)
	}
	return nil
}
