package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
)

// stopOnSignals turns the first of sigs into a stop at the next visit
// boundary (the returned channel closes) and a second into an interrupt
// (the returned context is cancelled). Call done when the run is over.
func stopOnSignals(parent context.Context, sigs ...os.Signal) (ctx context.Context, stop <-chan struct{}, done func()) {
	ctx, cancel := context.WithCancel(parent)
	stopCh := make(chan struct{})
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, sigs...)
	go func() {
		select {
		case s := <-ch:
			fmt.Fprintf(os.Stderr, "dpsbatch: %v: stopping after the current visit (again to abandon it)\n", s)
			close(stopCh)
		case <-ctx.Done():
			return
		}
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, stopCh, func() { signal.Stop(ch); cancel() }
}
