//go:build mpi

package comm_test

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/harness/comm"
)

// NewMPI's tuning: the thread level setting (DPSBATCH_MPI_THREAD) and the
// GOMAXPROCS floor of 2.

// mpiTuningChildEnv makes a re-executed test binary report, per rank,
// GOMAXPROCS after NewMPI.
const mpiTuningChildEnv = "DPSBATCH_MPI_TUNING_CHILD"

func init() {
	if _, ok := os.LookupEnv(mpiTuningChildEnv); !ok {
		return
	}
	c, err := comm.NewMPI()
	if err != nil {
		fmt.Fprintf(os.Stderr, "NewMPI: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("rank %d gomaxprocs %d\n", c.Rank(), runtime.GOMAXPROCS(0))
	if err := c.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "Close: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func TestMPIThreadSettingBadValue(t *testing.T) {
	t.Setenv("DPSBATCH_MPI_THREAD", "multiple")
	c, err := comm.NewMPI() // fails before MPI_Init, so MPI stays free for the other tests
	if err == nil {
		c.Close()
		t.Fatal("NewMPI accepted DPSBATCH_MPI_THREAD=multiple")
	}
	if want := `comm: NewMPI: DPSBATCH_MPI_THREAD="multiple": expected funneled or single`; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

// The shared suite passes with MPI_THREAD_FUNNELED too (the other tests
// run with the default, SINGLE).
func TestMPISuiteThreadFunneled(t *testing.T) {
	mpiNeedMpirun(t)
	out, err := runMPIChild(t, 3, "suite", 3*time.Minute, "DPSBATCH_MPI_THREAD=funneled")
	if err != nil {
		t.Fatalf("mpirun -np 3: %v; output:\n%s", err, out)
	}
	for r := range 3 {
		if want := fmt.Sprintf("mpi test rank %d of 3 ok", r); !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
}

// mpirun binds each of 2 ranks to one core, where Go would start with
// GOMAXPROCS 1: NewMPI raises it to 2, unless GOMAXPROCS is set.
func TestMPIGomaxprocsFloor(t *testing.T) {
	mpirun := mpiNeedMpirun(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "gomaxprocs 2"},
		{[]string{"GOMAXPROCS=1"}, "gomaxprocs 1"},
	} {
		cmd := exec.CommandContext(t.Context(), mpirun, "--allow-run-as-root", "--oversubscribe", "--bind-to", "core", "-np", "2", self)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "OMPI_") && !strings.HasPrefix(kv, "PMIX_") && !strings.HasPrefix(kv, "SLURM_") &&
				!strings.HasPrefix(kv, "GOMAXPROCS=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(append(cmd.Env, mpiTuningChildEnv+"=1", "OMPI_MCA_mpi_yield_when_idle=1"), tc.env...)
		cmd.WaitDelay = 10 * time.Second
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", tc.env, err, out)
		}
		for r := range 2 {
			if want := fmt.Sprintf("rank %d %s", r, tc.want); !strings.Contains(string(out), want) {
				t.Errorf("%v: output lacks %q:\n%s", tc.env, want, out)
			}
		}
	}
}

// A rank whose goroutine only makes MPI calls still passes through the Go
// scheduler about every millisecond (passScheduler), so sysmon does not
// take its P in the middle of a call: 200 ms of empty Bcast and Gather
// pairs must see it at least 20 times on every rank (about 200 expected).
func TestMPIPassesScheduler(t *testing.T) {
	mpiNeedMpirun(t)
	out, err := runMPIChild(t, 2, "pace", time.Minute, "OMPI_MCA_mpi_yield_when_idle=1")
	if err != nil {
		t.Fatalf("mpirun -np 2: %v; output:\n%s", err, out)
	}
	for r := range 2 {
		if want := fmt.Sprintf("mpi test rank %d of 2 ok", r); !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
}

// checkPacing is the "pace" child: rank 0 decides how long the pairs go
// on (at least 200 ms and 2,560 pairs: 80 of the communicator's clock
// checks, one every 64 calls, however slow a loaded machine makes each
// call) and tells the others in each Bcast.
func checkPacing(c comm.Comm) error {
	count := comm.CountMPIGosched()
	start := time.Now()
	for pairs := 0; ; pairs++ {
		var more []byte
		if c.Rank() == 0 && (time.Since(start) < 200*time.Millisecond || pairs < 2560) {
			more = []byte{1}
		}
		got, err := c.Bcast(0, more)
		if err != nil {
			return err
		}
		if _, err := c.Gather(0, nil); err != nil {
			return err
		}
		if len(got) == 0 {
			break
		}
	}
	if n := count(); n < 10 {
		return fmt.Errorf("the scheduler ran %d times in %v of MPI calls, want at least 10", n, time.Since(start).Round(time.Millisecond))
	}
	return nil
}
