package site

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxHosts bounds what ExpandHostList produces, so that a typo such as
// n[1-100000000] is an error rather than an exhausted memory.
const MaxHosts = 1 << 20

// ErrHostList is matched (errors.Is) by every error of ExpandHostList.
var ErrHostList = errors.New("site: bad host list")

// ExpandHostList expands a Slurm host list such as "n[1-4],gpu[01-02]"
// into host names, in the order written: comma-separated expressions, each
// a name with any number of bracket groups of numbers and ranges
// ("rack[1-2]-n[01-03,7]" is the cross product, the last group varying
// fastest). A range keeps the width of its first number when that has a
// leading zero ("[08-10]" gives 08, 09, 10). Repeated names are kept once.
// An empty list is an error, and so is one that expands to more than
// MaxHosts names.
func ExpandHostList(list string) ([]string, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrHostList, list, fmt.Sprintf(format, args...))
	}
	exprs, err := splitHostList(list)
	if err != nil {
		return nil, bad("%v", err)
	}
	var out []string
	seen := map[string]bool{}
	for _, e := range exprs {
		if e == "" {
			return nil, bad("empty host name")
		}
		// Name the expression at fault when there are several.
		at := ""
		if len(exprs) > 1 {
			at = fmt.Sprintf("%q ", e)
		}
		names := []string{""}
		for rest := e; rest != ""; {
			i := strings.IndexByte(rest, '[')
			if i < 0 {
				if strings.ContainsRune(rest, ']') {
					return nil, bad("%shas ']' without '['", at)
				}
				names = appendEach(names, []string{rest})
				break
			}
			if strings.ContainsRune(rest[:i], ']') {
				return nil, bad("%shas ']' without '['", at)
			}
			j := strings.IndexByte(rest[i:], ']')
			if j < 0 {
				return nil, bad("%shas '[' without ']'", at)
			}
			nums, err := expandRanges(rest[i+1 : i+j])
			if err != nil {
				return nil, bad("%s%v", at, err)
			}
			if len(names)*len(nums) > MaxHosts {
				return nil, bad("more than %d hosts", MaxHosts)
			}
			names = appendEach(appendEach(names, []string{rest[:i]}), nums)
			rest = rest[i+j+1:]
		}
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
		if len(out) > MaxHosts {
			return nil, bad("more than %d hosts", MaxHosts)
		}
	}
	return out, nil
}

// splitHostList splits at the commas outside brackets.
func splitHostList(list string) ([]string, error) {
	list = strings.TrimSpace(list)
	if list == "" {
		return nil, errors.New("empty")
	}
	if strings.ContainsAny(list, " \t\n\r") {
		return nil, errors.New("contains a space")
	}
	var out []string
	depth, start := 0, 0
	for i, c := range list {
		switch c {
		case '[':
			depth++
			if depth > 1 {
				return nil, errors.New("nested '['")
			}
		case ']':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, list[start:i])
				start = i + 1
			}
		}
	}
	return append(out, list[start:]), nil
}

// appendEach returns every name of names followed by every suffix.
func appendEach(names, suffixes []string) []string {
	out := make([]string, 0, len(names)*len(suffixes))
	for _, n := range names {
		for _, s := range suffixes {
			out = append(out, n+s)
		}
	}
	return out
}

// expandRanges expands the inside of one bracket group: "1-4,7" or "01-02".
func expandRanges(s string) ([]string, error) {
	if s == "" {
		return nil, errors.New("empty brackets")
	}
	var out []string
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		if !isDigits(lo) || isRange && !isDigits(hi) {
			return nil, fmt.Errorf("%q is not a number or a range such as 1-4", part)
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := a, error(nil)
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%q: number too large", part)
		}
		if b < a {
			return nil, fmt.Errorf("range %q goes down", part)
		}
		if b-a >= MaxHosts || len(out)+b-a >= MaxHosts {
			return nil, fmt.Errorf("more than %d hosts", MaxHosts)
		}
		width := 0
		if len(lo) > 1 && lo[0] == '0' {
			width = len(lo)
		}
		for v := a; v <= b; v++ {
			out = append(out, fmt.Sprintf("%0*d", width, v))
		}
	}
	return out, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// CompressHostList writes host names as a Slurm host list, the inverse of
// ExpandHostList: names that differ only in a trailing number are put in
// one bracket group ("n1 n2 n3 n5" gives "n[1-3,5]"), zero-padded numbers
// keep their width, and groups come in the order their first name
// appears. Repeated names are written once. Expanding the result gives
// the same set of names.
func CompressHostList(names []string) string {
	type group struct {
		prefix string
		width  int // 0: numbers written without padding
		plain  bool
		nums   []int
	}
	var groups []*group
	index := map[string]*group{}
	for _, n := range names {
		i := len(n)
		for i > 0 && n[i-1] >= '0' && n[i-1] <= '9' {
			i--
		}
		digits := n[i:]
		key, g := "", (*group)(nil)
		v, err := strconv.Atoi(digits)
		if digits == "" || err != nil || strings.ContainsAny(n[:i], "[],") {
			key = "plain\x00" + n
			if g = index[key]; g == nil {
				g = &group{prefix: n, plain: true}
			}
		} else {
			width := 0
			if len(digits) > 1 && digits[0] == '0' {
				width = len(digits)
			}
			key = fmt.Sprintf("%s\x00%d", n[:i], width)
			if g = index[key]; g == nil {
				g = &group{prefix: n[:i], width: width}
			}
			g.nums = append(g.nums, v)
		}
		if index[key] == nil {
			index[key] = g
			groups = append(groups, g)
		}
	}
	parts := make([]string, 0, len(groups))
	for _, g := range groups {
		if g.plain {
			parts = append(parts, g.prefix)
			continue
		}
		nums := slices.Compact(slices.Sorted(slices.Values(g.nums)))
		num := func(v int) string { return fmt.Sprintf("%0*d", g.width, v) }
		if len(nums) == 1 {
			parts = append(parts, g.prefix+num(nums[0]))
			continue
		}
		var runs []string
		for i := 0; i < len(nums); {
			j := i
			for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
				j++
			}
			if i == j {
				runs = append(runs, num(nums[i]))
			} else {
				runs = append(runs, num(nums[i])+"-"+num(nums[j]))
			}
			i = j + 1
		}
		parts = append(parts, g.prefix+"["+strings.Join(runs, ",")+"]")
	}
	return strings.Join(parts, ",")
}
