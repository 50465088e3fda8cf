package state

import (
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		magic     uint32
		mountType string
		name      string
		local     bool
	}{
		{0xEF53, "", "ext4", true},
		{0x58465342, "", "xfs", true},
		{0x9123683E, "", "btrfs", true},
		{0x01021994, "", "tmpfs", true},
		{0x794C7630, "", "overlayfs", true},
		{0x2FC12FC1, "", "zfs", true},
		{0x6969, "", "nfs", false},
		{0x0BD00BD0, "", "lustre", false},
		{0x47504653, "", "gpfs", false},
		{0xFF534D42, "", "cifs", false},
		{0xFE534D42, "", "smb2", false},
		{0x517B, "", "smb", false},
		{0x19830326, "", "beegfs", false},
		{0x00C36400, "", "ceph", false},
		{0x01021997, "", "9p", false},
		{0x5346414F, "", "afs", false},
		{0x6B414653, "", "afs", false},
		{0x65735546, "", "fuse", false},
		{0x65735546, "fuse.sshfs", "fuse.sshfs", false},
		{0x65735546, "fuseblk", "fuseblk", false},
		{0x12345678, "", "unknown (magic 0x12345678)", false},
		{0x12345678, "wekafs", "wekafs (magic 0x12345678)", false},
	} {
		name, local := classify(c.magic, c.mountType)
		if name != c.name || local != c.local {
			t.Errorf("classify(0x%X, %q) = %q, %v; want %q, %v", c.magic, c.mountType, name, local, c.name, c.local)
		}
	}
}

func TestChooseJournal(t *testing.T) {
	for _, c := range []struct {
		fs       string
		local    bool
		override string
		mode     string
		why      string // a part of it
	}{
		{"ext4", true, "", "wal", "local file system ext4"},
		{"overlayfs", true, "", "wal", "local file system overlayfs"},
		{"nfs", false, "", "delete", "nfs is not known to be a local file system"},
		{"lustre", false, "", "delete", "lustre is not known"},
		{"unknown (magic 0x1)", false, "", "delete", "unknown (magic 0x1) is not known"},
		{"nfs", false, "wal", "wal", "DPSBATCH_STATE_JOURNAL=wal (file system nfs)"},
		{"ext4", true, "delete", "delete", "DPSBATCH_STATE_JOURNAL=delete (file system ext4)"},
		{"ext4", true, " WAL ", "wal", "DPSBATCH_STATE_JOURNAL= WAL "},
		{"ext4", true, "truncate", "", `DPSBATCH_STATE_JOURNAL="truncate": want wal or delete`},
		{"nfs", false, "yes", "", `DPSBATCH_STATE_JOURNAL="yes": want wal or delete`},
	} {
		mode, why, err := chooseJournal(c.fs, c.local, c.override)
		if c.mode == "" {
			if !errors.Is(err, conf.ErrInvalid) || !strings.Contains(err.Error(), c.why) {
				t.Errorf("chooseJournal(%q, %v, %q): err = %v, want conf.ErrInvalid saying %s", c.fs, c.local, c.override, err, c.why)
			}
			continue
		}
		if err != nil || mode != c.mode || !strings.Contains(why, c.why) {
			t.Errorf("chooseJournal(%q, %v, %q) = %q, %q, %v; want %q, ...%s...", c.fs, c.local, c.override, mode, why, err, c.mode, c.why)
		}
	}
}

// TestJournalModes creates and reopens real files in each mode the
// variable forces, and checks what SQLite says and what the Store says.
func TestJournalModes(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("file system detection is Linux only")
	}
	dir := t.TempDir()
	magic, mtype, err := statFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	fs, local := classify(magic, mtype)
	auto := "delete"
	if local {
		auto = "wal"
	}
	autoSync := 2 // FULL
	if local {
		autoSync = 1 // NORMAL
	}
	for _, c := range []struct {
		env, mode string
		sync      int
	}{
		{"", auto, autoSync},
		{"wal", "wal", 1},
		{"delete", "delete", 2},
	} {
		t.Run("env="+c.env, func(t *testing.T) {
			t.Setenv(JournalEnv, c.env)
			path := filepath.Join(t.TempDir(), "run.db")
			s, err := Create(path, Run{ID: "j"})
			if err != nil {
				t.Fatal(err)
			}
			check := func(s *Store, who string) {
				t.Helper()
				var mode string
				var sync int
				must(t, s.db.QueryRow("PRAGMA journal_mode").Scan(&mode))
				must(t, s.db.QueryRow("PRAGMA synchronous").Scan(&sync))
				if mode != c.mode {
					t.Errorf("%s: PRAGMA journal_mode = %s, want %s", who, mode, c.mode)
				}
				if who != "reader" && sync != c.sync {
					t.Errorf("%s: PRAGMA synchronous = %d, want %d (1 NORMAL, 2 FULL)", who, sync, c.sync)
				}
				if !strings.HasPrefix(s.JournalMode(), c.mode+" (") {
					t.Errorf("%s: JournalMode() = %q, want %s (...)", who, s.JournalMode(), c.mode)
				}
				if s.FileSystem() != fs {
					t.Errorf("%s: FileSystem() = %q, want %q", who, s.FileSystem(), fs)
				}
			}
			check(s, "Create")
			must(t, s.AddVisits([]string{"a", "b"}))
			must(t, s.Close())
			s, err = Open(path)
			must(t, err)
			check(s, "Open")
			r, err := OpenReadOnly(path)
			must(t, err)
			check(r, "reader")
			if c.env != "" && !strings.Contains(r.JournalMode(), JournalEnv) {
				t.Errorf("reader JournalMode() = %q does not name the override", r.JournalMode())
			}
			r.Close()
			s.Close()
		})
	}
	// The writer of a file that was in the other mode switches it.
	path := filepath.Join(t.TempDir(), "run.db")
	t.Setenv(JournalEnv, "wal")
	s, err := Create(path, Run{ID: "j"})
	must(t, err)
	s.Close()
	t.Setenv(JournalEnv, "delete")
	s, err = Open(path)
	must(t, err)
	var mode string
	s.db.QueryRow("PRAGMA journal_mode").Scan(&mode)
	if mode != "delete" {
		t.Errorf("a WAL file reopened under %s=delete is in %s", JournalEnv, mode)
	}
	s.Close()
	t.Setenv(JournalEnv, "sometimes")
	if _, err := Open(path); !errors.Is(err, conf.ErrInvalid) {
		t.Errorf("Open under %s=sometimes: err = %v, want conf.ErrInvalid", JournalEnv, err)
	}
}

func TestMountInfoType(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	if typ := mountInfoType("/"); typ == "" {
		t.Error(`mountInfoType("/") = "", want the root's file system type`)
	}
	if typ := mountInfoType("/proc/self"); typ != "proc" {
		t.Errorf(`mountInfoType("/proc/self") = %q, want proc`, typ)
	}
	if got := unescapeMount(`/mnt/my\040disk`); got != "/mnt/my disk" {
		t.Errorf("unescapeMount = %q", got)
	}
}

// inModes runs f once per journal mode.
func inModes(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	for _, mode := range []string{"wal", "delete"} {
		t.Run(mode, func(t *testing.T) {
			t.Setenv(JournalEnv, mode)
			f(t)
		})
	}
}
