package comm_test

import (
	"sync"
	"testing"

	"github.com/dpsbatch/dpsbatch/harness/comm"
	"github.com/dpsbatch/dpsbatch/harness/comm/commtest"
)

// runWorld runs fn on every endpoint of a local world in its own goroutine
// and reports each rank's error.
func runWorld(t *testing.T, size int, fn func(comm.Comm) error) {
	t.Helper()
	eps := comm.NewLocal(size)
	errs := make([]error, size)
	var wg sync.WaitGroup
	for r, c := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = fn(c)
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

func TestLocalSuite(t *testing.T) {
	for _, size := range []int{1, 2, 3, 5, 9} {
		runWorld(t, size, commtest.Check)
	}
}

func TestLocalAbort(t *testing.T) {
	runWorld(t, 4, commtest.CheckAbort)
}
