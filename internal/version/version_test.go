package version

import (
	"errors"
	"strings"
	"testing"
)

func TestLineRoundTrip(t *testing.T) {
	for _, i := range []Info{
		{Version: "dev"},
		{Version: "1.2.0", Commit: "0123456789abcdef0123456789abcdef01234567"},
		{Version: "1.2.0-rc.1", Commit: "0123abc", Modified: true},
	} {
		got, err := Parse(i.String() + "\n")
		if err != nil || got != i {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", i.String(), got, err, i)
		}
	}
	for _, bad := range []string{"", "true (GNU coreutils) 9.1", "dpsbatch 1.0", "dpsbatch 1.0 (commit xyz)"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) took it", bad)
		}
	}
}

func TestCompatible(t *testing.T) {
	this := Info{Version: "1.2.0", Commit: "aaaa"}
	for _, tc := range []struct {
		other Info
		says  string // "" when compatible
	}{
		{Info{Version: "1.2.0", Commit: "aaaa"}, ""},
		{Info{Version: "1.2.0", Commit: "aaaa", Modified: true}, ""},
		{Info{Version: "1.2.0"}, ""}, // a build that does not know its commit
		{Info{Version: "1.2.0", Commit: "bbbb"}, "built from commit bbbb, this dpsbatch from aaaa"},
		{Info{Version: "1.3.0", Commit: "aaaa"}, "it is version 1.3.0, this dpsbatch is 1.2.0"},
	} {
		err := this.Compatible(tc.other)
		switch {
		case tc.says == "" && err != nil:
			t.Errorf("%+v: %v; want compatible", tc.other, err)
		case tc.says != "" && (!errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), tc.says)):
			t.Errorf("%+v: %v; want ErrIncompatible saying %q", tc.other, err, tc.says)
		}
	}
}
