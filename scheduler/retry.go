package scheduler

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"time"
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

// The pauses between tries: the first, doubled after each try up to the
// last, each with up to a quarter more at random so that many clients
// do not come back at once.
const (
	firstPause = 500 * time.Millisecond
	maxPause   = 8 * time.Second
)

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

// retryPolicy says how long the CLI backend retries a command.
type retryPolicy struct {
	bound time.Duration // the most from a command's first try to its last; <= 0: no retries
	first time.Duration // the first pause
}

// do calls try until it returns nil, an error for which again reports
// false, or the next pause would end past the bound or the context;
// again is transient when nil. try is given the error of the try before
// it (nil the first time). A *toolError at the end is told how many
// tries it took.
func (p retryPolicy) do(ctx context.Context, again func(error) bool, try func(prev error) error) error {
	if again == nil {
		again = transient
	}
	start, pause := time.Now(), p.first
	var err error
	for tries := 1; ; tries++ {
		if err = try(err); err == nil || !again(err) {
			return err
		}
		wait := pause + rand.N(pause/4+1)
		if time.Since(start)+wait > p.bound {
			return gaveUp(err, tries, time.Since(start))
		}
		select {
		case <-ctx.Done():
			return gaveUp(err, tries, time.Since(start))
		case <-time.After(wait):
		}
		pause = min(2*pause, maxPause)
	}
}

// gaveUp marks err, the last of tries over spent, as the end of retries.
func gaveUp(err error, tries int, spent time.Duration) error {
	var te *toolError
	if errors.As(err, &te) && tries > 1 {
		te.tries, te.spent = tries, spent
	}
	return err
}
