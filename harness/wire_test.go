package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/dpsbatch/dpsbatch/harness/comm"
)

// wireChild is set in the environment of TestWireOrder's own process.
const wireChild = "DPSBATCH_WIRE_ORDER_CHILD"

// tracingComm writes down, in order, each collective a rank calls and the
// sizes of what it moved: its side of the protocol on the wire. Sizes,
// not bytes: gob writes a map's entries in no fixed order.
type tracingComm struct {
	comm.Comm
	mu    sync.Mutex
	trace []string
}

func (c *tracingComm) note(format string, a ...any) {
	c.mu.Lock()
	c.trace = append(c.trace, fmt.Sprintf(format, a...))
	c.mu.Unlock()
}

func (c *tracingComm) Bcast(root int, data []byte) ([]byte, error) {
	out, err := c.Comm.Bcast(root, data)
	c.note("B%d", len(out))
	return out, err
}

func (c *tracingComm) Gather(root int, data []byte) ([][]byte, error) {
	parts, err := c.Comm.Gather(root, data)
	sizes := make([]string, len(parts))
	for i, p := range parts {
		sizes[i] = fmt.Sprint(len(p))
	}
	c.note("G%d[%s]", len(data), strings.Join(sizes, ","))
	return parts, err
}

func (c *tracingComm) Exchange(send map[int][]byte, from []int) (map[int][]byte, error) {
	got, err := c.Comm.Exchange(send, from)
	c.note("X%s/%s", sizesByRank(send), sizesByRank(got))
	return got, err
}

func sizesByRank(m map[int][]byte) string {
	ranks := make([]int, 0, len(m))
	for r := range m {
		ranks = append(ranks, r)
	}
	sort.Ints(ranks)
	var b strings.Builder
	for _, r := range ranks {
		fmt.Fprintf(&b, "%d:%d;", r, len(m[r]))
	}
	return b.String()
}

// TestWireOrder pins the order and sizes of the messages each rank sends
// and receives over a run that uses every part of the protocol: shared
// items both ways, an exchange with a failing data ID, a serial stage, a
// visit that fails on the Pipeline (Skip) and the Stop. The traces were
// taken from the loops before they were split into named steps; a change
// to the loops that changes what crosses the wire fails here. HostInfo
// sizes vary with the machine, so the first Gather's sizes are left out.
//
// It runs in a process of its own: gob numbers the types it meets in
// one table per process, and a gob message carries those numbers, so
// its size depends on which tests ran before it (run after the stage
// tests alone, every gob message here came out 25 bytes shorter).
func TestWireOrder(t *testing.T) {
	if os.Getenv(wireChild) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWireOrder$", "-test.count=1")
		cmd.Env = append(os.Environ(), wireChild+"=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("TestWireOrder in a process of its own: %v\n%s", err, out)
		}
		return
	}
	const slices = 3
	policy := fmt.Sprintf(`pipeline: x
slices: %d
mapper: {type: range, settings: {key: ccd, from: 1, to: 6}}
failure: {visit: never}
stages:
  - {name: share, type: test-share}
  - {name: put, type: test-xput, exchange: {topology: ring, keys: [obj, odd]}, settings: {fail: ccd=5}}
  - {name: record, type: test-xrecord, settings: {keys: [obj, odd]}}
  - {name: pre, type: test-prefail, settings: {visit: "2"}}
  - {name: after, type: noop}
`, slices)
	eps := comm.NewLocal(slices + 1)
	traced := make([]*tracingComm, len(eps))
	for i, c := range eps {
		traced[i] = &tracingComm{Comm: c}
	}
	sum, errs := runRanks(t, policy, slices+1, []string{"1", "2", "3"}, func(r int) (comm.Comm, error) { return traced[r], nil })
	for r, err := range errs {
		if err != nil && !(r == 0 && errors.Is(err, ErrVisitsFailed)) {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	if sum.Done != 2 || sum.Failed != 1 {
		t.Fatalf("done %d, failed %d; want 2 and 1 (visit 2 fails in preprocess)", sum.Done, sum.Failed)
	}
	want := []string{
		"B15 B119 G0[0,450,450,450] B0 X/ G0[0,0,0,468] B0 G0[0,0,0,0] B0 G0[0,0,0,0] B15 B119 G0[0,450,450,450] B0 X/ G0[0,0,0,468] B0 G0[0,0,0,0] B101 B15 B119 G0[0,450,450,450] B0 X/ G0[0,0,0,468] B0 G0[0,0,0,0] B0 G0[0,0,0,0] B4",
		"B15 B119 G450[] B0 X2:219;3:219;/2:219;3:166; G0[] B0 G0[] B0 G0[] B15 B119 G450[] B0 X2:219;3:219;/2:219;3:166; G0[] B0 G0[] B101 B15 B119 G450[] B0 X2:219;3:219;/2:219;3:166; G0[] B0 G0[] B0 G0[] B4",
		"B15 B119 G450[] B0 X1:219;3:219;/1:219;3:166; G0[] B0 G0[] B0 G0[] B15 B119 G450[] B0 X1:219;3:219;/1:219;3:166; G0[] B0 G0[] B101 B15 B119 G450[] B0 X1:219;3:219;/1:219;3:166; G0[] B0 G0[] B0 G0[] B4",
		"B15 B119 G450[] B0 X1:166;2:166;/1:219;2:219; G468[] B0 G0[] B0 G0[] B15 B119 G450[] B0 X1:166;2:166;/1:219;2:219; G468[] B0 G0[] B101 B15 B119 G450[] B0 X1:166;2:166;/1:219;2:219; G468[] B0 G0[] B0 G0[] B4",
	}
	for r, c := range traced {
		got := strings.Join(c.trace[1:], " ")
		if got != want[r] {
			t.Errorf("rank %d sent and received\n%s\nwant\n%s", r, got, want[r])
		}
	}
}
