// Package jobs holds a batch run's use cases: submit, resume, status,
// wait, cancel, runs, the relay commands (stop, finish, event send) and
// the event log. It is where the scheduler, the state file, the job
// templates and the site file meet for the commands in cmd/dpsbatch, which
// only parse flags and call it. It never runs inside the allocation (that
// is package injob) and never reads a production file itself (package
// input makes any input a run's steps).
//
// A run lives in one directory (rundir.Layout): a copy of the policy and
// of the visit list, the rendered job scripts, Slurm's logs, the outputs
// of the pipeline's relative locations, and the state file, the one
// source of truth for what is done. Only rank 0 of a running job writes
// the state file; the commands read it, and resume writes it only once no
// job of the run is live. A command that submits a job for a run holds the
// run's lock while it decides and submits (lock.go) and records each
// submission before sbatch (submissions.go); a job's rank 0 claims the run
// before it runs a visit (injob): one job of a run runs its visits at a
// time.
package jobs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/site"
)

var (
	// ErrRunLive is returned by Resume while a job of the run is still
	// pending or running.
	ErrRunLive = errors.New("jobs: a job of the run is still live")
	// ErrIncomplete is returned by Wait when the run's jobs ended with
	// visits neither done nor failed (cancelled, killed, out of time).
	ErrIncomplete = errors.New("jobs: the run ended unfinished")
	// ErrNoRun is returned when a RUN argument names no run.
	ErrNoRun = fmt.Errorf("%w: no such run", conf.ErrInvalid)
)

// ResolveRun finds a run from a RUN argument: a directory holding a state
// file, or the name of a run under the site's runs root (s may be nil when
// no site file is known).
func ResolveRun(s *site.Site, arg string) (string, error) {
	if arg == "" {
		return "", fmt.Errorf("%w: RUN is empty", conf.ErrInvalid)
	}
	var tried []string
	if strings.ContainsRune(arg, os.PathSeparator) || s == nil || arg == "." || arg == ".." {
		tried = append(tried, arg)
	} else {
		tried = append(tried, filepath.Join(s.RunsRoot, arg), arg)
	}
	for _, dir := range tried {
		if fi, err := os.Stat(filepath.Join(dir, rundir.StateFile)); err == nil && fi.Mode().IsRegular() {
			return filepath.Abs(dir)
		}
	}
	msg := fmt.Sprintf("%q is not a run directory (no %s)", arg, rundir.StateFile)
	if s != nil && len(tried) > 1 {
		msg = fmt.Sprintf("%q is neither a run under %s nor a run directory", arg, s.RunsRoot)
		if names, _ := RunNames(s.RunsRoot); len(names) > 0 {
			msg += conf.Suggest(arg, names)
		}
	}
	return "", fmt.Errorf("%w: %s", ErrNoRun, msg)
}

// RunNames lists the names of the runs under a runs root, sorted: the
// folders holding a state file (not a submission's unfinished one). It
// reads the folder only, never a state file or Slurm, so it is quick
// enough for shell completion.
func RunNames(root string) ([]string, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") { // not a submission's .NAME.new-* folder
			if _, err := os.Stat(filepath.Join(root, e.Name(), rundir.StateFile)); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	return names, nil
}
