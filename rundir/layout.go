// Package rundir is a run's directory as submit makes it and its jobs
// and commands use it: the names of its files (Layout), the run's settings
// kept in its state file (Settings: typed and versioned, one encoder and
// one decoder), its steps as the directory keeps them (StepDirs: a
// pipeline in the run directory itself, or each step of a production in
// pipelines/NAME), the run's embedded broker (Serve, DialJobBroker, the
// store's lock and token), the rank-0 lock that tells whether a job's rank
// 0 still lives, and the Slurm job names that carry a submission's token.
//
// It is shared by the use cases (jobs) and the in-job side (injob) and
// knows neither: it never decides what to run, submits, or reads a
// production file.
package rundir

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/dpsbatch/dpsbatch/internal/conf"
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

func (l Layout) State() string { return filepath.Join(l.Dir, StateFile) }

func (l Layout) Policy() string { return filepath.Join(l.Dir, PolicyFile) }

// PipelineFiles is the copy of the files of the policy's folder that the
// policy names under {pipelinedir} (harness.Policy.PipelineFiles), which
// {pipelinedir} names in the run's jobs.
func (l Layout) PipelineFiles() string { return filepath.Join(l.Dir, "pipeline-files") }

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

// The fixed names a run of steps in folders of their own adds.
const (
	ProductionFile = "production.yaml"
	PipelinesDir   = "pipelines"
)

// ProductionCopy is the copy of the production file in a production's run.
func (l Layout) ProductionCopy() string { return filepath.Join(l.Dir, ProductionFile) }

// Pipeline is the directory of the step called name, in a folder of its own.
func (l Layout) Pipeline(name string) Layout {
	return Layout{Dir: filepath.Join(l.Dir, PipelinesDir, name)}
}

// DirMode is the mode, before the umask, of a run directory and of
// every folder in it (and of a runs root dpsbatch creates): as readable
// as the runs root, so that the project's group can read a run's outputs,
// logs and state. Only the secrets are private: the broker folder (0700)
// with its token (0600), and the TCP communicator's rendezvous file.
const DirMode os.FileMode = 0o755

var runName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// CheckName reports whether name can name a run: letters, digits, '.',
// '_' and '-', starting with a letter or digit, at most 128 characters.
func CheckName(name string) error {
	if !runName.MatchString(name) {
		return fmt.Errorf("%w: run name %q: use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 128)", conf.ErrInvalid, name)
	}
	return nil
}
