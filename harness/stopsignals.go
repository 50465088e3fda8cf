package harness

import (
	"errors"
	"sync"
	"syscall"
	"time"
)

// ErrKilled is matched by the error of a stage whose program ended by a
// signal a job's stop delivers (SIGTERM, SIGINT, SIGUSR1, SIGUSR2,
// SIGHUP, SIGKILL), or exited with 128 plus one, as a shell does: the
// exec stage's error wraps it, and a Go stage that runs programs may wrap
// it too. On a slice that received a stop signal (see StopSignals) such
// an error interrupts the visit instead of failing it.
var ErrKilled = errors.New("harness: the program was ended by a signal")

// StopGrace is how long a slice whose program was killed waits for a
// stop signal of its own before it counts the program as failed: Slurm
// signals every process of a step at nearly the same moment, and the
// slice may see its program die before it sees the signal.
const StopGrace = 2 * time.Second

// StopSignals notes the stop signals a rank's process received: scancel,
// scancel --signal, srun forwarding them, the time limit. Slurm delivers
// them to every process of a step. The Pipeline (rank 0) stops the run at
// the next visit boundary; a Slice carries on (it follows rank 0) but
// notes the signal, because a program one of its stages runs may die of
// the same signal: that program was stopped, not failed, and its visit is
// interrupted, to be run again by the next job, never failed. The zero
// value is not usable: NewStopSignals. A nil *StopSignals notes nothing
// and has never seen a signal. It is safe for concurrent use.
type StopSignals struct {
	once sync.Once
	ch   chan struct{} // closed at the first signal
}

// NewStopSignals returns a StopSignals that has seen no signal.
func NewStopSignals() *StopSignals { return &StopSignals{ch: make(chan struct{})} }

// Note records that a stop signal arrived. The signal handler calls it.
func (s *StopSignals) Note() {
	if s != nil {
		s.once.Do(func() { close(s.ch) })
	}
}

// Arrived reports whether a stop signal has arrived, waiting up to grace
// for one.
func (s *StopSignals) Arrived(grace time.Duration) bool {
	if s == nil {
		return false
	}
	select {
	case <-s.ch:
		return true
	default:
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-s.ch:
		return true
	case <-t.C:
		return false
	}
}

// stopSignals are the signals a job's stop delivers to a step's
// processes, by scancel, srun or the time limit.
var stopSignals = map[syscall.Signal]bool{
	syscall.SIGTERM: true, syscall.SIGINT: true, syscall.SIGUSR1: true,
	syscall.SIGUSR2: true, syscall.SIGHUP: true, syscall.SIGKILL: true,
}

// killedBy reports whether a program that ended with ws was ended by a
// stop signal, directly or as a shell reports it (exit status 128+n).
func killedBy(ws syscall.WaitStatus) bool {
	if ws.Signaled() {
		return stopSignals[ws.Signal()]
	}
	if n := ws.ExitStatus(); n > 128 {
		return stopSignals[syscall.Signal(n-128)]
	}
	return false
}

// killedError is a program ended by a stop signal: it reads as the
// program's failure, and matches ErrKilled.
type killedError struct{ msg string }

func (e *killedError) Error() string { return e.msg }
func (e *killedError) Unwrap() error { return ErrKilled }
