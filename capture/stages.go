package capture

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// stagesFile, in a run's (or a pipeline step's) directory, names the
// stages `submit --freeze-dry` asked to capture at entry, a line each:
// every rank of the run's jobs reads it (dpsbatch run).
const stagesFile = "freeze-dry"

// WriteStages writes the stages to capture at entry into dir; none
// writes nothing.
func WriteStages(dir string, stages []string) error {
	if len(stages) == 0 {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, stagesFile), []byte(strings.Join(stages, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	return nil
}

// ReadStages reads the stages WriteStages wrote into dir (none when it
// wrote nothing).
func ReadStages(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, stagesFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	return strings.Fields(string(b)), nil
}
