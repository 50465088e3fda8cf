//go:build mpi

package comm

import (
	"runtime"
	"sync/atomic"
)

// CountMPIGosched makes the MPI communicator count the times it lets the
// Go scheduler run (passScheduler) and returns the count so far.
func CountMPIGosched() (count func() int64) {
	var n atomic.Int64
	mpiGosched = func() {
		n.Add(1)
		runtime.Gosched()
	}
	return n.Load
}
