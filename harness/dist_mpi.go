//go:build mpi

package harness

// mpiBuilt says this binary has the MPI communicator (built with -tags mpi).
const mpiBuilt = true
