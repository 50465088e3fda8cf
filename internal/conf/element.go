package conf

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxElement is the longest value CheckElement accepts, in bytes: the
// longest file name most file systems allow.
const MaxElement = 255

// CheckElement says why s cannot name one thing in a path and on a command
// line, or returns nil. Visit IDs and the data ID values a mapper's
// settings define are such names: stages put them into paths
// ({visit}, {ccd}) and program arguments. s must be non-empty, at most
// MaxElement bytes of valid UTF-8 without control characters, must not be
// "." or "..", must not contain '/', and must not start with '-' (it would
// read as an option). The error is a phrase to follow the value, such as
// `contains '/'`.
func CheckElement(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("is empty")
	case s == "." || s == "..":
		return fmt.Errorf("is %q, which names a folder in a path", s)
	case !utf8.ValidString(s):
		return fmt.Errorf("is not valid UTF-8")
	case strings.ContainsRune(s, '/'):
		return fmt.Errorf("contains '/', which would make it a path of several folders")
	case strings.HasPrefix(s, "-"):
		return fmt.Errorf("starts with '-', which would read as an option on a command line")
	case len(s) > MaxElement:
		return fmt.Errorf("is %d bytes long, more than the %d a file name may have", len(s), MaxElement)
	}
	if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		return fmt.Errorf("contains the control character %U at byte %d", r, i)
	}
	return nil
}
