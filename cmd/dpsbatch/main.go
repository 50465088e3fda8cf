// Command dpsbatch runs data-parallel science pipelines, on a laptop
// (dpsbatch local) or on a Slurm cluster. main only builds the app, runs it
// and exits with the status harness.ExitCode gives its error; the
// commands, one per file, are thin wrappers around the project's packages.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/dpsbatch/dpsbatch/harness"
)

// The exit statuses, as harness defines them (harness/exit.go), under
// the short names the commands and their tests use.
const (
	exitOK          = harness.ExitOK
	exitFailure     = harness.ExitFailure
	exitBadInput    = harness.ExitBadInput
	exitPartial     = harness.ExitVisitsFailed
	exitInterrupted = harness.ExitInterrupted
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

// exitCode is the exit status for what a command returned.
func exitCode(err error) int { return harness.ExitCode(err) }
