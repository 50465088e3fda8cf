package state

import (
	"encoding/json"
	"strings"
	"testing"
)

// Each enumeration's names read back as themselves, as text and in JSON;
// the zero value and any other word are refused, the error quoting the
// word and listing the names.
func TestEnumNames(t *testing.T) {
	checkEnum(t, "visit state", visitStates, ParseVisitState)
	checkEnum(t, "job end", jobEnds, ParseJobEnd)
}

func checkEnum[T interface {
	~string
	String() string
	MarshalText() ([]byte, error)
}, P interface {
	*T
	UnmarshalText([]byte) error
}](t *testing.T, what string, names []T, parse func(string) (T, error)) {
	t.Helper()
	first := string(names[0])
	otherCase := strings.ToUpper(first)
	if otherCase == first {
		otherCase = strings.ToLower(first)
	}
	for _, n := range names {
		if n.String() != string(n) {
			t.Errorf("%s %q: String() = %q", what, string(n), n.String())
		}
		b, err := n.MarshalText()
		var back T
		if err != nil || P(&back).UnmarshalText(b) != nil || back != n {
			t.Errorf("%s %q: MarshalText %q, %v; read back %q", what, string(n), b, err, back)
		}
		if p, err := parse(string(n)); err != nil || p != n {
			t.Errorf("%s: parse(%q) = %q, %v", what, string(n), p, err)
		}
		j, err := json.Marshal(map[T]T{n: n})
		want := `{"` + string(n) + `":"` + string(n) + `"}`
		if err != nil || string(j) != want {
			t.Errorf("%s %q: JSON %s, %v; want %s", what, string(n), j, err, want)
		}
	}
	for _, word := range []string{"", otherCase, "unknown"} {
		_, err := parse(word)
		var v T
		uerr := P(&v).UnmarshalText([]byte(word))
		if err == nil || uerr == nil || !strings.Contains(err.Error(), `unknown `+what+` "`+word+`" (have: `+first) {
			t.Errorf("%s: parse(%q): %v; UnmarshalText: %v; want an error quoting it", what, word, err, uerr)
		}
	}
}
