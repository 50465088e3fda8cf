package comm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/harness/comm"
	"github.com/dpsbatch/dpsbatch/harness/comm/commtest"
)

// tcpConfigs returns configs for ranks 0..size-1 of a loopback world with a
// fresh rendezvous directory and short timeouts.
func tcpConfigs(t *testing.T, size int) []comm.TCPConfig {
	dir := t.TempDir()
	cfgs := make([]comm.TCPConfig, size)
	for r := range cfgs {
		cfgs[r] = comm.TCPConfig{
			Rank: r, Size: size, Rendezvous: dir, ListenAddr: "127.0.0.1:0",
			ConnectTimeout: 10 * time.Second, Timeout: 5 * time.Second, Heartbeat: 100 * time.Millisecond,
		}
	}
	return cfgs
}

// runTCPWorld runs one goroutine per config: NewTCP, fn, Close. It returns
// each one's first error, and fails the test if they are not all done
// within 30s.
func runTCPWorld(t *testing.T, cfgs []comm.TCPConfig, fn func(comm.Comm) error) []error {
	t.Helper()
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := comm.NewTCP(context.Background(), cfg)
			if err != nil {
				errs[i] = err
				return
			}
			errs[i] = fn(c)
			if err := c.Close(); err != nil && errs[i] == nil {
				errs[i] = err
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("tcp world still running after 30s")
	}
	return errs
}

func TestTCPSuite(t *testing.T) {
	for _, size := range []int{1, 3, 5} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			for r, err := range runTCPWorld(t, tcpConfigs(t, size), commtest.Check) {
				if err != nil {
					t.Errorf("rank %d: %v", r, err)
				}
			}
		})
	}
}

func TestTCPAbort(t *testing.T) {
	for _, size := range []int{1, 3, 5} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			for r, err := range runTCPWorld(t, tcpConfigs(t, size), commtest.CheckAbort) {
				if err != nil {
					t.Errorf("rank %d: %v", r, err)
				}
			}
		})
	}
}

// The abort's cause reaches every rank, not just ErrAborted.
func TestTCPAbortCause(t *testing.T) {
	errs := runTCPWorld(t, tcpConfigs(t, 4), func(c comm.Comm) error {
		if c.Rank() == 2 {
			c.Abort(errors.New("stage exploded"))
		}
		return c.Barrier()
	})
	for r, err := range errs {
		if !errors.Is(err, comm.ErrAborted) || !strings.Contains(err.Error(), "stage exploded") {
			t.Errorf("rank %d: %v, want ErrAborted with the cause", r, err)
		}
		if r != 2 && !strings.Contains(fmt.Sprint(err), "rank 2 (host ") {
			t.Errorf("rank %d: %v does not name rank 2", r, err)
		}
	}
}

// Ranks calling different collectives get an error, not each other's data.
func TestTCPOperationMismatch(t *testing.T) {
	errs := runTCPWorld(t, tcpConfigs(t, 3), func(c comm.Comm) error {
		if c.Rank() == 0 {
			return c.Barrier()
		}
		if _, err := c.Gather(0, []byte("x")); err != nil {
			return err
		}
		_, err := c.Bcast(0, nil)
		return err
	})
	if err := errs[0]; err == nil || !strings.Contains(err.Error(), "operation mismatch") {
		t.Errorf("rank 0: %v, want an operation mismatch", err)
	}
	for r, err := range errs {
		if !errors.Is(err, comm.ErrAborted) {
			t.Errorf("rank %d: %v, want ErrAborted", r, err)
		}
	}
}

func TestTCPExchangeMismatch(t *testing.T) {
	errs := runTCPWorld(t, tcpConfigs(t, 3), func(c comm.Comm) error {
		send := map[int][]byte{}
		if c.Rank() == 1 {
			send[2] = []byte("unexpected")
		}
		_, err := c.Exchange(send, nil)
		return err
	})
	for r, err := range errs {
		if !errors.Is(err, comm.ErrAborted) || !strings.Contains(err.Error(), "rank 1 sends to rank 2, which does not expect it") {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

// Exchange between any ranks, rank 0 and self included.
func TestTCPExchangeAll(t *testing.T) {
	const size = 4
	errs := runTCPWorld(t, tcpConfigs(t, size), func(c comm.Comm) error {
		send := map[int][]byte{}
		var from []int
		for r := 0; r < size; r++ {
			send[r] = []byte(fmt.Sprintf("%d->%d", c.Rank(), r))
			from = append(from, r)
		}
		got, err := c.Exchange(send, from)
		if err != nil {
			return err
		}
		for _, r := range from {
			if want := fmt.Sprintf("%d->%d", r, c.Rank()); string(got[r]) != want {
				return fmt.Errorf("from %d: %q, want %q", r, got[r], want)
			}
		}
		return nil
	})
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

func TestTCPNeverConnects(t *testing.T) {
	cfgs := tcpConfigs(t, 4)
	for r := range cfgs {
		cfgs[r].ConnectTimeout = 500 * time.Millisecond
	}
	start := time.Now()
	errs := runTCPWorld(t, []comm.TCPConfig{cfgs[0], cfgs[1], cfgs[3]}, func(comm.Comm) error { return nil })
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
	if err := errs[0]; err == nil || !strings.Contains(err.Error(), "rank 2 never connected") {
		t.Errorf("rank 0: %v, want rank 2 named as never connected", err)
	}
	for i, r := range []int{1, 3} {
		if err := errs[i+1]; err == nil || !strings.Contains(err.Error(), "rank 2 never connected") {
			t.Errorf("rank %d: %v, want rank 0's reason", r, err)
		}
	}
}

func TestTCPNoPipeline(t *testing.T) {
	cfg := tcpConfigs(t, 2)[1]
	cfg.ConnectTimeout = 300 * time.Millisecond
	start := time.Now()
	_, err := comm.NewTCP(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "rank 0 did not publish its address") {
		t.Errorf("got %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestTCPSetupCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cfg := tcpConfigs(t, 2)[0]
	done := make(chan error)
	go func() {
		_, err := comm.NewTCP(ctx, cfg)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("NewTCP ignores cancellation")
	}
}

func TestTCPDuplicateRank(t *testing.T) {
	cfgs := tcpConfigs(t, 3)
	for r := range cfgs {
		cfgs[r].ConnectTimeout = time.Second
	}
	// Two processes claim rank 1 and none rank 2, so rank 0 cannot
	// complete the world before both have tried to join.
	errs := runTCPWorld(t, []comm.TCPConfig{cfgs[0], cfgs[1], cfgs[1]}, func(comm.Comm) error { return nil })
	if err := errs[0]; err == nil || !strings.Contains(err.Error(), "rank 2 never connected") ||
		!strings.Contains(err.Error(), "duplicate rank 1") {
		t.Errorf("rank 0: %v, want rank 2 missing and a duplicate rank 1", err)
	}
	dups := 0
	for _, err := range errs[1:] {
		if err != nil && strings.Contains(err.Error(), "refused: duplicate rank 1") {
			dups++
		}
	}
	if dups != 1 {
		t.Errorf("%d of the two rank 1s were refused as duplicates: %v", dups, errs[1:])
	}
}

func TestTCPBadConfig(t *testing.T) {
	_, err := comm.NewTCP(context.Background(), comm.TCPConfig{Rank: 3, Size: 2, Timeout: time.Second, Heartbeat: time.Second})
	for _, want := range []string{"rank 3 out of range", "no rendezvous directory", "heartbeat"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want it to mention %q", err, want)
		}
	}
}

func TestTCPConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		procid, ntasks, job, step, node string
		want                            comm.TCPConfig
		errs                            []string
	}{
		{procid: "2", ntasks: "5", job: "77", step: "3", node: "n2", want: comm.TCPConfig{Rank: 2, Size: 5, RunID: "77.3", Host: "n2"}},
		{procid: "0", ntasks: "1", want: comm.TCPConfig{Rank: 0, Size: 1}},
		{procid: "", ntasks: "5", errs: []string{"SLURM_PROCID is not set"}},
		{procid: "x", ntasks: "", errs: []string{`SLURM_PROCID="x"`, "SLURM_NTASKS is not set"}},
		{procid: "5", ntasks: "5", errs: []string{"SLURM_PROCID=5 is out of range for SLURM_NTASKS=5"}},
	} {
		t.Setenv("SLURM_PROCID", tc.procid)
		t.Setenv("SLURM_NTASKS", tc.ntasks)
		t.Setenv("SLURM_JOB_ID", tc.job)
		t.Setenv("SLURM_STEP_ID", tc.step)
		t.Setenv("SLURMD_NODENAME", tc.node)
		got, err := comm.TCPConfigFromEnv()
		if len(tc.errs) == 0 {
			if err != nil || got.Rank != tc.want.Rank || got.Size != tc.want.Size || got.RunID != tc.want.RunID || got.Host != tc.want.Host {
				t.Errorf("%+v: got %+v, %v", tc, got, err)
			}
			continue
		}
		for _, want := range tc.errs {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%+v: got %v, want it to mention %q", tc, err, want)
			}
		}
	}
}

func TestTCPUseAfterClose(t *testing.T) {
	errs := runTCPWorld(t, tcpConfigs(t, 2), func(c comm.Comm) error {
		if err := c.Barrier(); err != nil {
			return err
		}
		if err := c.Close(); err != nil {
			return err
		}
		if err := c.Barrier(); err == nil {
			return errors.New("barrier after close succeeded")
		}
		return nil
	})
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

// Multi-process tests: the test binary runs itself as the ranks, each
// configured from SLURM_PROCID/SLURM_NTASKS as under srun.

const (
	childModeEnv   = "DPSBATCH_TCP_TEST_MODE"
	childDirEnv    = "DPSBATCH_TCP_TEST_DIR"
	childVictimEnv = "DPSBATCH_TCP_TEST_VICTIM"
	childTimeout   = time.Second // liveness bound in the "loop" mode
)

// TestTCPChild is one rank of a multi-process test; run directly it does
// nothing.
func TestTCPChild(t *testing.T) {
	mode := os.Getenv(childModeEnv)
	if mode == "" {
		return
	}
	cfg, err := comm.TCPConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rendezvous = os.Getenv(childDirEnv)
	cfg.ConnectTimeout = 20 * time.Second
	cfg.Timeout, cfg.Heartbeat = 5*time.Second, 100*time.Millisecond
	if mode == "loop" {
		cfg.Timeout = childTimeout
	}
	c, err := comm.NewTCP(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	switch mode {
	case "suite":
		err = commtest.Check(c)
	case "abort":
		err = commtest.CheckAbort(c)
	case "loop":
		// Run the stage loop's pattern until the victim goes away; then
		// the error must name it.
		for i := 0; err == nil; i++ {
			if _, err = c.Bcast(0, []byte("tick")); err == nil {
				_, err = c.Gather(0, []byte("tock"))
			}
			if i == 0 && err == nil {
				fmt.Println("ready")
			}
		}
		victim := os.Getenv(childVictimEnv)
		want := fmt.Sprintf("rank %s on host node%s lost", victim, victim)
		if !errors.Is(err, comm.ErrAborted) || !strings.Contains(err.Error(), want) {
			t.Fatalf("rank %d: %v; want an error wrapping comm.ErrAborted naming %q", cfg.Rank, err, want)
		}
		fmt.Printf("failed as expected: %v\n", err)
		err = nil
	default:
		t.Fatalf("unknown mode %q", mode)
	}
	if err != nil {
		t.Fatal(err)
	}
}

type child struct {
	rank  int
	cmd   *exec.Cmd
	out   childOutput
	done  chan struct{}
	state *os.ProcessState
}

// childOutput collects a child's output and signals its "ready" line.
type childOutput struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
}

func (o *childOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	had := bytes.Contains(o.buf.Bytes(), []byte("ready\n"))
	o.buf.Write(p)
	if !had && bytes.Contains(o.buf.Bytes(), []byte("ready\n")) {
		close(o.ready)
	}
	return len(p), nil
}

func (o *childOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// startRanks starts size copies of the test binary as the ranks of one
// world; they are killed at the end of the test if still running.
func startRanks(t *testing.T, mode string, size int, env ...string) []*child {
	t.Helper()
	dir := t.TempDir()
	children := make([]*child, size)
	for r := range children {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTCPChild$", "-test.count=1", "-test.timeout=60s")
		cmd.Env = append(os.Environ(),
			childModeEnv+"="+mode, childDirEnv+"="+dir,
			"SLURM_PROCID="+strconv.Itoa(r), "SLURM_NTASKS="+strconv.Itoa(size),
			"SLURMD_NODENAME=node"+strconv.Itoa(r),
			"SLURM_JOB_ID=", "SLURM_STEP_ID=",
			// The race detector sleeps a second at exit by default,
			// which would hide how fast the ranks fail.
			"GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
		cmd.Env = append(cmd.Env, env...)
		ch := &child{rank: r, cmd: cmd, done: make(chan struct{})}
		ch.out.ready = make(chan struct{})
		cmd.Stdout, cmd.Stderr = &ch.out, &ch.out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			cmd.Wait()
			ch.state = cmd.ProcessState
			close(ch.done)
		}()
		children[r] = ch
	}
	t.Cleanup(func() {
		for _, ch := range children {
			ch.cmd.Process.Kill()
			<-ch.done
		}
	})
	return children
}

// waitRanks waits up to limit for the children to exit and reports each
// one that did not exit 0. It returns how long they took.
func waitRanks(t *testing.T, children []*child, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for _, ch := range children {
		select {
		case <-ch.done:
			if !ch.state.Success() {
				t.Errorf("rank %d: %v; output:\n%s", ch.rank, ch.state, ch.out.String())
			}
		case <-timer.C:
			t.Fatalf("rank %d still running after %v; output:\n%s", ch.rank, limit, ch.out.String())
		}
	}
	return time.Since(start)
}

func TestTCPProcesses(t *testing.T) {
	for _, tc := range []struct {
		mode string
		size int
	}{{"suite", 3}, {"suite", 5}, {"abort", 3}} {
		t.Run(fmt.Sprintf("%s-%d", tc.mode, tc.size), func(t *testing.T) {
			waitRanks(t, startRanks(t, tc.mode, tc.size), 30*time.Second)
		})
	}
}

// A rank killed or stopped mid-run: every other rank fails with an error
// naming it, within the liveness bound.
func TestTCPLostRank(t *testing.T) {
	for _, tc := range []struct {
		name   string
		victim int
		sig    syscall.Signal
		limit  time.Duration
	}{
		// A killed process's connections close at once.
		{"killed-slice", 2, syscall.SIGKILL, 2 * time.Second},
		{"killed-pipeline", 0, syscall.SIGKILL, 2 * time.Second},
		// A stopped one is only silent: found after childTimeout.
		{"stopped-slice", 2, syscall.SIGSTOP, childTimeout + 3*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const size = 4
			children := startRanks(t, "loop", size, childVictimEnv+"="+strconv.Itoa(tc.victim))
			victim := children[tc.victim]
			select {
			case <-victim.out.ready:
			case <-time.After(30 * time.Second):
				t.Fatalf("rank %d not ready after 30s; output:\n%s", tc.victim, victim.out.String())
			}
			if err := victim.cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			var rest []*child
			for _, ch := range children {
				if ch != victim {
					rest = append(rest, ch)
				}
			}
			d := waitRanks(t, rest, tc.limit)
			t.Logf("the other ranks exited %v after the signal", d)
			for _, ch := range rest {
				_, msg, _ := strings.Cut(ch.out.String(), "failed as expected: ")
				msg, _, _ = strings.Cut(msg, "\n")
				t.Logf("rank %d: %s", ch.rank, msg)
			}
		})
	}
}

// BenchmarkTCPRound measures the stage loop's pattern (a bcast, then a
// gather of small messages) between three ranks over loopback.
func BenchmarkTCPRound(b *testing.B) {
	cfgs := make([]comm.TCPConfig, 3)
	dir := b.TempDir()
	for r := range cfgs {
		cfgs[r] = comm.TCPConfig{Rank: r, Size: 3, Rendezvous: dir, ListenAddr: "127.0.0.1:0"}
	}
	eps := make([]comm.Comm, 3)
	var wg sync.WaitGroup
	for r := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := comm.NewTCP(context.Background(), cfgs[r])
			if err != nil {
				b.Error(err)
			}
			eps[r] = c
		}()
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	msg := []byte("a task description of some sixty-four bytes, give or take a few")
	for r := 1; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < b.N; i++ {
				eps[r].Bcast(0, nil)
				eps[r].Gather(0, msg)
			}
		}()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		eps[0].Bcast(0, msg)
		eps[0].Gather(0, nil)
	}
	wg.Wait()
	b.StopTimer()
	for _, c := range eps {
		wg.Add(1)
		go func() { defer wg.Done(); c.Close() }()
	}
	wg.Wait()
}
