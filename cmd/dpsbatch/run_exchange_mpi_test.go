//go:build mpi

package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRunExchangeSrunMPI runs the exchange pipeline of
// run_exchange_test.go on the MPI communicator, on one simulated node
// (PMIx steps do not span the simulated nodes of one host):
// `srun -N1 -n3 --mpi=pmix`, 2 slices, then -n4, 3 slices, where the ring
// and the mapper's line differ. The ranks run this test binary, built with
// the mpi tag, as dpsbatch.
func TestRunExchangeSrunMPI(t *testing.T) {
	needCluster(t, 1)
	needMPIBuild(t)
	bin := selfAsDpsbatch(t)
	for _, size := range []int{3, 4} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			dir := exchangeRunDir(t, "xmpi")
			stdout, stderr, code := runCmd(t, 3*time.Minute, append(mpiEnv(), asDpsbatch+"=1"), "srun", "-N1", "-n"+strconv.Itoa(size),
				"--mpi=pmix", "--time=3", "-J", "dpsbatch-test-xmpi", bin, "run", "--comm", "mpi", "--run-dir", dir)
			t.Logf("stdout:\n%s", stdout)
			want := fmt.Sprintf("visits: %d run, %d done, 0 failed", len(exchangeVisits), len(exchangeVisits))
			if code != 0 || !strings.Contains(stdout, want) {
				t.Fatalf("srun: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			if nodes := distinct(rankNodes(t, stderr, size)); len(nodes) != 1 {
				t.Errorf("ranks ran on %v, want one simulated node", nodes)
			}
			checkExchangeOutputs(t, dir, size)
		})
	}
}
