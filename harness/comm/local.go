package comm

import (
	"fmt"
	"sync"
)

// NewLocal returns size connected endpoints whose ranks run as goroutines
// of one process; endpoint i has rank i. It is the communicator of
// `dpsbatch local` and of unit tests. Messages are handed over as byte
// slices without copying: a sender must not change a slice after sending it.
func NewLocal(size int) []Comm {
	if size < 1 {
		panic("comm: NewLocal needs at least one rank")
	}
	w := &localWorld{size: size, done: make(chan struct{})}
	w.pipes = make([][]chan []byte, size)
	for dst := range w.pipes {
		w.pipes[dst] = make([]chan []byte, size)
		for src := range w.pipes[dst] {
			// One message per pair per operation at most is in flight at
			// a time (operations are called in the same order), so a small
			// buffer keeps senders from waiting on slow receivers.
			w.pipes[dst][src] = make(chan []byte, 4)
		}
	}
	eps := make([]Comm, size)
	for r := range eps {
		eps[r] = &local{rank: r, w: w}
	}
	return eps
}

type localWorld struct {
	size  int
	pipes [][]chan []byte // pipes[dst][src]: FIFO from src to dst
	once  sync.Once
	done  chan struct{}
	err   error
}

type local struct {
	rank int
	w    *localWorld
}

func (c *local) Rank() int { return c.rank }
func (c *local) Size() int { return c.w.size }

func (c *local) aborted() error {
	return fmt.Errorf("%w: %v", ErrAborted, c.w.err)
}

func (c *local) send(dst int, data []byte) error {
	select {
	case <-c.w.done:
		return c.aborted()
	default:
	}
	select {
	case c.w.pipes[dst][c.rank] <- data:
		return nil
	case <-c.w.done:
		return c.aborted()
	}
}

func (c *local) recv(src int) ([]byte, error) {
	select {
	case d := <-c.w.pipes[c.rank][src]:
		return d, nil
	case <-c.w.done:
		return nil, c.aborted()
	}
}

func (c *local) checkRank(what string, r int) error {
	if r < 0 || r >= c.w.size {
		return fmt.Errorf("comm: %s: rank %d out of range [0,%d)", what, r, c.w.size)
	}
	return nil
}

func (c *local) Bcast(root int, data []byte) ([]byte, error) {
	if err := c.checkRank("bcast", root); err != nil {
		return nil, err
	}
	if c.rank != root {
		return c.recv(root)
	}
	for r := 0; r < c.w.size; r++ {
		if r != root {
			if err := c.send(r, data); err != nil {
				return nil, err
			}
		}
	}
	return data, nil
}

func (c *local) Gather(root int, data []byte) ([][]byte, error) {
	if err := c.checkRank("gather", root); err != nil {
		return nil, err
	}
	if c.rank != root {
		return nil, c.send(root, data)
	}
	out := make([][]byte, c.w.size)
	out[root] = data
	for r := 0; r < c.w.size; r++ {
		if r == root {
			continue
		}
		d, err := c.recv(r)
		if err != nil {
			return nil, err
		}
		out[r] = d
	}
	return out, nil
}

func (c *local) Scatter(root int, parts [][]byte) ([]byte, error) {
	if err := c.checkRank("scatter", root); err != nil {
		return nil, err
	}
	if c.rank != root {
		return c.recv(root)
	}
	if len(parts) != c.w.size {
		err := fmt.Errorf("comm: scatter: root passed %d parts for %d ranks", len(parts), c.w.size)
		c.Abort(err)
		return nil, err
	}
	for r := 0; r < c.w.size; r++ {
		if r != root {
			if err := c.send(r, parts[r]); err != nil {
				return nil, err
			}
		}
	}
	return parts[root], nil
}

func (c *local) Barrier() error {
	// Gather to rank 0, then release everyone with a broadcast.
	if _, err := c.Gather(0, nil); err != nil {
		return err
	}
	_, err := c.Bcast(0, nil)
	return err
}

func (c *local) Exchange(send map[int][]byte, from []int) (map[int][]byte, error) {
	for r, d := range send {
		if err := c.checkRank("exchange", r); err != nil {
			return nil, err
		}
		if err := c.send(r, d); err != nil {
			return nil, err
		}
	}
	out := make(map[int][]byte, len(from))
	for _, r := range from {
		if err := c.checkRank("exchange", r); err != nil {
			return nil, err
		}
		d, err := c.recv(r)
		if err != nil {
			return nil, err
		}
		out[r] = d
	}
	return out, nil
}

func (c *local) Abort(err error) {
	c.w.once.Do(func() {
		if err == nil {
			err = fmt.Errorf("rank %d aborted", c.rank)
		}
		c.w.err = err
		close(c.w.done)
	})
}

func (c *local) Close() error { return nil }

var _ Comm = (*local)(nil)
