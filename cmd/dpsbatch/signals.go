package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
)

// stopOnSignals turns the first of sigs into a stop at the next visit
// boundary (the returned channel closes) and a second into an interrupt
// (the returned context is cancelled). Call done when the run is over.
// A signal within repeatWindow of the first is the same one delivered
// again, not a second: slurmstepd may deliver one scancel --signal to a
// task twice (to the process and to its group), a few milliseconds apart.
//
// heed, when not nil, says whether this process acts on signals at all:
// `dpsbatch run` heeds them on rank 0 only, because Slurm signals every
// task of a step, sometimes more than once, and a slice that took two
// deliveries for a second signal would abandon its visit; the slices
// follow rank 0's stop through the communicator instead.
//
// noted, when not nil, hears of every signal of sigs, heeded or not: a
// slice's program that dies of the same signal was stopped, not failed
// (see harness.StopSignals).
// repeatWindow is how soon after the first signal another is taken for
// the same one delivered again (see stopOnSignals).
var repeatWindow = time.Second

func stopOnSignals(parent context.Context, noted *harness.StopSignals, heed func() bool, sigs ...os.Signal) (ctx context.Context, stop <-chan struct{}, done func()) {
	ctx, cancel := context.WithCancel(parent)
	stopCh := make(chan struct{})
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, sigs...)
	first := true
	var firstAt time.Time
	next := func() bool { // the next signal to heed; false when ctx ends
		for {
			select {
			case s := <-ch:
				noted.Note()
				if heed != nil && !heed() {
					continue
				}
				if first {
					fmt.Fprintf(os.Stderr, "dpsbatch: %v: stopping after the current visit (again to abandon it)\n", s)
					firstAt = time.Now()
					return true
				}
				if time.Since(firstAt) >= repeatWindow {
					return true
				}
			case <-ctx.Done():
				return false
			}
		}
	}
	go func() {
		if !next() {
			return
		}
		close(stopCh)
		first = false
		if next() {
			cancel()
		}
	}()
	return ctx, stopCh, func() { signal.Stop(ch); cancel() }
}
