// Package comm owns the communicators the harness's stage loop runs on.
//
// A communicator connects the ranks of one pipeline: rank 0 is the Pipeline,
// ranks 1..Size()-1 are the Slices. The loop speaks to it in bytes only (it
// encodes its own messages), so the same loop runs over goroutines in one
// process (Local), over TCP between processes started by srun, or over MPI.
//
// Every rank calls the collective operations (Bcast, Gather, Scatter,
// Barrier, Exchange) in the same order, as MPI requires; each call blocks
// until this rank's part of the operation is done. A Comm belongs to one
// goroutine: the one that runs the loop for its rank. Only Abort may be
// called from any goroutine.
//
// The package imports nothing else of the project's.
package comm

import "errors"

// ErrAborted is returned (wrapped) by every operation after Abort was called
// on any rank of a communicator that can report it.
var ErrAborted = errors.New("comm: aborted")

// Comm is the communicator interface. Implementations: Local (goroutines in
// one process), tcp and mpi (in their own files and build tags).
type Comm interface {
	// Rank is this endpoint's rank, 0 <= Rank() < Size().
	Rank() int
	// Size is the number of ranks, at least 1.
	Size() int

	// Bcast sends root's data to every rank. Every rank returns root's data
	// (root gets its own slice back); data is ignored on the other ranks.
	Bcast(root int, data []byte) ([]byte, error)
	// Gather collects one message from every rank at root. Root returns
	// Size() messages indexed by rank, its own included; other ranks return
	// nil. The messages are the caller's; the slice holding them may be
	// reused by the next Gather.
	Gather(root int, data []byte) ([][]byte, error)
	// Scatter sends parts[r] from root to rank r. Root must pass exactly
	// Size() parts; other ranks pass nil. Every rank returns its own part.
	Scatter(root int, parts [][]byte) ([]byte, error)
	// Barrier returns once every rank has entered it.
	Barrier() error
	// Exchange is point-to-point traffic between neighbours, for
	// slice-to-slice sharing: send[r] goes to rank r, and the call returns
	// what each rank listed in from sent to this one. Every rank calls it
	// (possibly with nothing to send or receive); sends and receives must
	// pair up: if r sends to s, s lists r in from.
	Exchange(send map[int][]byte, from []int) (map[int][]byte, error)

	// Abort ends the whole communicator after a fatal error. Pending and
	// later operations on every rank fail with an error wrapping ErrAborted
	// where the implementation can arrange it (local, tcp); mpi kills the
	// step through MPI_Abort. Safe to call from any goroutine, more than once.
	Abort(err error)
	// Close releases this endpoint. Call it once, after the last operation.
	Close() error
}
