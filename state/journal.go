package state

import (
	"fmt"
	"os"
	"strings"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// JournalEnv is the environment variable that overrides the journal mode
// chosen from the file system: "wal" or "delete"; unset or "" to choose.
// It is for site admins whose file system is misjudged, and for tests.
const JournalEnv = "DPSBATCH_STATE_JOURNAL"

// The journal modes, as PRAGMA journal_mode reports them.
const (
	journalWAL    = "wal"
	journalDelete = "delete"
)

// fsKind is what dpsbatch knows of one file system type.
type fsKind struct {
	name  string
	local bool // WAL works on it: one kernel sees every access
}

// fsMagic is the file system types by their statfs magic number (linux/magic.h
// and the file systems' own sources). Anything not listed is treated as a
// network file system: WAL on a file system that is really shared corrupts
// the file, DELETE on a local one is only slower.
var fsMagic = map[uint32]fsKind{
	// local
	0xEF53:     {"ext4", true}, // ext2, ext3 and ext4 share it
	0x58465342: {"xfs", true},
	0x9123683E: {"btrfs", true},
	0x01021994: {"tmpfs", true},
	0x858458F6: {"ramfs", true},
	0x794C7630: {"overlayfs", true},
	0x2FC12FC1: {"zfs", true},
	0xF2F52010: {"f2fs", true},
	0xCA451A4E: {"bcachefs", true},
	0x52654973: {"reiserfs", true},
	0x3153464A: {"jfs", true},
	0x3434:     {"nilfs", true},
	0x4D44:     {"vfat", true},
	0x2011BAB0: {"exfat", true},
	0x5346544E: {"ntfs", true},
	0x73717368: {"squashfs", true},
	0x9660:     {"iso9660", true},
	0x72B6:     {"jffs2", true},
	0x24051905: {"ubifs", true},
	// network, cluster and user-space file systems
	0x6969:     {"nfs", false},
	0x517B:     {"smb", false},
	0xFF534D42: {"cifs", false},
	0xFE534D42: {"smb2", false},
	0x0BD00BD0: {"lustre", false},
	0x47504653: {"gpfs", false},
	0x19830326: {"beegfs", false},
	0x00C36400: {"ceph", false},
	0x01021997: {"9p", false},
	0x5346414F: {"afs", false}, // OpenAFS
	0x6B414653: {"afs", false}, // kAFS
	0x65735546: {"fuse", false},
	0x73757245: {"coda", false},
	0x20030528: {"orangefs", false},
	0xAAD7AAEA: {"panfs", false},
	0x564C:     {"ncp", false},
	0x7461636F: {"ocfs2", false},
	0x01161970: {"gfs2", false},
	0x786F4256: {"vboxsf", false},
	0x013111A8: {"ibrix", false},
}

// classify names a file system type by its magic number, and says whether
// it is known to be local. mountType, the type /proc/self/mountinfo gives
// for the mount ("fuse.sshfs"), names FUSE and unknown types better; "" if
// not known.
func classify(magic uint32, mountType string) (name string, local bool) {
	k, ok := fsMagic[magic]
	switch {
	case !ok && mountType != "":
		return fmt.Sprintf("%s (magic 0x%X)", mountType, magic), false
	case !ok:
		return fmt.Sprintf("unknown (magic 0x%X)", magic), false
	case k.name == "fuse" && strings.HasPrefix(mountType, "fuse"):
		return mountType, false
	}
	return k.name, k.local
}

// chooseJournal decides the journal mode for a file on the file system
// named fs (local or not), given the value of JournalEnv. It returns the
// mode and the reason, as JournalMode prints them, or an error naming the
// variable for a value it does not know.
func chooseJournal(fs string, local bool, override string) (mode, why string, err error) {
	switch strings.ToLower(strings.TrimSpace(override)) {
	case "":
	case journalWAL:
		return journalWAL, fmt.Sprintf("%s=%s (file system %s)", JournalEnv, override, fs), nil
	case journalDelete:
		return journalDelete, fmt.Sprintf("%s=%s (file system %s)", JournalEnv, override, fs), nil
	default:
		return "", "", fmt.Errorf("state: %s=%q: want wal or delete, or unset to choose by file system: %w",
			JournalEnv, override, conf.ErrInvalid)
	}
	if local {
		return journalWAL, fmt.Sprintf("local file system %s", fs), nil
	}
	return journalDelete, fmt.Sprintf("%s is not known to be a local file system: WAL needs shared memory that network file systems do not give", fs), nil
}

// journalFor detects the file system of dir and chooses the journal mode
// for a state file in it, honouring JournalEnv.
func journalFor(dir string) (fs, mode, why string, err error) {
	magic, mtype, err := statFS(dir)
	if err != nil {
		return "", "", "", fmt.Errorf("state: file system of %s: %w", dir, err)
	}
	fs, local := classify(magic, mtype)
	mode, why, err = chooseJournal(fs, local, os.Getenv(JournalEnv))
	return fs, mode, why, err
}
