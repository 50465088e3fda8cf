package scheduler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/dpsbatch/dpsbatch/site"
)

// DryRunPrefix starts every job ID DryRun's Submit returns: no Slurm job
// ID looks like it.
const DryRunPrefix = "dry-run-"

// DryRun wraps a Backend: Submit and Cancel print what they would do to
// Out and change nothing; Jobs, History and Partitions pass through to the
// wrapped backend. The wrapped backend may be nil (no cluster at hand):
// then Jobs and History find nothing and Partitions fails.
type DryRun struct {
	b   Backend
	out io.Writer

	mu sync.Mutex // serializes writes to out and n
	n  int
}

// NewDryRun returns a dry-run wrapper of b that prints to out.
func NewDryRun(b Backend, out io.Writer) *DryRun { return &DryRun{b: b, out: out} }

// Submit prints the submission and returns a fake ID, DryRunPrefix and a
// number counting from 1.
func (d *DryRun) Submit(ctx context.Context, s Submission) (string, error) {
	if err := s.check(); err != nil {
		return "", err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n++
	id := fmt.Sprintf("%s%d", DryRunPrefix, d.n)
	var b strings.Builder
	fmt.Fprintf(&b, "dry run: would submit job %s: sbatch --parsable --chdir=%s", id, s.Dir)
	if s.Dependency != "" {
		fmt.Fprintf(&b, " --dependency=%s", s.Dependency)
	}
	if s.Name != "" {
		fmt.Fprintf(&b, " --job-name=%s", s.Name)
	}
	b.WriteString(" with this script on stdin:\n")
	b.Write(s.Script)
	if !strings.HasSuffix(b.String(), "\n") {
		b.WriteByte('\n')
	}
	if _, err := io.WriteString(d.out, b.String()); err != nil {
		return "", fmt.Errorf("scheduler: dry run: %w", err)
	}
	return id, nil
}

// Cancel prints what it would cancel or signal.
func (d *DryRun) Cancel(ctx context.Context, id string, signal string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var err error
	if signal == "" {
		_, err = fmt.Fprintf(d.out, "dry run: would cancel job %s: scancel %s\n", id, id)
	} else {
		_, err = fmt.Fprintf(d.out, "dry run: would send SIG%s to job %s: scancel --signal=%s %s\n",
			strings.TrimPrefix(strings.ToUpper(signal), "SIG"), id, signal, id)
	}
	if err != nil {
		return fmt.Errorf("scheduler: dry run: %w", err)
	}
	return nil
}

// Jobs asks the wrapped backend about the real IDs among ids; the fake
// ones of Submit are absent from the answer.
func (d *DryRun) Jobs(ctx context.Context, ids []string) (map[string]Job, error) {
	real := realIDs(ids)
	if d.b == nil || len(real) == 0 {
		return map[string]Job{}, nil
	}
	return d.b.Jobs(ctx, real)
}

// History asks the wrapped backend about the real IDs among ids.
func (d *DryRun) History(ctx context.Context, ids []string) (map[string]Job, error) {
	real := realIDs(ids)
	if d.b == nil || len(real) == 0 {
		return map[string]Job{}, nil
	}
	return d.b.History(ctx, real)
}

// Named asks the wrapped backend.
func (d *DryRun) Named(ctx context.Context, name string, since time.Time) ([]Job, error) {
	if d.b == nil {
		return nil, nil
	}
	return d.b.Named(ctx, name, since)
}

// Partitions asks the wrapped backend.
func (d *DryRun) Partitions(ctx context.Context) ([]site.Live, error) {
	if d.b == nil {
		return nil, errors.New("scheduler: dry run without a cluster: no live partitions")
	}
	return d.b.Partitions(ctx)
}

func realIDs(ids []string) []string {
	real := make([]string, 0, len(ids))
	for _, id := range ids {
		if !strings.HasPrefix(id, DryRunPrefix) {
			real = append(real, id)
		}
	}
	return real
}

var _ Backend = (*DryRun)(nil)
