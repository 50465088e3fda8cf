//go:build mpi

package main

import "testing"

// TestRunStopSignalSrunMPI stops a run of 3 MPI ranks on one simulated
// node (`srun -N1 -n3 --mpi=pmix`) with SIGUSR1, and another with SIGTERM:
// the same clean stop as over tcp (run_signal_test.go).
func TestRunStopSignalSrunMPI(t *testing.T) {
	needCluster(t, 1, "squeue", "scancel")
	needMPIBuild(t)
	bin := buildBinary(t, "mpi")
	for _, sig := range []string{"USR1", "TERM"} {
		t.Run(sig, func(t *testing.T) {
			stopUnderSrun(t, sig, 2, mpiEnv(), []string{"-N1", "-n3", "--mpi=pmix"}, bin, "--comm", "mpi")
		})
	}
}
