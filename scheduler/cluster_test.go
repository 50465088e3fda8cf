package scheduler_test

import (
	"testing"

	"github.com/dpsbatch/dpsbatch/internal/testenv"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/scheduler/schedtest"
)

// cliTools are the tools the CLI backend runs, as NeedCluster checks them.
var cliTools = []string{"sbatch", "squeue", "scontrol", "scancel", "sacct"}

// TestCLIBackend runs the shared backend suite against the local cluster
// through Slurm's command line tools.
func TestCLIBackend(t *testing.T) {
	testenv.NeedCluster(t, 4, cliTools...)
	b, err := scheduler.NewCLI(scheduler.CLIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	schedtest.Run(t, b, schedtest.Options{})
}
