//go:build mpi

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunInFlightSrunMPI runs the exchange pipeline of
// run_exchange_test.go with its visits in flight together (in_flight: 3)
// on the MPI communicator, `srun -N1 -n4 --mpi=pmix`: every collective of
// every visit still comes in one order on every rank, the exchange
// included, and each visit's outputs are what a local run of one visit at
// a time makes.
func TestRunInFlightSrunMPI(t *testing.T) {
	needCluster(t, 1)
	needMPIBuild(t)
	bin := selfAsDpsbatch(t)
	dir := exchangeRunDir(t, "xmpi-flight")
	policy := filepath.Join(dir, "pipeline.yaml")
	text, err := os.ReadFile(policy)
	if err != nil || !strings.Contains(string(text), "\nstages:\n") {
		t.Fatalf("the exchange pipeline: %v", err)
	}
	if err := os.WriteFile(policy, []byte(strings.Replace(string(text), "\nstages:\n", "\nin_flight: 3\nstages:\n", 1)), 0o755); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCmd(t, 3*time.Minute, append(mpiEnv(), asDpsbatch+"=1"), "srun", "-N1", "-n4",
		"--mpi=pmix", "--time=3", "-J", "dpsbatch-test-xmpi-flight", bin, "run", "--comm", "mpi", "--run-dir", dir)
	want := fmt.Sprintf("visits: %d run, %d done, 0 failed", len(exchangeVisits), len(exchangeVisits))
	if code != 0 || !strings.Contains(stdout, want) {
		t.Fatalf("srun: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	// The outputs are compared with a local run of the policy as written,
	// one visit at a time: put it back.
	if err := os.WriteFile(policy, text, 0o755); err != nil {
		t.Fatal(err)
	}
	checkExchangeOutputs(t, dir, 4)
}
