package jobs

import (
	"strings"
	"testing"
)

// A run's outcomes read back as themselves; the zero Outcome and any
// other word are refused, the error quoting the word.
func TestOutcomeNames(t *testing.T) {
	for _, o := range outcomes {
		b, err := o.MarshalText()
		var back Outcome
		if err != nil || back.UnmarshalText(b) != nil || back != o || o.String() != string(b) {
			t.Errorf("outcome %q: MarshalText %q, %v; read back %q", string(o), b, err, back)
		}
	}
	for _, word := range []string{"", "Done", "completed"} {
		var o Outcome
		_, err := ParseOutcome(word)
		if err == nil || o.UnmarshalText([]byte(word)) == nil || !strings.Contains(err.Error(), `unknown run outcome "`+word+`" (have: running, pending, done, failed, unfinished)`) {
			t.Errorf("ParseOutcome(%q): %v; want an error quoting it", word, err)
		}
	}
}
