package comm

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestRendezvousFilePrivate checks that the rendezvous file, which holds
// the token slices present to rank 0, is 0600 whatever the umask.
func TestRendezvousFilePrivate(t *testing.T) {
	for _, mask := range []int{0o022, 0o027, 0o002, 0} {
		t.Run(fmt.Sprintf("umask %03o", mask), func(t *testing.T) {
			old := syscall.Umask(mask)
			defer syscall.Umask(old)
			path := filepath.Join(t.TempDir(), "r")
			info := rendezvousInfo{addr: "127.0.0.1:1", host: "h", size: 2, run: "r", token: "secret"}
			if err := writeRendezvous(path, info); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if m := fi.Mode().Perm(); m != 0o600 {
				t.Errorf("rendezvous file mode %04o, want 0600", m)
			}
		})
	}
}
