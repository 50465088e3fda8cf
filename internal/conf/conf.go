// Package conf holds what every strict configuration reader of the project
// shares: errors that carry file, line and key path; a YAML walker that
// rejects unknown keys and wrong types and collects every problem instead
// of stopping at the first; declared settings (key, kind, default,
// required, doc) checked against a YAML mapping, which can place a
// component's own error at the setting it names; and the rule for names
// that go into paths and command lines (CheckElement). The pipeline
// policy, the mappers' and stages' settings and the site file are all read
// through it.
package conf

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrInvalid marks bad input: every Errors matches it with errors.Is, and
// other errors about bad input wrap it. Nothing has run or changed when it
// is returned.
var ErrInvalid = errors.New("invalid input")

// Error is one problem in a configuration file. It prints as
// "file:line: path: message", leaving out the parts that are unknown.
type Error struct {
	File string
	Line int
	Path string // key path such as stages[2].event.topic
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file, in the order found. Its Error
// joins them one per line. A nil or empty Errors is not an error: use Err.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Is makes every Errors match ErrInvalid.
func (es Errors) Is(target error) bool { return target == ErrInvalid }

// Err returns es as an error, or nil when it is empty.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Sort orders the errors by file and line, keeping the order of errors on
// the same line.
func (es Errors) Sort() {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].File != es[j].File {
			return es[i].File < es[j].File
		}
		return es[i].Line < es[j].Line
	})
}

// Suggest returns ` (did you mean "x"?)` when one of have is close to got,
// else "". It is meant to be appended to an "unknown ..." message.
func Suggest(got string, have []string) string {
	best := Closest(got, have)
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// Closest returns the one of have that is close to got, as Suggest
// proposes it, or "" when none is.
func Closest(got string, have []string) string {
	best, bestD := "", -1
	for _, h := range have {
		d := distance(strings.ToLower(got), strings.ToLower(h))
		// On a tie, prefer a name of the same length (a transposition
		// or a changed letter rather than one missing).
		if bestD < 0 || d < bestD || d == bestD && len(h) == len(got) && len(best) != len(got) {
			best, bestD = h, d
		}
	}
	// Close means at most a third of the letters differ (at least one).
	if best == "" || bestD > max(1, len([]rune(got))/3) {
		return ""
	}
	return best
}

// distance is the optimal string alignment distance of a and b: the
// Levenshtein distance where swapping two neighbouring letters counts as
// one edit.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// Have formats a sorted list of names for "unknown x (have: a, b, c)".
func Have(names []string) string {
	s := append([]string(nil), names...)
	sort.Strings(s)
	if len(s) == 0 {
		return "(have: none)"
	}
	return "(have: " + strings.Join(s, ", ") + ")"
}
