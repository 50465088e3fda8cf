package templates

import (
	"bytes"
	"strings"
)

// Quote returns s as one POSIX shell word that stands for s exactly: bare
// when s is made only of letters, digits and _@%+:,./- (and is not
// empty), else in single quotes, where a single quote is closed, escaped
// and reopened:
//
//	it's  ->  'it'\''s'
//
// A newline inside s is written as '"<newline>"' (out of the single
// quotes, into double quotes and back), so that no line of a script
// starts inside a quoted value: sbatch reads #SBATCH lines and, unless
// told --ignore-pbs, #PBS and #BSUB lines from the start of every line
// among a script's first hundred commands, and a value such as
// "x\n#BSUB -J evil" must not be read as one. The result is still POSIX.
//
// A shell word cannot hold NUL: Quote leaves one in place and the shell
// drops or refuses it, so callers reject NUL first (Render does).
func Quote(s string) string {
	if s != "" && strings.IndexFunc(s, unsafeWord) < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'':
			b.WriteString(`'\''`)
		case '\n':
			b.WriteString("'\"\n\"'")
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// unsafeWord reports whether r needs quoting in a shell word. '=' is
// quoted: bare, a first word FOO=bar would be an assignment, not a
// command.
func unsafeWord(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return false
	}
	return !strings.ContainsRune("_@%+:,./-", r)
}

// quoteArgs quotes each of list with Quote and joins them with spaces:
// the template function args.
func quoteArgs(list []string) string {
	words := make([]string, len(list))
	for i, s := range list {
		words[i] = Quote(s)
	}
	return strings.Join(words, " ")
}

// Directive returns value written the way sbatch's own reader of #SBATCH
// lines reads it back as exactly value, for the rest of an #SBATCH line
// after "--option=" (or as a whole option, "--option=value"). field names
// the Job field the value came from, for the error.
//
// sbatch splits the text after #SBATCH into arguments at unquoted white
// space; a backslash makes the next character literal, inside quotes
// too; '...' and "..." group, and the quote characters are dropped; an
// unquoted # ends the line; a line ends at a newline, whatever the
// quoting. So a value is written bare when it is made of letters, digits
// and _@%+=:,./- only, else between double quotes with \ and " escaped by
// a backslash. Older sbatch releases also blanked the word "packjob"
// anywhere on an #SBATCH line (22.05 does not), and slurmctld's burst
// buffer plugins look for "hetjob" and "packjob" on them: the j of either
// word in a value is written \j, which sbatch reads as j.
//
// A newline, a carriage return or a NUL cannot be placed on an #SBATCH
// line: Directive returns a *FieldError for them, never an altered value.
func Directive(field, value string) (string, error) {
	if i := strings.IndexAny(value, "\n\r\x00"); i >= 0 {
		what := map[byte]string{'\n': "a newline", '\r': "a carriage return", 0: "a NUL byte"}[value[i]]
		return "", &FieldError{Field: field, Msg: what + " cannot be placed on an #SBATCH line"}
	}
	split := splitWords(value)
	if value != "" && len(split) == 0 && strings.IndexFunc(value, unsafeDirective) < 0 {
		return value, nil
	}
	var b strings.Builder
	b.Grow(len(value) + 2 + len(split))
	b.WriteByte('"')
	for i := 0; i < len(value); i++ {
		c := value[i]
		if c == '\\' || c == '"' || len(split) > 0 && split[0] == i {
			b.WriteByte('\\')
			if len(split) > 0 && split[0] == i {
				split = split[1:]
			}
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String(), nil
}

// unsafeDirective reports whether r needs quoting in an #SBATCH value.
func unsafeDirective(r rune) bool { return r != '=' && unsafeWord(r) }

// splitWords returns the offsets of the j of every "hetjob" and "packjob"
// in value, in any case, in increasing order.
func splitWords(value string) []int {
	lower := []byte(value) // ASCII case folding keeps byte offsets
	for i, c := range lower {
		if 'A' <= c && c <= 'Z' {
			lower[i] = c + 'a' - 'A'
		}
	}
	var at []int
	for i := 0; i < len(lower); i++ {
		if lower[i] != 'j' {
			continue
		}
		if bytes.HasSuffix(lower[:i], []byte("het")) || bytes.HasSuffix(lower[:i], []byte("pack")) {
			if bytes.HasPrefix(lower[i:], []byte("job")) {
				at = append(at, i)
			}
		}
	}
	return at
}

// EscapePattern returns path for a Slurm filename pattern (sbatch and
// srun --output, --error, --input) standing for path exactly: every %
// written %%, so that Slurm expands only the patterns the caller adds
// after it (such as /slurm-%j.out). A backslash cannot be escaped: Slurm
// then expands nothing and drops every backslash, so Render refuses an
// Output holding one.
func EscapePattern(path string) string { return strings.ReplaceAll(path, "%", "%%") }
