// Command dpsbatch runs data-parallel science pipelines, on a laptop
// (dpsbatch local) or on a Slurm cluster. main only builds the app, runs it
// and maps errors to exit codes; the commands, one per file, are thin
// wrappers around the project's packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/jobs"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailure     = 1
	exitBadInput    = 2
	exitPartial     = 3
	exitInterrupted = 130
)

func main() {
	app := newApp()
	err := app.Run(interspersed(app, os.Args))
	code := exitCode(err)
	if err != nil && !errors.Is(err, errReported) {
		fmt.Fprintf(os.Stderr, "dpsbatch: %v\n", err)
	}
	os.Exit(code)
}

// errReported wraps an error whose details a command already printed.
var errReported = errors.New("reported")

func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, harness.ErrInvalid):
		return exitBadInput
	case errors.Is(err, harness.ErrVisitsFailed), errors.Is(err, jobs.ErrVisitsFailed):
		return exitPartial
	case errors.Is(err, harness.ErrInterrupted), errors.Is(err, context.Canceled):
		return exitInterrupted
	default:
		return exitFailure
	}
}
