package comm

import "errors"

// ErrNoMPI is returned by NewMPI in a binary built without the mpi build
// tag, which is the default: the MPI communicator needs cgo and Open MPI's
// headers and library (package libopenmpi-dev) at build time, so it is
// compiled only with `go build -tags mpi`. Callers may branch on it to tell
// the user how to get an MPI-capable binary.
var ErrNoMPI = errors.New("comm: built without MPI support (rebuild with -tags mpi)")
