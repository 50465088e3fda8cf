// Package stagetest runs stages inside an ordinary `go test`, for stage
// authors and for the built-in stages' own tests: one stage or a short
// list of them, on one or several Slices, over given data IDs, with a
// given clipboard, trigger event and events to wait for. It runs the real
// stage loop (package stagerun: harness.Run with every rank a goroutine
// of the test), so a stage's Preprocess and Postprocess run on the
// Pipeline and its shared items travel as in a batch job; Run returns
// each data ID's clipboard after the stages, the Pipeline's clipboard,
// the slice failures and the run's error.
//
// It is a test helper: only _test.go files import it. It never uses
// Slurm, MPI, a network broker or a state file: the ranks are
// goroutines, the broker is in memory, and the progress goes to the
// run's Summary only.
package stagetest

import (
	"context"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/harness/stagerun"
)

// Case is what Run runs (stagerun.Case): RunDir "" means a new temporary
// directory, Timeout 0 means 30s, so a stage that hangs fails the test
// instead of the test binary's deadline, and Name "" means stagetest.
type Case = stagerun.Case

// Result is what a case's run left (stagerun.Result), with getters that
// fail the test.
type Result struct{ *stagerun.Result }

// Run runs c's stages over one visit and returns what they left. A case
// whose policy does not load, or a run that does not end within the
// timeout, fails the test; a failing stage does not (see Result).
func Run(t testing.TB, c Case) *Result {
	t.Helper()
	if c.RunDir == "" {
		c.RunDir = t.TempDir()
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Name == "" {
		c.Name = "stagetest"
	}
	res, err := stagerun.Run(context.Background(), c, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil { // a policy that does not load, or stagerun.ErrTimeout
		t.Fatalf("stagetest: %v", err)
	}
	return &Result{res}
}

// testWriter sends the run's log to the test's log, shown when it fails
// or with -v.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}

// Get returns key's value on dataID's clipboard after the stages, and
// fails the test when that data ID has no clipboard or no such key.
func (r *Result) Get(t testing.TB, dataID, key string) any {
	t.Helper()
	cb, ok := r.Clipboards[dataID]
	if !ok {
		t.Fatalf("stagetest: no clipboard for data ID %q after the stages (have %v; failures %v; run: %v)", dataID, sortedKeys(r.Clipboards), r.Failures, r.Err)
	}
	v, ok := cb.Get(key)
	if !ok {
		t.Fatalf("stagetest: data ID %q's clipboard has no %q (has %v)", dataID, key, cb.Keys())
	}
	return v
}

// Failure returns the first failure of dataID's clipboard, if it failed.
func (r *Result) Failure(dataID string) (harness.SliceFailure, bool) {
	for _, f := range r.Failures {
		if f.DataID == dataID {
			return f, true
		}
	}
	return harness.SliceFailure{}, false
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
