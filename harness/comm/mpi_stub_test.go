//go:build !mpi

package comm_test

import (
	"errors"
	"testing"

	"github.com/dpsbatch/dpsbatch/harness/comm"
)

func TestMPIWithoutTag(t *testing.T) {
	c, err := comm.NewMPI()
	if c != nil || !errors.Is(err, comm.ErrNoMPI) {
		t.Fatalf("NewMPI() = %v, %v; want nil, ErrNoMPI", c, err)
	}
	const want = "comm: built without MPI support (rebuild with -tags mpi)"
	if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}
