//go:build mpi

package comm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/harness/comm"
	"github.com/dpsbatch/dpsbatch/harness/comm/commtest"
)

// The MPI tests re-execute this test binary as MPI ranks (under mpirun, or
// alone as a singleton). mpiChildEnv tells a re-executed binary which part
// to play; an init function (not TestMain, which the package's other test
// files may want) dispatches on it before the testing package starts, so
// the child's main goroutine calls NewMPI and owns the communicator.
const mpiChildEnv = "DPSBATCH_MPI_TEST_CHILD"

func init() {
	if role, ok := os.LookupEnv(mpiChildEnv); ok {
		os.Exit(mpiChild(role))
	}
}

// mpiChild runs one rank of a test world and returns its exit code.
func mpiChild(role string) int {
	c, err := comm.NewMPI()
	if role == "ntasks" {
		// Expected to fail: print the error for the parent to check.
		fmt.Printf("NewMPI error: %v\n", err)
		if c != nil {
			c.Close()
		}
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "NewMPI: %v\n", err)
		return 1
	}
	switch role {
	case "suite":
		if err := commtest.Check(c); err != nil {
			c.Abort(err) // ends every rank instead of leaving them waiting
		}
		if err := checkMPIExtra(c); err != nil {
			c.Abort(fmt.Errorf("rank %d: %w", c.Rank(), err))
		}
	case "pace":
		if err := checkPacing(c); err != nil {
			c.Abort(fmt.Errorf("rank %d: %w", c.Rank(), err))
		}
	case "abort":
		// The last rank aborts from another goroutine (so from another OS
		// thread) while every rank's main thread is blocked inside MPI.
		if c.Rank() == c.Size()-1 {
			go func() {
				time.Sleep(300 * time.Millisecond)
				c.Abort(errors.New("deliberate abort from a goroutine"))
			}()
			_, err = c.Exchange(nil, []int{0}) // rank 0 never sends
		} else {
			err = c.Barrier() // the last rank never joins
		}
		fmt.Fprintf(os.Stderr, "rank %d: blocked operation returned (%v) instead of the job ending\n", c.Rank(), err)
		return 1
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", mpiChildEnv, role)
		return 1
	}
	rank, size := c.Rank(), c.Size()
	if err := c.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "rank %d: Close: %v\n", rank, err)
		return 1
	}
	fmt.Printf("mpi test rank %d of %d ok\n", rank, size)
	return 0
}

// mpiFill returns n bytes derived from seed, so receivers can check content.
func mpiFill(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + seed*7 + i>>9)
	}
	return b
}

// mpiSizes straddle the MPI communicator's inline limit (248 bytes) and its
// other paths; index by rank and round.
var mpiSizes = []int{0, 1, 247, 248, 249, 1000, 70000, 3 << 20}

// checkMPIExtra covers what commtest does not: every message path of the
// MPI implementation (inline and longer, up to 64 MiB), scatter's error
// path, and the threading check.
func checkMPIExtra(c comm.Comm) error {
	me, n := c.Rank(), c.Size()
	for round := range len(mpiSizes) {
		size := func(r int) int { return mpiSizes[(r+round)%len(mpiSizes)] }
		seed := func(r int) int { return 100*round + r }

		// Bcast from a round-dependent root.
		root := round % n
		var in []byte
		if me == root {
			in = mpiFill(size(root), seed(root))
		}
		got, err := c.Bcast(root, in)
		if err != nil {
			return fmt.Errorf("bcast round %d: %w", round, err)
		}
		if !bytes.Equal(got, mpiFill(size(root), seed(root))) {
			return fmt.Errorf("bcast round %d: wrong %d bytes", round, len(got))
		}

		// Gather of different mpiSizes per rank.
		parts, err := c.Gather(root, mpiFill(size(me), seed(me)))
		if err != nil {
			return fmt.Errorf("gather round %d: %w", round, err)
		}
		if me == root {
			for r, p := range parts {
				if !bytes.Equal(p, mpiFill(size(r), seed(r))) {
					return fmt.Errorf("gather round %d: part %d wrong (%d bytes, want %d)", round, r, len(p), size(r))
				}
			}
		} else if parts != nil {
			return fmt.Errorf("gather round %d: non-root got parts", round)
		}

		// Scatter of different mpiSizes per rank.
		var out [][]byte
		if me == root {
			for r := range n {
				out = append(out, mpiFill(size(r), seed(r)+1))
			}
		}
		part, err := c.Scatter(root, out)
		if err != nil {
			return fmt.Errorf("scatter round %d: %w", round, err)
		}
		if !bytes.Equal(part, mpiFill(size(me), seed(me)+1)) {
			return fmt.Errorf("scatter round %d: wrong part (%d bytes, want %d)", round, len(part), size(me))
		}

		// Exchange: everyone sends to both ring neighbours and to itself.
		left, right := (me+n-1)%n, (me+1)%n
		send := map[int][]byte{}
		var from []int
		for _, r := range []int{left, right, me} {
			if _, dup := send[r]; !dup {
				send[r] = mpiFill(size(me+r), 1000*me+r)
				from = append(from, r)
			}
		}
		recv, err := c.Exchange(send, from)
		if err != nil {
			return fmt.Errorf("exchange round %d: %w", round, err)
		}
		for _, r := range from {
			if !bytes.Equal(recv[r], mpiFill(size(r+me), 1000*r+me)) {
				return fmt.Errorf("exchange round %d: from %d wrong (%d bytes)", round, r, len(recv[r]))
			}
		}
	}

	// 64 MiB through every operation.
	const big = 64 << 20
	var in []byte
	if me == 0 {
		in = mpiFill(big, 1)
	}
	got, err := c.Bcast(0, in)
	if err != nil || !bytes.Equal(got, mpiFill(big, 1)) {
		return fmt.Errorf("64 MiB bcast: %d bytes, %v", len(got), err)
	}
	var msg []byte
	if me == n-1 {
		msg = mpiFill(big, 2)
	}
	parts, err := c.Gather(0, msg)
	if err != nil || (me == 0 && !bytes.Equal(parts[n-1], mpiFill(big, 2))) {
		return fmt.Errorf("64 MiB gather: %v", err)
	}
	var out [][]byte
	if me == 0 {
		out = make([][]byte, n)
		out[n-1] = mpiFill(big, 3)
	}
	part, err := c.Scatter(0, out)
	if err != nil || (me == n-1 && !bytes.Equal(part, mpiFill(big, 3))) {
		return fmt.Errorf("64 MiB scatter: %d bytes, %v", len(part), err)
	}
	send := map[int][]byte{}
	var from []int
	if me == 0 {
		send[n-1] = mpiFill(big, 4)
	}
	if me == n-1 {
		from = []int{0}
	}
	recv, err := c.Exchange(send, from)
	if err != nil || (me == n-1 && !bytes.Equal(recv[0], mpiFill(big, 4))) {
		return fmt.Errorf("64 MiB exchange: %v", err)
	}

	// A wrong number of scatter parts fails on every rank, and the
	// communicator keeps working.
	if me == 0 {
		out = make([][]byte, n+1)
	}
	if _, err := c.Scatter(0, out); err == nil {
		return errors.New("scatter with wrong part count succeeded")
	}
	if err := c.Barrier(); err != nil {
		return fmt.Errorf("barrier after failed scatter: %w", err)
	}

	// Out-of-range ranks are refused before any communication.
	if _, err := c.Bcast(n, nil); err == nil {
		return errors.New("bcast from rank Size() succeeded")
	}
	if _, err := c.Exchange(nil, []int{-1}); err == nil {
		return errors.New("exchange from rank -1 succeeded")
	}

	// Another goroutine runs on another OS thread: refused, MPI untouched.
	errc := make(chan error)
	go func() { errc <- c.Barrier() }()
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "another OS thread") {
		return fmt.Errorf("barrier from another goroutine: %v, want a thread error", err)
	}
	return c.Barrier()
}

// mpiSkipOrFail skips the test with a reason, or fails it when
// DPSBATCH_TEST_NO_SKIP=1 (set by CI, where MPI must be present).
func mpiSkipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("DPSBATCH_TEST_NO_SKIP") == "1" {
		t.Fatalf("not skipping (DPSBATCH_TEST_NO_SKIP=1): "+format, args...)
	}
	t.Skipf(format, args...)
}

// mpiNeedMpirun returns the path of mpirun, or skips.
func mpiNeedMpirun(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("mpirun")
	if err != nil {
		mpiSkipOrFail(t, "mpirun not found (install openmpi-bin): %v", err)
	}
	return p
}

// runMPIChild runs this test binary as role, under mpirun with np ranks when
// np > 0, else alone. env is added to a copy of this process's environment
// without its Open MPI, PMI(x) and Slurm variables. It returns the combined output
// and the exit error.
func runMPIChild(t *testing.T, np int, role string, timeout time.Duration, env ...string) (string, error) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var cmd *exec.Cmd
	if np > 0 {
		cmd = exec.CommandContext(ctx, mpiNeedMpirun(t), "--allow-run-as-root", "--oversubscribe",
			"-np", fmt.Sprint(np), "-x", mpiChildEnv, self)
	} else {
		cmd = exec.CommandContext(ctx, self)
	}
	// Inherited launch variables (the tests may run inside a Slurm step or
	// under mpirun themselves) would change how the children start.
	for _, kv := range os.Environ() {
		keep := !strings.HasPrefix(kv, mpiChildEnv+"=")
		for _, prefix := range []string{"OMPI_", "PMIX_", "PMI_", "SLURM_"} {
			keep = keep && !strings.HasPrefix(kv, prefix)
		}
		if keep {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, mpiChildEnv+"="+role,
		// A singleton started as root runs Open MPI's helpers as root too.
		"OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
	cmd.Env = append(cmd.Env, env...)
	// On timeout, let mpirun take its ranks down with it.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	b, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s timed out after %v; output:\n%s", cmd, time.Since(start).Round(time.Millisecond), b)
	}
	t.Logf("%s: %v in %v", strings.Join(cmd.Args, " "), err, time.Since(start).Round(time.Millisecond))
	return string(b), err
}

// TestMPISuite runs commtest.Check and the MPI-specific checks under mpirun.
func TestMPISuite(t *testing.T) {
	mpiNeedMpirun(t)
	for _, np := range []int{4, 3} {
		t.Run(fmt.Sprintf("np%d", np), func(t *testing.T) {
			out, err := runMPIChild(t, np, "suite", 3*time.Minute)
			if err != nil {
				t.Fatalf("mpirun -np %d: %v; output:\n%s", np, err, out)
			}
			for r := range np {
				if want := fmt.Sprintf("mpi test rank %d of %d ok", r, np); !strings.Contains(out, want) {
					t.Fatalf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// TestMPISingleton runs the suite on a one-rank world: the binary started
// without mpirun or srun.
func TestMPISingleton(t *testing.T) {
	mpiNeedMpirun(t) // a singleton needs Open MPI's runtime (openmpi-bin) too
	out, err := runMPIChild(t, 0, "suite", time.Minute)
	if err != nil || !strings.Contains(out, "mpi test rank 0 of 1 ok") {
		t.Fatalf("singleton: %v; output:\n%s", err, out)
	}
}

// TestMPISlurmNtasksMismatch starts one process as srun without
// --mpi=pmix would: a singleton world of size 1 while SLURM_NTASKS says 4.
func TestMPISlurmNtasksMismatch(t *testing.T) {
	mpiNeedMpirun(t)
	out, err := runMPIChild(t, 0, "ntasks", time.Minute, "SLURM_NTASKS=4")
	const want = "NewMPI error: comm: MPI world size 1 but SLURM_NTASKS=4: Open MPI started without PMIx (use srun --mpi=pmix or mpirun)"
	if err != nil || !strings.Contains(out, want) {
		t.Fatalf("%v; output lacks %q:\n%s", err, want, out)
	}
}

// TestMPISrunWithoutPMIx starts one process with the environment of an
// srun step task without PMIx (srun --mpi=none): NewMPI must refuse before
// MPI_Init, where Open MPI would abort the process.
func TestMPISrunWithoutPMIx(t *testing.T) {
	mpiNeedMpirun(t)
	out, err := runMPIChild(t, 0, "ntasks", time.Minute, "SLURM_NTASKS=4", "SLURM_STEP_ID=0", "SLURM_PROCID=0")
	const want = "NewMPI error: comm: srun started this task without PMIx (SLURM_NTASKS=4, no PMIX_RANK in the environment): Open MPI cannot start (use srun --mpi=pmix or mpirun)"
	if err != nil || !strings.Contains(out, want) {
		t.Fatalf("%v; output lacks %q:\n%s", err, want, out)
	}
}

// TestMPIMpirunInsideSlurm checks that under mpirun, which sets the world
// size itself, a SLURM_NTASKS of the surrounding allocation is ignored.
func TestMPIMpirunInsideSlurm(t *testing.T) {
	mpiNeedMpirun(t)
	out, err := runMPIChild(t, 2, "ntasks", time.Minute, "SLURM_NTASKS=5")
	if err != nil || strings.Count(out, "NewMPI error: <nil>") != 2 {
		t.Fatalf("%v; want NewMPI to succeed on both ranks, output:\n%s", err, out)
	}
}

// TestMPIAbort checks that Abort, called from another goroutine while every
// main thread is blocked in MPI, ends the whole job with an error.
func TestMPIAbort(t *testing.T) {
	mpiNeedMpirun(t)
	out, err := runMPIChild(t, 3, "abort", time.Minute)
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("mpirun: %v, want a non-zero exit; output:\n%s", err, out)
	}
	if !strings.Contains(out, "deliberate abort from a goroutine") {
		t.Fatalf("output lacks the abort message:\n%s", out)
	}
	if strings.Contains(out, "instead of the job ending") {
		t.Fatalf("a rank returned from its blocked operation:\n%s", out)
	}
}
