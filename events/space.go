package events

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrNoSpace is matched by the error of CheckStoreSpace, and so of
// StartEmbedded, when a store's file system has less free space than the
// store may still need.
var ErrNoSpace = errors.New("events: not enough free space for the broker's store")

// SpaceError says how much space a store needs and how much is free.
type SpaceError struct {
	Dir          string // the store's folder
	Free, Needed int64  // bytes
	Max          int64  // the store's limit
}

func (e *SpaceError) Error() string {
	return fmt.Sprintf("events: broker store %s: %s free on its file system, %s needed (a limit of %s for its events, less what it holds)",
		e.Dir, FormatBytes(e.Free), FormatBytes(e.Needed), FormatBytes(e.Max))
}

// Is makes a *SpaceError match ErrNoSpace.
func (e *SpaceError) Is(target error) bool { return target == ErrNoSpace }

// CheckStoreSpace returns a *SpaceError when the file system of dir (or,
// while dir does not exist, of its nearest existing parent) has less free
// space than a store limited to max bytes may still take there: max less
// what dir already holds.
func CheckStoreSpace(dir string, max int64) error {
	at := dir
	for {
		if _, err := os.Stat(at); err == nil || filepath.Dir(at) == at {
			break
		}
		at = filepath.Dir(at)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(at, &st); err != nil {
		return fmt.Errorf("events: free space of %s: %w", at, err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	needed := max - usedBytes(dir)
	if needed <= free {
		return nil
	}
	return &SpaceError{Dir: dir, Free: free, Needed: needed, Max: max}
}

// usedBytes is the space the files under dir take (0 when it does not
// exist).
func usedBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok {
					n += st.Blocks * 512
				} else {
					n += fi.Size()
				}
			}
		}
		return nil
	})
	return n
}

// FormatBytes writes a size in bytes the way people read it: 512 B,
// 300 MiB, 1.3 GiB.
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %ciB", int64(v), "KMGTP"[i])
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[i])
}
