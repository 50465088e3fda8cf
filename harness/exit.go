package harness

import (
	"context"
	"errors"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// The exit statuses of a program that runs a pipeline (dpsbatch and its
// commands, or a stage author's own binary): ExitCode picks one for the
// error a run returned. README.md's exit-status table lists the same
// codes with the same meanings; a test checks that it does.
const (
	ExitOK           = 0   // every visit succeeded
	ExitFailure      = 1   // anything else
	ExitBadInput     = 2   // bad input (nothing ran): conf.ErrInvalid
	ExitVisitsFailed = 3   // some visits or data IDs failed: ErrVisitsFailed
	ExitAlerted      = 4   // dpsbatch monitor: a rule fired: ErrAlerted
	ExitInterrupted  = 130 // interrupted: ErrInterrupted, context.Canceled
)

// The errors a run returns, and ErrKilled, which a stage's returns.
var (
	// ErrInvalid is wrapped (or matched, for conf.Errors) by every error
	// about bad input: a policy, a visit file, a flag. Nothing has run
	// when it is returned. The CLI exits 2 for it. It is the sentinel the
	// strict YAML reader's errors match, not a copy, so one errors.Is test
	// covers both.
	ErrInvalid = conf.ErrInvalid
	// ErrVisitsFailed is returned when a run ended but some visits failed,
	// or some data IDs did under a failure rule that let their visits
	// carry on.
	ErrVisitsFailed = errors.New("some visits failed")
	// ErrInterrupted is returned when the run's context was cancelled (an
	// interrupt): the visit in flight, if any, was recorded as interrupted.
	ErrInterrupted = errors.New("harness: interrupted")
	// ErrKilled is matched by the error of a stage whose program ended by
	// a signal a job's stop delivers (SIGTERM, SIGINT, SIGUSR1, SIGUSR2,
	// SIGHUP, SIGKILL), or exited with 128 plus one, as a shell does: the
	// exec stage's error wraps it, and a Go stage that runs programs may
	// wrap it too. On a slice that received a stop signal (see
	// StopSignals) such an error interrupts the visit instead of failing it.
	ErrKilled = errors.New("harness: the program was ended by a signal")
	// ErrAlerted: `dpsbatch monitor` raised an alert while it watched
	// (the monitor package returns it; it is declared here, beside its
	// exit status).
	ErrAlerted = errors.New("alerts were raised")
)

// exitStatuses is every exit status with what it means and the errors
// that give it, in the order ExitCode tries them.
var exitStatuses = []struct {
	code    int
	meaning string
	errs    []error
}{
	{ExitOK, "every visit succeeded", nil},
	{ExitBadInput, "bad input (nothing ran)", []error{conf.ErrInvalid}},
	{ExitVisitsFailed, "some visits or data IDs failed", []error{ErrVisitsFailed}},
	{ExitAlerted, "a monitor rule fired (dpsbatch monitor)", []error{ErrAlerted}},
	{ExitInterrupted, "interrupted", []error{ErrInterrupted, context.Canceled}},
	{ExitFailure, "anything else", nil},
}

// ExitCode is the exit status for err, what a run returned: ExitOK for
// nil, else the first of exitStatuses with an error err wraps, else
// ExitFailure.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	for _, s := range exitStatuses {
		for _, e := range s.errs {
			if errors.Is(err, e) {
				return s.code
			}
		}
	}
	return ExitFailure
}
