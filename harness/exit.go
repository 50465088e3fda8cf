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
	ExitVisitsFailed = 3   // some visits failed: ErrVisitsFailed
	ExitAlerted      = 4   // dpsbatch monitor: a rule fired: ErrAlerted
	ExitInterrupted  = 130 // interrupted: ErrInterrupted, context.Canceled
)

// ErrAlerted: `dpsbatch monitor` raised an alert while it watched (the
// monitor package returns it; it is declared here, beside its status).
var ErrAlerted = errors.New("alerts were raised")

// exitStatuses is every exit status with what it means and the errors
// that give it, in the order ExitCode tries them.
var exitStatuses = []struct {
	code    int
	meaning string
	errs    []error
}{
	{ExitOK, "every visit succeeded", nil},
	{ExitBadInput, "bad input (nothing ran)", []error{conf.ErrInvalid}},
	{ExitVisitsFailed, "some visits failed", []error{ErrVisitsFailed}},
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
