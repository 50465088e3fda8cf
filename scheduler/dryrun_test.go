package scheduler_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/site"
)

// recorder is a Backend that records the calls it gets.
type recorder struct{ calls []string }

func (r *recorder) Submit(ctx context.Context, s scheduler.Submission) (string, error) {
	r.calls = append(r.calls, "Submit")
	return "1", nil
}

func (r *recorder) Jobs(ctx context.Context, ids []string) (map[string]scheduler.Job, error) {
	r.calls = append(r.calls, "Jobs "+strings.Join(ids, ","))
	return map[string]scheduler.Job{"7": {ID: "7", State: "RUNNING"}}, nil
}

func (r *recorder) History(ctx context.Context, ids []string) (map[string]scheduler.Job, error) {
	r.calls = append(r.calls, "History "+strings.Join(ids, ","))
	return nil, scheduler.ErrNoAccounting
}

func (r *recorder) Named(ctx context.Context, name string, since time.Time) ([]scheduler.Job, error) {
	r.calls = append(r.calls, "Named "+name)
	return nil, nil
}

func (r *recorder) Cancel(ctx context.Context, id, signal string) error {
	r.calls = append(r.calls, "Cancel")
	return nil
}

func (r *recorder) Partitions(ctx context.Context) ([]site.Live, error) {
	r.calls = append(r.calls, "Partitions")
	return []site.Live{{Name: "debug"}}, nil
}

var _ scheduler.Backend = (*recorder)(nil)

func TestDryRun(t *testing.T) {
	ctx := context.Background()
	inner := &recorder{}
	var out strings.Builder
	d := scheduler.NewDryRun(inner, &out)

	id, err := d.Submit(ctx, scheduler.Submission{Script: []byte("#!/bin/bash\necho hi"), Dir: "/runs/a", Dependency: "afterany:5"})
	if err != nil || id != "dry-run-1" {
		t.Fatalf("Submit = %q, %v; want dry-run-1", id, err)
	}
	id2, _ := d.Submit(ctx, scheduler.Submission{Script: []byte("true\n"), Dir: "/runs/b"})
	if id2 != "dry-run-2" {
		t.Errorf("second Submit = %q, want dry-run-2", id2)
	}
	if _, err := d.Submit(ctx, scheduler.Submission{Script: []byte("true"), Dir: "relative"}); err == nil {
		t.Error("Submit with a relative directory: no error")
	}
	if err := d.Cancel(ctx, "7", ""); err != nil {
		t.Fatal(err)
	}
	if err := d.Cancel(ctx, "7", "USR1"); err != nil {
		t.Fatal(err)
	}
	want := "dry run: would submit job dry-run-1: sbatch --parsable --chdir=/runs/a --dependency=afterany:5 with this script on stdin:\n" +
		"#!/bin/bash\necho hi\n" +
		"dry run: would submit job dry-run-2: sbatch --parsable --chdir=/runs/b with this script on stdin:\ntrue\n" +
		"dry run: would cancel job 7: scancel 7\n" +
		"dry run: would send SIGUSR1 to job 7: scancel --signal=USR1 7\n"
	if out.String() != want {
		t.Errorf("printed\n%s\nwant\n%s", out.String(), want)
	}

	// Queries pass through, without the fake IDs.
	jobs, err := d.Jobs(ctx, []string{id, "7"})
	if err != nil || jobs["7"].State != "RUNNING" {
		t.Errorf("Jobs = %v, %v", jobs, err)
	}
	if _, err := d.History(ctx, []string{"7", id2}); !errors.Is(err, scheduler.ErrNoAccounting) {
		t.Errorf("History = %v, want the inner backend's ErrNoAccounting", err)
	}
	if jobs, err := d.Jobs(ctx, []string{id}); err != nil || len(jobs) != 0 {
		t.Errorf("Jobs of fake IDs only = %v, %v; want nothing", jobs, err)
	}
	if lives, err := d.Partitions(ctx); err != nil || len(lives) != 1 {
		t.Errorf("Partitions = %v, %v", lives, err)
	}
	if want := []string{"Jobs 7", "History 7", "Partitions"}; !slices.Equal(inner.calls, want) {
		t.Errorf("the wrapped backend got %q, want %q (never Submit or Cancel)", inner.calls, want)
	}

	// Without a cluster.
	alone := scheduler.NewDryRun(nil, &out)
	if _, err := alone.Submit(ctx, scheduler.Submission{Script: []byte("true"), Dir: "/d"}); err != nil {
		t.Error(err)
	}
	if jobs, err := alone.Jobs(ctx, []string{"7"}); err != nil || len(jobs) != 0 {
		t.Errorf("Jobs without a backend = %v, %v", jobs, err)
	}
	if _, err := alone.Partitions(ctx); err == nil {
		t.Error("Partitions without a backend: no error")
	}
}
