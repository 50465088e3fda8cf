package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Stopping a distributed run by signal. Slurm delivers a step's signal
// (`scancel --signal=SIG JOB.STEP`, what srun forwards, the SIGTERM of a
// time limit) to every process of the step: each task, rank 0 and the
// slices alike, and every process they started, the exec stage's
// programs included, even in a process group or session of their own
// (proctrack follows the process tree). Rank 0 must stop at the next visit
// boundary: the visit in flight finishes, with complete outputs, and no
// later visit starts; the run exits 130 (interrupted) and the summary
// says why it stopped. The slices must not end the run on their own.

// slowPipeline's only slow stage runs slow.sh per CCD: it marks the
// visit started, sleeps slowFor and prints the value the output stage
// writes. Its program ignores the stop signals (ignore_stop_signals), so
// that a graceful stop lets the visit in flight finish; a program that
// does not is killed with it and its visit interrupted (stopsignal tests).
const slowPipeline = `pipeline: slow
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: %d}}
locations:
  output: "output/{visit}"
stages:
  - name: slow
    type: exec
    settings:
      command: [sh, "{pipelinedir}/slow.sh"]
      produces: [value]
      ignore_stop_signals: true
  - name: write
    type: output
    settings:
      files: {value: "{output}/ccd{ccd}.txt"}
`

const slowFor = 2 // seconds

const slowScript = `#!/bin/sh
mkdir -p "$DPSBATCH_RUN_DIR/started"
: > "$DPSBATCH_RUN_DIR/started/$DPSBATCH_VISIT-$DPSBATCH_DATAID"
sleep %d
printf '{"value": "visit %%s %%s done"}\n' "$DPSBATCH_VISIT" "$DPSBATCH_DATAID"
`

const slowVisits = 6

// slowRunDir writes the slow pipeline for a run of slices slices (one
// CCD each) with slowVisits visits, 1..slowVisits.
func slowRunDir(t *testing.T, slices int) string {
	t.Helper()
	dir := filepath.Join(worldReadableTemp(t), "slow")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	visits := "visitId\n"
	for v := 1; v <= slowVisits; v++ {
		visits += strconv.Itoa(v) + "\n"
	}
	for name, text := range map[string]string{
		"pipeline.yaml": fmt.Sprintf(slowPipeline, slices),
		"slow.sh":       fmt.Sprintf(slowScript, slowFor),
		"visits.csv":    visits,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// started lists the visits whose slow stage began on at least one CCD.
func started(dir string) map[int]bool {
	out := map[int]bool{}
	names, _ := filepath.Glob(filepath.Join(dir, "started", "*-ccd=*"))
	for _, n := range names {
		v, _, _ := strings.Cut(filepath.Base(n), "-")
		if i, err := strconv.Atoi(v); err == nil {
			out[i] = true
		}
	}
	return out
}

// runningStep returns the ID (JOB.STEP) of the one srun step of the job
// named name, or "".
func runningStep(ctx context.Context, name string) string {
	out, err := exec.CommandContext(ctx, "squeue", "-h", "-n", name, "-o", "%i").Output()
	jobs := strings.Fields(string(out))
	if err != nil || len(jobs) != 1 {
		return ""
	}
	out, err = exec.CommandContext(ctx, "squeue", "-h", "-s", "-j", jobs[0], "-o", "%i").Output()
	if err != nil {
		return ""
	}
	var steps []string
	for _, s := range strings.Fields(string(out)) {
		if _, n, ok := strings.Cut(s, "."); ok && s == jobs[0]+"."+n {
			if _, err := strconv.Atoi(n); err == nil {
				steps = append(steps, s)
			}
		}
	}
	if len(steps) != 1 {
		return ""
	}
	return steps[0]
}

var exitedTask = regexp.MustCompile(`task (\d+): (Exited with exit code \d+|Killed|Terminated)[^\n]*`)

// stopUnderSrun starts `srun SRUNARGS BIN run --run-dir DIR RUNARGS` on a
// slow pipeline of slices slices, waits until the second visit is in
// flight, sends sig to the step with `scancel --signal=SIG JOB.STEP` and
// checks the clean stop described at the top of this file.
func stopUnderSrun(t *testing.T, sig string, slices int, env []string, srunArgs []string, bin string, runArgs ...string) {
	t.Helper()
	dir := slowRunDir(t, slices)
	name := fmt.Sprintf("dpsbatch-test-stop-%d-%d", os.Getpid(), time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	args := append(append([]string{"--time=3", "-J", name}, srunArgs...), bin, "run", "--run-dir", dir)
	args = append(args, runArgs...)
	cmd := exec.CommandContext(ctx, "srun", args...)
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t.Logf("$ srun %s", strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- cmd.Wait() }()
	t.Cleanup(func() { exec.Command("scancel", "-n", name).Run() })
	fail := func(format string, args ...any) {
		t.Helper()
		exec.Command("scancel", "-n", name).Run()
		<-ended
		t.Fatalf(format+"\nstdout:\n%s\nstderr:\n%s", append(args, &stdout, &stderr)...)
	}

	// Visit 2 in flight: its slow stage sleeps for slowFor seconds.
	for !started(dir)[2] {
		select {
		case err := <-ended:
			t.Fatalf("the run ended (%v) before visit 2 started\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
		case <-ctx.Done():
			fail("visit 2 did not start within the deadline")
		case <-time.After(20 * time.Millisecond):
		}
	}
	step := runningStep(ctx, name)
	if step == "" {
		fail("no running step of job %s", name)
	}
	signalled := time.Now()
	if out, err := exec.CommandContext(ctx, "scancel", "--signal="+sig, step).CombinedOutput(); err != nil {
		fail("scancel --signal=%s %s: %v: %s", sig, step, err, out)
	}
	t.Logf("scancel --signal=%s %s", sig, step)
	select {
	case <-ended:
	case <-ctx.Done():
		fail("srun did not end within the deadline after %s", sig)
	}
	took := time.Since(signalled)
	code := cmd.ProcessState.ExitCode()
	t.Logf("srun exited %d, %v after the signal\nstdout:\n%s\nstderr:\n%s", code, took.Round(time.Millisecond), &stdout, &stderr)

	// The visits started are 1..k, k >= 2 (visit 2 was in flight), and
	// each of them finished: every CCD's output is there. None after k
	// started.
	st := started(dir)
	k := 0
	for v := range st {
		k = max(k, v)
	}
	if k < 2 || k == slowVisits {
		t.Errorf("visits up to %d started, want the stop after visit 2 (or soon after), before the last", k)
	}
	for v := 1; v <= k; v++ {
		if !st[v] {
			t.Errorf("visit %d did not start, but visit %d did", v, k)
		}
		for c := 1; c <= slices; c++ {
			path := filepath.Join(dir, "output", strconv.Itoa(v), fmt.Sprintf("ccd%d.txt", c))
			want := fmt.Sprintf("visit %d ccd=%d done", v, c)
			if data, err := os.ReadFile(path); err != nil || string(data) != want {
				t.Errorf("visit %d started but did not finish: %s: %q (%v), want %q", v, path, data, err, want)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "output", strconv.Itoa(k+1))); err == nil {
		t.Errorf("visit %d has outputs", k+1)
	}
	if code != exitInterrupted {
		t.Errorf("srun exited %d, want %d (interrupted)", code, exitInterrupted)
	}
	for _, m := range exitedTask.FindAllStringSubmatch(stderr.String(), -1) {
		if m[1] != "0" {
			t.Errorf("slice ended badly: %s", m[0])
		}
	}
	summary := fmt.Sprintf("visits: %d run, %d done, 0 failed", k, k)
	if s := stdout.String(); !strings.Contains(s, summary) || !strings.Contains(s, "stopped early: stop requested") {
		t.Errorf("the summary should say %q and \"stopped early: stop requested\":\n%s", summary, s)
	}
	// The slices are waiting for rank 0 when it ends: they end with it.
	if took > time.Duration(slowFor+20)*time.Second {
		t.Errorf("the run took %v to end after the signal", took)
	}
}

// TestRunStopSignalSrunTCP stops a run of one rank per simulated node
// (`srun -N3 -n3 --mpi=none`, tcp) with SIGUSR1, and another with SIGTERM.
func TestRunStopSignalSrunTCP(t *testing.T) {
	needCluster(t, 3, "squeue", "scancel")
	bin := buildBinary(t, "")
	for _, sig := range []string{"USR1", "TERM"} {
		t.Run(sig, func(t *testing.T) {
			stopUnderSrun(t, sig, 2, cleanEnv(), []string{"-N3", "-n3", "--mpi=none"}, bin, "--comm", "tcp")
		})
	}
}
