package scheduler

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/retry"
)

// This file retries the Slurm tools the CLI backend runs when they fail
// for a reason that passes: slurmctld busy or restarting, slurmdbd away
// for a moment. Each command is tried again after a growing pause until
// it succeeds, fails for another reason, or the next pause would end past
// the bound (CLIOptions.RetryWait) counted from its first try; the error
// at the end names the command, the number of tries and the last failure.

// DefaultRetryWait is CLIOptions.RetryWait when none is given: a
// slurmctld restart takes some seconds, a busy one answers within a
// minute.
const DefaultRetryWait = time.Minute

// firstPause is the first pause between two tries (retry.Policy.First).
const firstPause = 500 * time.Millisecond

// unsentErrors are the standard errors of a Slurm tool that could not
// reach its daemon, or that its daemon turned away before acting: the
// request was not carried out, so trying it again cannot do it twice.
var unsentErrors = []string{
	"unable to contact slurm controller", // "... (connect failure)": slurmctld down or restarting
	"connection refused",                 // slurmctld or slurmdbd restarting
	"resource temporarily unavailable",   // EAGAIN: slurmctld refused the request for now
	"slurm temporarily unable to accept job",
	"slurm backup controller in standby mode",
}

// unsureErrors are the standard errors of a Slurm tool whose request may
// have reached its daemon and been carried out before the answer was lost:
// slurmctld busy past the tool's timeout.
var unsureErrors = []string{
	"socket timed out on send/recv operation",
	"zero bytes were transmitted or received",
}

// transient reports whether err is a Slurm tool that failed for a reason
// that passes; unsent whether, moreover, its request was not carried out.
func transient(err error) bool { return toolSays(err, unsentErrors) || toolSays(err, unsureErrors) }
func unsent(err error) bool    { return toolSays(err, unsentErrors) }

// toolSays reports whether err is a tool that failed on its own (not
// killed for the context's end) with one of texts in its standard error.
func toolSays(err error, texts []string) bool {
	var te *toolError
	if !errors.As(err, &te) || te.ctxDone {
		return false
	}
	stderr := strings.ToLower(te.stderr)
	for _, t := range texts {
		if strings.Contains(stderr, t) {
			return true
		}
	}
	return false
}

// retryWith runs try as p says, again transient when nil, and tells a
// *toolError at the end how many tries it took.
func retryWith(ctx context.Context, p retry.Policy, again func(error) bool, try func(prev error) error) error {
	if again == nil {
		again = transient
	}
	tries, spent, err := p.Do(ctx, again, try)
	var te *toolError
	if errors.As(err, &te) && tries > 1 {
		te.tries, te.spent = tries, spent
	}
	return err
}
