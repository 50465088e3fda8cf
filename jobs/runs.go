package jobs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/site"
)

// Runs lists the runs under the site's runs root with their status: every
// state file is read, and Slurm is asked once about all their jobs (b may
// be nil to read the state files only). A run that cannot be read is
// listed Unreadable, with why: one run never hides the others.
func Runs(ctx context.Context, s *site.Site, b scheduler.Backend) ([]RunStatus, error) {
	names, err := RunNames(s.RunsRoot)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: runs root: %w", err)
	}
	dirs := make([]string, len(names))
	for i, n := range names {
		dirs[i] = filepath.Join(s.RunsRoot, n)
	}
	return statuses(ctx, b, dirs, true)
}
