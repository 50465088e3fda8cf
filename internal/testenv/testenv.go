// Package testenv is for tests that need the real things: the local Slurm
// cluster (scripts/cluster.sh), Open MPI, slurmrestd. A test that needs one
// calls SkipOrFail, or NeedCluster, which skip with a reason when it is
// missing, or fail when DPSBATCH_TEST_NO_SKIP=1 (set by .ci/run, where
// everything must be present).
package testenv

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// NoSkip reports whether skipping for a missing component is forbidden.
func NoSkip() bool { return os.Getenv("DPSBATCH_TEST_NO_SKIP") == "1" }

// SkipOrFail skips the test with a reason, or fails it under NoSkip.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if NoSkip() {
		t.Fatalf("not skipping (DPSBATCH_TEST_NO_SKIP=1): "+format, args...)
	}
	t.Skipf(format, args...)
}

// NeedCluster checks that sinfo, srun and tools are installed and that
// sinfo answers with at least nodes usable nodes, waiting up to nodeWait
// for them, or skips (or fails). It skips under -short, where no test
// runs jobs.
func NeedCluster(t testing.TB, nodes int, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs jobs on the local Slurm cluster")
	}
	var missing []string
	for _, tool := range append([]string{"sinfo", "srun"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		SkipOrFail(t, "Slurm tools not found: %s (run scripts/cluster.sh start)", strings.Join(missing, ", "))
	}
	// A node whose slurmd has just died and been started again by the
	// cluster's keeper (scripts/cluster.sh keep) is usable a few seconds
	// later: wait for it rather than fail the test at once.
	deadline := time.Now().Add(nodeWait)
	for {
		up, out, err := usableNodes()
		if err != nil {
			SkipOrFail(t, "sinfo does not answer (is the cluster up? scripts/cluster.sh start): %v: %s", err, out)
		}
		if up >= nodes {
			return
		}
		if time.Now().After(deadline) {
			SkipOrFail(t, "the cluster has %d usable nodes after %s, the test needs %d:\n%s", up, nodeWait, nodes, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// nodeWait bounds how long NeedCluster waits for enough usable nodes.
const nodeWait = 30 * time.Second

// usableNodes counts the nodes sinfo reports responding and neither
// down, drained, failed nor in maintenance; out is sinfo's answer.
func usableNodes() (up int, out []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err = exec.CommandContext(ctx, "sinfo", "-h", "-N", "-o", "%N %t").CombinedOutput()
	if err != nil {
		return 0, out, err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) == 2 && !strings.ContainsAny(f[1], "*") &&
			!slices.Contains([]string{"down", "drain", "drng", "fail", "unk", "maint"}, strings.TrimRight(f[1], "~#$@^-!")) {
			up++
		}
	}
	return up, out, nil
}

// MountTmpfs mounts a new tmpfs at dir (made if missing) with the mount
// options opts (such as "size=64m" or "size=1m,ro") until the test ends.
// Mounting needs root, as the suite runs; without it the test skips (or
// fails under NoSkip).
func MountTmpfs(t testing.TB, dir, opts string) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "mounting a tmpfs needs root")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		SkipOrFail(t, "mount tmpfs at %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// SyncBuffer is a bytes.Buffer several goroutines may write, such as a
// test's log destination shared with a server's goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
