package site_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/site"
)

func TestExpandHostList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"n1", []string{"n1"}},
		{"n[1-4]", []string{"n1", "n2", "n3", "n4"}},
		{"n[1-4],gpu[01-02]", []string{"n1", "n2", "n3", "n4", "gpu01", "gpu02"}},
		{"n[1-2,7,9-10]", []string{"n1", "n2", "n7", "n9", "n10"}},
		{"n[08-10]", []string{"n08", "n09", "n10"}},
		{"n[8-10]", []string{"n8", "n9", "n10"}},
		{"[1-2]", []string{"1", "2"}},
		{"rack[1-2]-n[1-2]", []string{"rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"}},
		{"n[1-2]x", []string{"n1x", "n2x"}},
		{"a,b,a", []string{"a", "b"}},
		{"n[1-3],n2", []string{"n1", "n2", "n3"}},
		{"login,n[0-1]", []string{"login", "n0", "n1"}},
		{"node-a.example.org", []string{"node-a.example.org"}},
	} {
		got, err := site.ExpandHostList(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ExpandHostList(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestExpandHostListErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"n[1-4", "has '[' without ']'"},
		{"n1-4]", "has ']' without '['"},
		{"n[4-1]", `range "4-1" goes down`},
		{"n[1-x]", `"1-x" is not a number or a range`},
		{"n[]", "empty brackets"},
		{"n[1-2],", "empty host name"},
		{"a,,b", "empty host name"},
		{"n[[1-2]]", "nested '['"},
		{"n[1-2] n3", "contains a space"},
		{"n[0-99999999]", "more than"},
		{"a[0-999]b[0-999]c[0-999]", "more than"},
		{"n[1-2],m[3-", `"m[3-" has '[' without ']'`},
		{"n[1-99999999999999999999]", "too large"},
	} {
		got, err := site.ExpandHostList(tc.in)
		if err == nil {
			t.Errorf("ExpandHostList(%q) = %d names, want an error", tc.in, len(got))
			continue
		}
		if !errors.Is(err, site.ErrHostList) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ExpandHostList(%q): %v; want ErrHostList and %q", tc.in, err, tc.want)
		}
	}
}

func TestCompressHostList(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"n1", "n2", "n3", "n4"}, "n[1-4]"},
		{[]string{"n4", "n1", "n3", "n2"}, "n[1-4]"},
		{[]string{"n1"}, "n1"},
		{[]string{"n1", "n2", "n3", "n5", "n7", "n8"}, "n[1-3,5,7-8]"},
		{[]string{"n1", "n2", "gpu01", "gpu02"}, "n[1-2],gpu[01-02]"},
		{[]string{"n09", "n10"}, "n09,n10"},
		{[]string{"login", "n1", "n2", "login"}, "login,n[1-2]"},
		{[]string{"n1", "n1"}, "n1"},
		{nil, ""},
	} {
		if got := site.CompressHostList(tc.in); got != tc.want {
			t.Errorf("CompressHostList(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestHostListRoundTrip checks on random node sets that expanding a
// compressed list gives the same set back.
func TestHostListRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	prefixes := []string{"n", "gpu", "rack1-n", "x"}
	for i := 0; i < 300; i++ {
		var names []string
		for j := r.IntN(20) + 1; j > 0; j-- {
			p := prefixes[r.IntN(len(prefixes))]
			switch r.IntN(3) {
			case 0:
				names = append(names, fmt.Sprintf("%s%d", p, r.IntN(30)))
			case 1:
				names = append(names, fmt.Sprintf("%s%03d", p, r.IntN(30)))
			default:
				names = append(names, p+"login")
			}
		}
		list := site.CompressHostList(names)
		got, err := site.ExpandHostList(list)
		if err != nil {
			t.Fatalf("%q compressed to %q, which does not expand: %v", names, list, err)
		}
		want := slices.Compact(slices.Sorted(slices.Values(names)))
		if slices.Sort(got); !slices.Equal(got, want) {
			t.Fatalf("%q compressed to %q, which expands to %q", names, list, got)
		}
	}
}
