package jobs

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"

	"github.com/dpsbatch/dpsbatch/rundir"
)

// Changes tells, on the channel it returns, that a state file of a run in
// dirs changed (the run's own, and those of its steps in folders of their
// own): one value however many writes came since the last was read, until
// ctx ends. Rank 0 writes a visit's start and end, the heartbeats and the
// job's end, so a reader that waits on it sees each within milliseconds
// instead of at its next poll. Where the file system gives no notice of
// changes (some network file systems), nothing ever arrives: callers still
// poll, only less often.
func Changes(ctx context.Context, dirs ...string) (<-chan struct{}, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	for _, dir := range dirs {
		for _, d := range stateDirs(dir) {
			if err := w.Add(d); err != nil {
				w.Close()
				return nil, err
			}
		}
	}
	out := make(chan struct{}, 1)
	go func() {
		defer w.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Events:
				if !ok {
					return
				}
				if strings.HasPrefix(filepath.Base(e.Name), rundir.StateFile) {
					select {
					case out <- struct{}{}:
					default: // one is waiting already
					}
				}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
			}
		}
	}()
	return out, nil
}

// stateDirs lists the folders of the run in dir that hold a state file:
// the run's, then each of its steps' in a folder of its own.
func stateDirs(dir string) []string {
	l := rundir.Layout{Dir: dir}
	out := []string{dir}
	if _, set, err := rundir.ReadSettings(l); err == nil {
		for _, r := range rundir.Records(l, set)[1:] {
			out = append(out, r.Dir)
		}
	}
	return out
}
