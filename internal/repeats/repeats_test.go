package repeats

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// All finds what a map of every text finds, in the same order, also when
// sums collide for different texts (a sum of one bit here).
func TestAllAsAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		n := rng.IntN(60)
		ss := make([]string, n)
		for i := range ss {
			ss[i] = fmt.Sprint(rng.IntN(n + 1))
		}
		var want []Repeat
		seen := map[string]int{}
		for i, s := range ss {
			if j, ok := seen[s]; ok {
				want = append(want, Repeat{Later: i, First: j})
				continue
			}
			seen[s] = i
		}
		text := func(i int) string { return ss[i] }
		sums := map[string]func(int) uint64{
			"maphash": Strings(ss),
			"one bit": func(i int) uint64 { return uint64(len(ss[i]) % 2) },
		}
		for name, sum := range sums {
			if got := All(n, sum, text); !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d, sum %s, %q: All = %v, want %v", round, name, ss, got, want)
			}
			r, ok := First(n, sum, text)
			if ok != (len(want) > 0) || ok && r != want[0] {
				t.Fatalf("round %d, sum %s, %q: First = %v %v, want the first of %v", round, name, ss, r, ok, want)
			}
		}
	}
}
