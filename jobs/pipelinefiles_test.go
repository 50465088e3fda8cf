package jobs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/input/inputtest"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
)

const scriptPolicy = `pipeline: tiny
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
locations:
  input: "{pipelinedir}/data/{visit}"
stages:
  - name: measure
    type: exec
    settings:
      command: [sh, "{pipelinedir}/bin/measure.sh", "{input}/ccd{ccd}.txt"]
`

// A run keeps a copy of the files its policy names under {pipelinedir},
// and its jobs read the copy: editing the folder changes no run, until
// resume --refresh takes a new copy on purpose and records when.
func TestRunKeepsItsPipelineFiles(t *testing.T) {
	e := newEnv(t, 2)
	e.policy = e.write("pipeline.yaml", scriptPolicy)
	e.write("bin/measure.sh", "echo one\n")
	e.write("data/v001/ccd1.txt", "1\n")
	e.write("notes/big.txt", "not named by the policy\n")
	dir := e.submit("run1")
	l := rundir.Layout{Dir: dir}
	_, set, err := rundir.ReadSettings(l)
	if err != nil {
		t.Fatal(err)
	}
	if set.PipelineDir != l.PipelineFiles() || set.PipelineFrom != filepath.Dir(e.policy) || set.PipelineCopied.IsZero() {
		t.Errorf("settings: pipeline dir %q from %q at %v; want the run's copy, from the policy's folder", set.PipelineDir, set.PipelineFrom, set.PipelineCopied)
	}
	if got := string(readAll(t, filepath.Join(l.PipelineFiles(), "bin", "measure.sh"))); got != "echo one\n" {
		t.Errorf("copied script %q", got)
	}
	if _, err := os.Stat(filepath.Join(l.PipelineFiles(), "data", "v001", "ccd1.txt")); err != nil {
		t.Errorf("the input location's files: %v", err)
	}
	if _, err := os.Stat(filepath.Join(l.PipelineFiles(), "notes")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file the policy does not name was copied: %v", err)
	}

	e.write("bin/measure.sh", "echo two\n") // edited between attempts
	e.fake.forget("1001", "TIMEOUT")
	if got := string(readAll(t, filepath.Join(l.PipelineFiles(), "bin", "measure.sh"))); got != "echo one\n" {
		t.Fatalf("the run's copy changed with the folder: %q", got)
	}
	o := e.resumeOpts(dir)
	o.Refresh, o.Now = true, func() time.Time { return runtest.FixedNow().Add(time.Hour) }
	res, err := Resume(context.Background(), o)
	if err != nil || len(res.Refreshed) != 1 || res.Refreshed[0] != filepath.Dir(e.policy) {
		t.Fatalf("Resume --refresh: %+v, %v; want the copy taken again from the policy's folder", res, err)
	}
	if got := string(readAll(t, filepath.Join(l.PipelineFiles(), "bin", "measure.sh"))); got != "echo two\n" {
		t.Errorf("after --refresh the copy holds %q", got)
	}
	if _, set, _ = rundir.ReadSettings(l); !set.PipelineCopied.Equal(runtest.FixedNow().Add(time.Hour)) {
		t.Errorf("the refresh recorded at %v", set.PipelineCopied)
	}
}

// A policy naming too much under {pipelinedir} is bad input, and leaves
// no run behind.
func TestPipelineFilesTooBig(t *testing.T) {
	defer func(n int64) { maxPipelineFiles = n }(maxPipelineFiles)
	maxPipelineFiles = 10
	e := newEnv(t, 2)
	e.policy = e.write("pipeline.yaml", scriptPolicy)
	e.write("bin/measure.sh", "echo a script longer than ten bytes\n")
	_, err := Submit(context.Background(), e.opts("big"))
	inputtest.WantInvalid(t, "submit", err, "{pipelinedir}")
	if ents := e.rootEntries(); len(ents) != 0 {
		t.Errorf("runs root holds %v; want nothing", ents)
	}
	if _, _, n := e.fake.calls(); n != 0 {
		t.Errorf("%d submissions", n)
	}
}
