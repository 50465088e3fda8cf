package harness

import (
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a slice whose program was killed waits for a
// stop signal of its own before it counts the program as failed: Slurm
// signals every process of a step at nearly the same moment, and the
// slice may see its program die before it sees the signal.
const stopGrace = 2 * time.Second

// StopSignals notes the stop signals a rank's process received: scancel,
// scancel --signal, srun forwarding them, the time limit. Slurm delivers
// them to every process of a step. The Pipeline (rank 0) stops the run at
// the next visit boundary; a Slice carries on (it follows rank 0) but
// notes the signal, because a program one of its stages runs may die of
// the same signal: that program was stopped, not failed, and its visit is
// interrupted, to be run again by the next job, never failed. The zero
// value has seen no signal; a nil *StopSignals notes nothing and has
// never seen one. It is safe for concurrent use.
type StopSignals struct {
	made, closed sync.Once
	ch           chan struct{} // closed at the first signal
}

// arrivals is the channel closed at the first signal.
func (s *StopSignals) arrivals() chan struct{} {
	s.made.Do(func() { s.ch = make(chan struct{}) })
	return s.ch
}

// Note records that a stop signal arrived. The signal handler calls it.
func (s *StopSignals) Note() {
	if s != nil {
		s.closed.Do(func() { close(s.arrivals()) })
	}
}

// Arrived reports whether a stop signal has arrived, waiting up to grace
// for one.
func (s *StopSignals) Arrived(grace time.Duration) bool {
	if s == nil {
		return false
	}
	select {
	case <-s.arrivals():
		return true
	default:
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-s.arrivals():
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
