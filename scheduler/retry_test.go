package scheduler

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// These tests run the CLI backend against fake tools that fail for a
// reason that passes a number of times, then succeed.

// failing is a fake tool's body that fails with message on standard
// error for its first n runs, counting them in DIR/NAME.runs, then runs
// then.
func failing(dir, name string, n int, message, then string) string {
	runs := filepath.Join(dir, name+".runs")
	return "echo x >> '" + runs + "'\n" +
		"if [ $(wc -l < '" + runs + "') -le " + strconv.Itoa(n) + " ]; then echo '" + message + "' >&2; exit 1; fi\n" + then
}

// runs is how many times the fake tool name ran.
func runs(t *testing.T, dir, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name+".runs"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// TestCLIRetrySqueueFake: squeue fails twice while slurmctld restarts,
// then answers; Jobs returns its answer.
func TestCLIRetrySqueueFake(t *testing.T) {
	dir := t.TempDir()
	pathDir, _ := fakeSqueue(t, false, false)
	// Wrap the fake squeue in one that fails twice first.
	fake := filepath.Join(pathDir, "squeue-ok")
	if err := os.Rename(filepath.Join(pathDir, "squeue"), fake); err != nil {
		t.Fatal(err)
	}
	body := "#!/bin/sh\n" + failing(dir, "squeue", 2,
		"slurm_load_jobs error: Unable to contact slurm controller (connect failure)", `exec '`+fake+`' "$@"`)
	if err := os.WriteFile(filepath.Join(pathDir, "squeue"), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := NewCLI(CLIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := c.Jobs(context.Background(), []string{"6384"})
	if err != nil || jobs["6384"].State != "FAILED" {
		t.Errorf("Jobs = %v, %v; want job 6384 after squeue failed twice", jobs, err)
	}
	if n := runs(t, dir, "squeue"); n != 3 {
		t.Errorf("squeue ran %d times, want 3", n)
	}
}

// TestCLIRetrySbatchFake: sbatch refused for now (slurmctld restarting,
// then busy) is run again; each failure proves no job was made, so the
// job is not looked up.
func TestCLIRetrySbatchFake(t *testing.T) {
	dir := t.TempDir()
	fakeDir := fakeTools(t, map[string]string{
		"sbatch": failing(dir, "sbatch", 2,
			"sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)", "echo 91"),
	})
	c, err := NewCLI(CLIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.Submit(context.Background(), Submission{Script: []byte("true"), Dir: "/d", Name: "run:a1-tok"})
	if err != nil || id != "91" {
		t.Errorf("Submit = %q, %v; want 91 after two refusals", id, err)
	}
	if n := runs(t, dir, "sbatch"); n != 3 {
		t.Errorf("sbatch ran %d times, want 3", n)
	}
	if _, err := os.Stat(filepath.Join(fakeDir, "squeue.args")); err == nil {
		t.Error("Submit looked the job up after errors that prove sbatch made none")
	}
}

// fakeNamedSqueue is a squeue body that prints job id called name, for
// any query, once DIR/submitted exists.
func fakeNamedSqueue(dir, id, name string) string {
	return `[ -e '` + dir + `/submitted' ] || exit 0
sep=; for a in "$@"; do case $a in --Format=JobID:0*) f=${a#--Format=JobID:0}; sep=${f%%,*};; esac; done
printf '%s\n' "` + id + `${sep}` + id + `${sep}PENDING${sep}None${sep}0${sep}1795452332${sep}N/A${sep}N/A${sep}${sep}debug${sep}` + name + `${sep}"`
}

// TestCLIRetrySbatchTimeoutFake: an sbatch that timed out waiting for
// slurmctld's answer may have made the job. Submit looks the job up by its
// name before running sbatch again: it returns the job when slurmctld made
// it, and submits again when not. Without a name it cannot look, and does
// not run sbatch again.
func TestCLIRetrySbatchTimeoutFake(t *testing.T) {
	const timeout = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"
	for _, tc := range []struct {
		name      string
		made      bool   // the timed-out sbatch made the job
		jobName   string // Submission.Name
		wantID    string
		wantRuns  int
		wantError bool
	}{
		{name: "made", made: true, jobName: "run:a1-made", wantID: "55", wantRuns: 1},
		{name: "not-made", jobName: "run:a1-lost", wantID: "56", wantRuns: 2},
		{name: "no-name", wantRuns: 1, wantError: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			mark := ""
			if tc.made {
				mark = "touch '" + dir + "/submitted'\n"
			}
			fakeTools(t, map[string]string{
				"sbatch": mark + failing(dir, "sbatch", 1, timeout, "echo 56"),
				"squeue": fakeNamedSqueue(dir, "55", tc.jobName),
			})
			c, err := NewCLI(CLIOptions{})
			if err != nil {
				t.Fatal(err)
			}
			id, err := c.Submit(context.Background(), Submission{Script: []byte("true"), Dir: "/d", Name: tc.jobName})
			if id != tc.wantID || (err != nil) != tc.wantError {
				t.Errorf("Submit = %q, %v; want %q (error: %v)", id, err, tc.wantID, tc.wantError)
			}
			if tc.wantError && (err == nil || !strings.Contains(err.Error(), "Socket timed out")) {
				t.Errorf("Submit error %v, want sbatch's", err)
			}
			if n := runs(t, dir, "sbatch"); n != tc.wantRuns {
				t.Errorf("sbatch ran %d times, want %d", n, tc.wantRuns)
			}
		})
	}
}

// TestCLIRetryCancelFake: scancel that timed out after slurmctld
// cancelled the job finds it ending on the next try: cancelled. A signal
// that timed out is not sent again.
func TestCLIRetryCancelFake(t *testing.T) {
	const timeout = "scancel: error: Kill job error on job id 7: Socket timed out on send/recv operation"
	dir := t.TempDir()
	fakeTools(t, map[string]string{
		"scancel": failing(dir, "scancel", 1, timeout,
			"echo 'scancel: error: Kill job error on job id 7: Job/step already completing or completed' >&2; exit 1"),
	})
	c, err := NewCLI(CLIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Cancel(context.Background(), "7", ""); err != nil {
		t.Errorf("Cancel = %v, want success: the first try cancelled the job", err)
	}
	if n := runs(t, dir, "scancel"); n != 2 {
		t.Errorf("scancel ran %d times, want 2", n)
	}
	os.Remove(filepath.Join(dir, "scancel.runs"))
	if err := c.Cancel(context.Background(), "7", "USR1"); err == nil || !strings.Contains(err.Error(), "Socket timed out") {
		t.Errorf("Cancel(USR1) = %v, want the timeout", err)
	}
	if n := runs(t, dir, "scancel"); n != 1 {
		t.Errorf("scancel --signal ran %d times, want 1: a step must not get a signal twice", n)
	}
}
