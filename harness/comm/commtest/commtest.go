// Package commtest is the shared test suite every communicator passes
// (local, tcp, mpi). The suite runs per rank: each rank of a world calls
// Check with its own endpoint, in its own goroutine or process, and gets nil
// or the first thing that went wrong on that rank. Local worlds run it in
// goroutines; tcp and mpi run it in processes started by srun or mpirun.
package commtest

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/dpsbatch/dpsbatch/harness/comm"
)

// Check runs the whole suite on one rank. All ranks of the world must call
// it. It needs at least 3 ranks (a Pipeline and two Slices) to exercise the
// ring exchange; with fewer it checks what it can.
func Check(c comm.Comm) error {
	steps := []struct {
		name string
		fn   func(comm.Comm) error
	}{
		{"rank and size", checkRankSize},
		{"bcast", checkBcast},
		{"gather", checkGather},
		{"scatter", checkScatter},
		{"barrier", func(c comm.Comm) error { return c.Barrier() }},
		{"empty messages", checkEmpty},
		{"ring exchange", checkRing},
		{"large bcast", checkLarge},
		{"many rounds", checkRounds},
		{"final barrier", func(c comm.Comm) error { return c.Barrier() }},
	}
	for _, s := range steps {
		if err := s.fn(c); err != nil {
			return fmt.Errorf("rank %d of %d: %s: %w", c.Rank(), c.Size(), s.name, err)
		}
	}
	return nil
}

// CheckAbort checks that an Abort on the last rank makes a pending Gather
// fail on every other rank with an error wrapping comm.ErrAborted. Only for
// communicators that report aborts (local, tcp); MPI kills the step instead.
func CheckAbort(c comm.Comm) error {
	if c.Size() < 2 {
		return nil
	}
	if c.Rank() == c.Size()-1 {
		c.Abort(errors.New("commtest: deliberate abort"))
		return nil
	}
	// The last rank never sends, so this can only end through the abort.
	_, err := c.Gather(0, []byte("x"))
	if c.Rank() != 0 && err == nil {
		// Non-root ranks may finish their send before the abort lands;
		// the next receive must fail.
		_, err = c.Bcast(0, nil)
	}
	if err == nil {
		return fmt.Errorf("rank %d: operation succeeded after abort", c.Rank())
	}
	if !errors.Is(err, comm.ErrAborted) {
		return fmt.Errorf("rank %d: error %q does not wrap comm.ErrAborted", c.Rank(), err)
	}
	return nil
}

func checkRankSize(c comm.Comm) error {
	if c.Size() < 1 || c.Rank() < 0 || c.Rank() >= c.Size() {
		return fmt.Errorf("rank %d, size %d", c.Rank(), c.Size())
	}
	// Every rank agrees on the size and ranks are distinct.
	parts, err := c.Gather(0, []byte(fmt.Sprintf("%d/%d", c.Rank(), c.Size())))
	if err != nil {
		return err
	}
	if c.Rank() == 0 {
		for r, p := range parts {
			if want := fmt.Sprintf("%d/%d", r, c.Size()); string(p) != want {
				return fmt.Errorf("rank %d reported %q, want %q", r, p, want)
			}
		}
	}
	return nil
}

func checkBcast(c comm.Comm) error {
	for _, root := range []int{0, c.Size() - 1} {
		want := fmt.Sprintf("bcast from %d to %d ranks", root, c.Size())
		var in []byte
		if c.Rank() == root {
			in = []byte(want)
		}
		got, err := c.Bcast(root, in)
		if err != nil {
			return err
		}
		if string(got) != want {
			return fmt.Errorf("root %d: got %q, want %q", root, got, want)
		}
	}
	return nil
}

func checkGather(c comm.Comm) error {
	for _, root := range []int{0, c.Size() - 1} {
		// Different lengths per rank, so gatherv is exercised.
		msg := bytes.Repeat([]byte{byte('a' + c.Rank()%26)}, c.Rank()+1)
		got, err := c.Gather(root, msg)
		if err != nil {
			return err
		}
		if c.Rank() != root {
			if got != nil {
				return fmt.Errorf("non-root got %d parts", len(got))
			}
			continue
		}
		if len(got) != c.Size() {
			return fmt.Errorf("root %d got %d parts, want %d", root, len(got), c.Size())
		}
		for r, p := range got {
			if want := bytes.Repeat([]byte{byte('a' + r%26)}, r+1); !bytes.Equal(p, want) {
				return fmt.Errorf("root %d: part %d is %q, want %q", root, r, p, want)
			}
		}
	}
	return nil
}

func checkScatter(c comm.Comm) error {
	var parts [][]byte
	if c.Rank() == 0 {
		for r := 0; r < c.Size(); r++ {
			parts = append(parts, []byte(fmt.Sprintf("part for %d", r)))
		}
	}
	got, err := c.Scatter(0, parts)
	if err != nil {
		return err
	}
	if want := fmt.Sprintf("part for %d", c.Rank()); string(got) != want {
		return fmt.Errorf("got %q, want %q", got, want)
	}
	return nil
}

func checkEmpty(c comm.Comm) error {
	got, err := c.Bcast(0, nil)
	if err != nil {
		return err
	}
	if len(got) != 0 {
		return fmt.Errorf("bcast of nothing gave %d bytes", len(got))
	}
	parts, err := c.Gather(0, []byte{})
	if err != nil {
		return err
	}
	for r, p := range parts {
		if len(p) != 0 {
			return fmt.Errorf("gather of nothing gave %d bytes from rank %d", len(p), r)
		}
	}
	return nil
}

// checkRing has every slice (ranks 1..Size-1) exchange a message with its
// left and right neighbour in a ring; rank 0 takes part with nothing.
func checkRing(c comm.Comm) error {
	slices := c.Size() - 1
	send := map[int][]byte{}
	var from []int
	if c.Rank() > 0 && slices >= 2 {
		i := c.Rank() - 1
		left := (i+slices-1)%slices + 1
		right := (i+1)%slices + 1
		for _, n := range uniq(left, right) {
			send[n] = []byte(fmt.Sprintf("%d->%d", c.Rank(), n))
			from = append(from, n)
		}
	}
	got, err := c.Exchange(send, from)
	if err != nil {
		return err
	}
	if len(got) != len(from) {
		return fmt.Errorf("received from %d ranks, want %d", len(got), len(from))
	}
	for _, n := range from {
		if want := fmt.Sprintf("%d->%d", n, c.Rank()); string(got[n]) != want {
			return fmt.Errorf("from %d: got %q, want %q", n, got[n], want)
		}
	}
	return nil
}

func uniq(a, b int) []int {
	if a == b {
		return []int{a}
	}
	return []int{a, b}
}

func checkLarge(c comm.Comm) error {
	const n = 4 << 20
	var in []byte
	if c.Rank() == 0 {
		in = make([]byte, n)
		for i := range in {
			in[i] = byte(i * 7)
		}
	}
	got, err := c.Bcast(0, in)
	if err != nil {
		return err
	}
	if len(got) != n {
		return fmt.Errorf("got %d bytes, want %d", len(got), n)
	}
	for i := range got {
		if got[i] != byte(i*7) {
			return fmt.Errorf("byte %d is %d, want %d", i, got[i], byte(i*7))
		}
	}
	return nil
}

// checkRounds runs the stage loop's pattern (bcast, then gather) many times
// with round-specific content, so reordering or a lost message shows.
func checkRounds(c comm.Comm) error {
	for i := 0; i < 500; i++ {
		var in []byte
		if c.Rank() == 0 {
			in = []byte(fmt.Sprintf("round %d", i))
		}
		got, err := c.Bcast(0, in)
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("round %d", i); string(got) != want {
			return fmt.Errorf("round %d: bcast gave %q", i, got)
		}
		parts, err := c.Gather(0, []byte(fmt.Sprintf("%d:%d", i, c.Rank())))
		if err != nil {
			return err
		}
		for r, p := range parts {
			if want := fmt.Sprintf("%d:%d", i, r); string(p) != want {
				return fmt.Errorf("round %d: rank %d sent %q, want %q", i, r, p, want)
			}
		}
	}
	return nil
}
