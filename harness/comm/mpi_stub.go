//go:build !mpi

package comm

// NewMPI returns ErrNoMPI: this binary was built without the mpi build tag.
//
// Built with -tags mpi (see mpi.go), NewMPI joins the MPI world the process
// was started in (by mpirun or srun --mpi=pmix) and returns its endpoint.
// That version initialises MPI with MPI_THREAD_SINGLE and locks the
// calling goroutine to its OS thread; every method but Abort must then be
// called from that goroutine.
func NewMPI() (Comm, error) {
	return nil, ErrNoMPI
}
