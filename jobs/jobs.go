// Package jobs holds a batch run's use cases — submit, resume, status,
// wait, cancel, list — and the in-job side of a run (rank 0 opening the
// state file and feeding the visits it holds). It is the one place where
// the scheduler, the state file, the job templates and the site file meet;
// the commands in cmd/dpsbatch only parse flags and call it.
//
// A run lives in one directory (Layout): a copy of the policy and of the
// visit list, the rendered job scripts, Slurm's logs, the outputs of the
// pipeline's relative locations, and the state file, the one source of
// truth for what is done. Only rank 0 of a running job writes the state
// file; the commands read it, and resume writes it only once no job of the
// run is live. A command that submits a job for a run holds the run's lock
// while it decides and submits (lock.go), records each submission before
// sbatch (submissions.go), and a job's rank 0 claims the run before it
// runs a visit (overlap.go): one job of a run runs its visits at a time.
package jobs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/site"
	"github.com/dpsbatch/dpsbatch/templates"
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

// Layout names the files of a run directory.
type Layout struct{ Dir string }

// The fixed names inside a run directory.
const (
	StateFile  = "state.db"
	PolicyFile = "pipeline.yaml"
	ScriptsDir = "scripts"
	LogsDir    = "logs"
)

func (l Layout) State() string  { return filepath.Join(l.Dir, StateFile) }
func (l Layout) Policy() string { return filepath.Join(l.Dir, PolicyFile) }

// Visits is the copy of the visit list; ext keeps the original's format
// (".csv", ".jsonl").
func (l Layout) Visits(ext string) string { return filepath.Join(l.Dir, "visits"+ext) }

// Script is the rendered job script of an attempt.
func (l Layout) Script(attempt int) string {
	return filepath.Join(l.Dir, ScriptsDir, fmt.Sprintf("attempt-%d.sbatch", attempt))
}

// StopFile is where the batch shell of an attempt passes on Slurm's
// time-limit warning; rank 0 watches it (InJob.StopFile).
func (l Layout) StopFile(attempt int) string {
	return filepath.Join(l.Dir, fmt.Sprintf(".stop-attempt-%d", attempt))
}

// SlurmLog is the Slurm log of the run's job id.
func (l Layout) SlurmLog(id string) string {
	return filepath.Join(l.Dir, LogsDir, "slurm-"+id+".out")
}

// slurmLogPattern is the --output pattern of the run's jobs: SlurmLog
// with Slurm's %j for the job ID, every % of the run directory's path
// written %% so that Slurm does not expand it.
func (l Layout) slurmLogPattern() string {
	return templates.EscapePattern(filepath.Join(l.Dir, LogsDir)) + "/slurm-%j.out"
}

var runName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// CheckName reports whether name can name a run: letters, digits, '.',
// '_' and '-', starting with a letter or digit, at most 128 characters.
func CheckName(name string) error {
	if !runName.MatchString(name) {
		return fmt.Errorf("%w: run name %q: use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 128)", conf.ErrInvalid, name)
	}
	return nil
}

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
		if fi, err := os.Stat(filepath.Join(dir, StateFile)); err == nil && fi.Mode().IsRegular() {
			return filepath.Abs(dir)
		}
	}
	msg := fmt.Sprintf("%q is not a run directory (no %s)", arg, StateFile)
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
			if _, err := os.Stat(filepath.Join(root, e.Name(), StateFile)); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	return names, nil
}
