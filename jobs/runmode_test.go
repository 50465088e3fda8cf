package jobs

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/dpsbatch/dpsbatch/rundir"
)

// TestRunDirectoryMode checks, under the umasks a site may use, that a
// new run directory has the mode of the folders inside it (logs), so
// that whoever may read the runs root may read the run, and that the
// secrets stay private: the broker folder 0700 and its token 0600.
func TestRunDirectoryMode(t *testing.T) {
	for _, mask := range []int{0o022, 0o027, 0o002} {
		t.Run(fmt.Sprintf("umask %03o", mask), func(t *testing.T) {
			old := syscall.Umask(mask)
			defer syscall.Umask(old)
			root := t.TempDir()
			lk, err := createRun(root, "r1", func(tl rundir.Layout) error { return populate(tl, "", "", "") })
			if err != nil {
				t.Fatal(err)
			}
			lk.unlock()
			l := rundir.Layout{Dir: filepath.Join(root, "r1")}
			run, logs := mode(t, l.Dir), mode(t, filepath.Join(l.Dir, rundir.LogsDir))
			if run != logs {
				t.Errorf("run directory mode %04o, its logs folder %04o: want the same", run, logs)
			}
			if want := 0o755 &^ os.FileMode(mask); run != want {
				t.Errorf("run directory mode %04o, want %04o", run, want)
			}
			unlock, err := rundir.LockBroker(l, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unlock()
			if _, err := rundir.NewToken(l); err != nil {
				t.Fatal(err)
			}
			if m := mode(t, l.BrokerDir()); m != 0o700 {
				t.Errorf("broker folder mode %04o, want 0700", m)
			}
			if m := mode(t, l.BrokerToken()); m != 0o600 {
				t.Errorf("broker token mode %04o, want 0600", m)
			}
		})
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}
