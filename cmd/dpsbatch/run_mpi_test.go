//go:build mpi

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// needMPIBuild checks that an MPI-capable binary can be built, or skips.
func needMPIBuild(t *testing.T) {
	t.Helper()
	if err := exec.Command("pkg-config", "--exists", "ompi").Run(); err != nil {
		slurmSkipOrFail(t, "Open MPI's development files not found (pkg-config ompi: %v; install libopenmpi-dev)", err)
	}
}

// mpiEnv is the environment of the MPI runs: Open MPI yields while it
// waits, since the ranks outnumber the cores.
func mpiEnv() []string { return cleanEnv("OMPI_MCA_mpi_yield_when_idle=1") }

// TestRunSrunMPI runs the example as 3 MPI ranks on one simulated node:
// `srun -N1 -n3 --mpi=pmix dpsbatch run --comm mpi` (PMIx steps do not span
// the simulated nodes of one host: their slurmd share /tmp/spmix_appdir_*).
func TestRunSrunMPI(t *testing.T) {
	needCluster(t, 1)
	needMPIBuild(t)
	bin := buildBinary(t, "mpi")
	dir := exampleRunDir(t, "mpi")
	stdout, stderr, code := runCmd(t, 3*time.Minute, mpiEnv(), "srun", "-N1", "-n3", "--mpi=pmix", "--time=3",
		"-J", "dpsbatch-test-mpi", bin, "run", "--comm", "mpi", "--run-dir", dir)
	t.Logf("stdout:\n%s", stdout)
	if code != 0 || !strings.Contains(stdout, "visits: 3 run, 3 done, 0 failed") {
		t.Fatalf("srun: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	nodes := rankNodes(t, stderr, 3)
	t.Logf("nodes by rank: %v", nodes)
	if got := distinct(nodes); len(got) != 1 || !strings.HasPrefix(got[0], "n") {
		t.Errorf("ranks ran on %v, want one simulated node", got)
	}
	checkAgainstLocal(t, dir)

	// --comm auto picks mpi under srun --mpi=pmix.
	adir := exampleRunDir(t, "auto")
	stdout, stderr, code = runCmd(t, 3*time.Minute, mpiEnv(), "srun", "-N1", "-n2", "--mpi=pmix", "--time=3",
		"-J", "dpsbatch-test-mpi", bin, "run", "--run-dir", adir)
	if code != 0 || !strings.Contains(stdout, "visits: 3 run, 3 done, 0 failed") || strings.Contains(stderr, "comm: tcp") {
		t.Errorf("--comm auto: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

// TestRunMpirunAcrossNodes runs the example as 3 MPI ranks over two
// simulated nodes: a batch job whose script runs mpirun (tcp between the
// ranks; shared memory crashes across simulated nodes of one host). The
// job is watched with squeue and sacct at short intervals.
func TestRunMpirunAcrossNodes(t *testing.T) {
	needCluster(t, 2, "sbatch", "squeue", "scancel")
	needMPIBuild(t)
	if _, err := exec.LookPath("mpirun"); err != nil {
		slurmSkipOrFail(t, "mpirun not found (install openmpi-bin): %v", err)
	}
	bin := buildBinary(t, "mpi")
	dir := exampleRunDir(t, "mpirun")
	out := filepath.Join(filepath.Dir(dir), "job.out")
	// Every value below is a temporary path of the test's own making,
	// without spaces or quotes.
	script := "mpirun --allow-run-as-root --mca btl self,tcp " + bin + " run --comm mpi --run-dir " + dir
	stdout, stderr, code := runCmd(t, time.Minute, mpiEnv(), "sbatch", "--parsable", "-N2", "-n3", "--time=3",
		"-J", "dpsbatch-test-mpirun", "-o", out, "--export=ALL", "--wrap", script)
	if code != 0 {
		t.Fatalf("sbatch: exit %d\n%s%s", code, stdout, stderr)
	}
	job := strings.TrimSpace(strings.SplitN(stdout, ";", 2)[0])
	t.Logf("job %s", job)
	t.Cleanup(func() { exec.Command("scancel", job).Run() })

	start := time.Now()
	state := waitJob(t, job, 3*time.Minute)
	log, _ := os.ReadFile(out)
	t.Logf("job %s ended in about %v, state %q; output:\n%s", job, time.Since(start).Round(100*time.Millisecond), state, log)
	if state != "" && state != "COMPLETED" {
		t.Fatalf("job %s: state %s", job, state)
	}
	if !strings.Contains(string(log), "visits: 3 run, 3 done, 0 failed") {
		t.Fatalf("no summary in the job's output")
	}
	nodes := rankNodes(t, string(log), 3)
	t.Logf("nodes by rank: %v", nodes)
	if got := distinct(nodes); len(got) != 2 {
		t.Errorf("ranks ran on %v, want two simulated nodes", got)
	}
	if sacct, err := exec.LookPath("sacct"); err == nil {
		o, _ := exec.Command(sacct, "-n", "-P", "-j", job, "-o", "jobid,jobname,state,exitcode,nodelist").CombinedOutput()
		t.Logf("sacct:\n%s", o)
	}
	checkAgainstLocal(t, dir)
}

// waitJob polls squeue every 200ms until the job leaves the queue, then
// returns its final state from sacct ("" when accounting has none yet).
func waitJob(t *testing.T, job string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		o, err := exec.CommandContext(ctx, "squeue", "-h", "-j", job, "-o", "%T").CombinedOutput()
		cancel()
		s := strings.TrimSpace(string(o))
		// squeue forgets a finished job (error "Invalid job id") or
		// shows it no more.
		if s == "" || err != nil && strings.Contains(s, "Invalid job id") {
			break
		}
		if err != nil {
			t.Fatalf("squeue -j %s: %v: %s", job, err, o)
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after %v", job, s, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := exec.LookPath("sacct"); err != nil {
		return ""
	}
	// Accounting records the end a moment after squeue drops the job.
	for range 50 {
		o, err := exec.Command("sacct", "-n", "-X", "-P", "-j", job, "-o", "state").CombinedOutput()
		if err != nil {
			return ""
		}
		s := strings.TrimSpace(string(o))
		if s != "" && !slices.Contains([]string{"PENDING", "RUNNING", "COMPLETING"}, s) {
			return s
		}
		time.Sleep(200 * time.Millisecond)
	}
	return ""
}
