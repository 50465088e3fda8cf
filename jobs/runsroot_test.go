package jobs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/internal/testenv"
)

// readOnlyMount mounts an empty tmpfs at dir, read-only, until the test
// ends. It needs root (the suite runs as root); without, the test skips.
func readOnlyMount(t *testing.T, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "mounting a read-only file system needs root")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		testenv.SkipOrFail(t, "mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount ro: %v: %s", err, out)
	}
}

// A runs root where no run can be made is bad input named by the site
// file's runs_root and what is wrong, before anything is made or
// submitted: not an internal temporary folder's name.
func TestSubmitUnusableRunsRoot(t *testing.T) {
	t.Run("read-only", func(t *testing.T) {
		e := newEnv(t, 3)
		readOnlyMount(t, e.root)
		wantRootRefused(t, e, e.root, "no new run can be created in it: read-only file system")
	})
	t.Run("not made yet, on a read-only file system", func(t *testing.T) {
		e := newEnv(t, 3)
		ro := e.root
		readOnlyMount(t, ro)
		e.site.RunsRoot = filepath.Join(ro, "nightly", "runs")
		e.root = e.site.RunsRoot
		wantRootRefused(t, e, e.root, "cannot be made in "+ro+": read-only file system")
	})
	t.Run("a file", func(t *testing.T) {
		e := newEnv(t, 3)
		if err := os.WriteFile(e.root, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		wantRootRefused(t, e, e.root, "not a directory")
	})
}

func wantRootRefused(t *testing.T, e *env, root, says string) {
	t.Helper()
	_, err := Submit(context.Background(), e.opts("r1"))
	wantInvalid(t, "Submit", err, "runs_root "+root+": "+says)
	if !strings.Contains(err.Error(), e.site.Path) || strings.Contains(err.Error(), ".new-") {
		t.Errorf("error %q: want the site file named, no temporary folder", err)
	}
	if _, _, n := e.fake.calls(); n != 0 {
		t.Errorf("%d jobs submitted", n)
	}
}
