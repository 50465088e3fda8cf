package jobs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/input/inputtest"
	"github.com/dpsbatch/dpsbatch/internal/testenv"
)

// readOnlyMount mounts an empty tmpfs at dir, read-only, until the test
// ends.
func readOnlyMount(t *testing.T, dir string) {
	t.Helper()
	testenv.MountTmpfs(t, dir, "size=1m,ro")
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
	inputtest.WantInvalid(t, "Submit", err, "runs_root "+root+": "+says)
	if !strings.Contains(err.Error(), e.site.Path) || strings.Contains(err.Error(), ".new-") {
		t.Errorf("error %q: want the site file named, no temporary folder", err)
	}
	if _, _, n := e.fake.calls(); n != 0 {
		t.Errorf("%d jobs submitted", n)
	}
}
