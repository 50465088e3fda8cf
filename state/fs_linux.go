package state

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// statFS returns the statfs magic number of the file system holding dir
// and, for FUSE and unknown types, the type that /proc/self/mountinfo
// gives for its mount ("" when it cannot be read).
func statFS(dir string) (magic uint32, mountType string, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, "", err
	}
	magic = uint32(st.Type)
	if k, ok := fsMagic[magic]; ok && k.name != "fuse" {
		return magic, "", nil
	}
	return magic, mountInfoType(dir), nil
}

// mountInfoType returns the file system type of the mount that holds dir,
// from /proc/self/mountinfo: the mount with the longest mount point that
// is a prefix of dir's real path. "" when unknown.
func mountInfoType(dir string) string {
	real, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	if r, err := filepath.EvalSymlinks(real); err == nil {
		real = r
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	best, typ := -1, ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		mp := unescapeMount(fields[4])
		if !within(real, mp) || len(mp) < best {
			continue
		}
		best, typ = len(mp), fields[sep+1]
	}
	return typ
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	if dir == "/" || path == dir {
		return true
	}
	return strings.HasPrefix(path, dir+"/")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
