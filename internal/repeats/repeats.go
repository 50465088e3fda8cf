// Package repeats finds, among many items (a million visit IDs or data
// IDs), those whose text is that of an earlier item, without a map of a
// million strings: the items are compared by a 64-bit sum of their text,
// sorted, and only those whose sum repeats are compared by text. It knows
// nothing of what the items are, and never reports a repeat that the texts
// do not confirm.
package repeats

import (
	"hash/maphash"
	"slices"
)

// Repeat is an item whose text is that of an earlier one: its index, and
// the index of the first item with that text.
type Repeat struct{ Later, First int }

// All returns every repeat among n items, in the order of the later ones.
// sum(i) is a 64-bit hash of item i's text (equal texts, equal sums);
// text(i) is asked only of items whose sum repeats.
func All(n int, sum func(i int) uint64, text func(i int) string) []Repeat {
	return find(n, sum, text, false)
}

// First is the first repeat among n items (see All), if any.
func First(n int, sum func(i int) uint64, text func(i int) string) (Repeat, bool) {
	r := find(n, sum, text, true)
	if len(r) == 0 {
		return Repeat{}, false
	}
	return r[0], true
}

// Strings is a sum for All and First over strings.
func Strings(ss []string) func(i int) uint64 {
	seed := maphash.MakeSeed()
	return func(i int) uint64 { return maphash.String(seed, ss[i]) }
}

func find(n int, sum func(i int) uint64, text func(i int) string, firstOnly bool) []Repeat {
	sums := make([]uint64, n)
	for i := range sums {
		sums[i] = sum(i)
	}
	sorted := slices.Clone(sums)
	slices.Sort(sorted)
	repeated := map[uint64]bool{}
	for i := 1; i < n; i++ {
		if sorted[i] == sorted[i-1] {
			repeated[sorted[i]] = true
		}
	}
	if len(repeated) == 0 {
		return nil
	}
	var out []Repeat
	first := map[string]int{}
	for i, s := range sums {
		if !repeated[s] {
			continue
		}
		t := text(i)
		j, seen := first[t]
		if !seen {
			first[t] = i
			continue
		}
		out = append(out, Repeat{Later: i, First: j})
		if firstOnly {
			break
		}
	}
	return out
}
