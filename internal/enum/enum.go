// Package enum reads the words of the project's string-typed
// enumerations (a visit's state, how a job ended, a run's outcome): each
// type has a fixed set of names, and a word outside it is an error that
// quotes the word and lists the names. It knows nothing of what the words
// mean.
package enum

import (
	"fmt"
	"strings"
)

// Parse returns the one of names that is word, or an error saying
// "unknown WHAT "word" (have: a, b, ...)".
func Parse[T ~string](what, word string, names []T) (T, error) {
	have := make([]string, len(names))
	for i, n := range names {
		if string(n) == word {
			return n, nil
		}
		have[i] = string(n)
	}
	return "", fmt.Errorf("unknown %s %q (have: %s)", what, word, strings.Join(have, ", "))
}
