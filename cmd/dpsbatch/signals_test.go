package main

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
)

// A signal delivered twice at once (as slurmstepd may deliver one scancel
// --signal) stops the run; it does not abandon the visit in flight. A
// second signal after repeatWindow does. Every signal is noted, heeded
// or not.
func TestStopOnSignalsRepeat(t *testing.T) {
	noted := new(harness.StopSignals)
	ctx, stop, done := stopOnSignals(context.Background(), noted, nil, syscall.SIGUSR2)
	defer done()
	self := func() {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
			t.Fatal(err)
		}
	}
	self()
	select {
	case <-stop:
	case <-time.After(5 * time.Second):
		t.Fatal("no stop after a signal")
	}
	if !noted.Arrived(0) {
		t.Error("the signal was not noted")
	}
	self() // the same signal again, at once
	select {
	case <-ctx.Done():
		t.Fatal("a signal delivered twice at once abandoned the visit")
	case <-time.After(repeatWindow + 200*time.Millisecond):
	}
	self()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a second signal after the window did not interrupt")
	}
}

// A process that does not heed signals (a slice) still notes them.
func TestStopOnSignalsNotedUnheeded(t *testing.T) {
	noted := new(harness.StopSignals)
	ctx, stop, done := stopOnSignals(context.Background(), noted, func() bool { return false }, syscall.SIGUSR2)
	defer done()
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	if !noted.Arrived(5 * time.Second) {
		t.Fatal("the signal was not noted")
	}
	select {
	case <-stop:
		t.Error("a process that does not heed signals stopped")
	case <-ctx.Done():
		t.Error("a process that does not heed signals was interrupted")
	case <-time.After(100 * time.Millisecond):
	}
}
