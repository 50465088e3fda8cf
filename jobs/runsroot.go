package jobs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// checkRunsRoot says what is wrong with the site's runs root for a new
// run, before anything is made: not a directory, or a place where this
// user cannot create one (a read-only file system, no permission). A root
// that does not exist yet is checked at its nearest existing parent,
// where it would be made. Errors wrap conf.ErrInvalid and name the site
// file's runs_root.
func checkRunsRoot(siteFile, root string) error {
	bad := func(what string, err error) error {
		msg := what
		if err != nil {
			msg += ": " + describeErrno(err)
		}
		return fmt.Errorf("%w: %s: runs_root %s: %s", conf.ErrInvalid, siteFile, root, msg)
	}
	dir := root
	for {
		fi, err := os.Stat(dir)
		if err == nil {
			if !fi.IsDir() {
				if dir == root {
					return bad("not a directory", nil)
				}
				return bad(fmt.Sprintf("cannot be made: %s is not a directory", dir), nil)
			}
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return bad("cannot be read", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return bad("no part of it exists", nil)
		}
		dir = parent
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		if dir == root {
			return bad("no new run can be created in it", err)
		}
		return bad(fmt.Sprintf("cannot be made in %s", dir), err)
	}
	return nil
}

// describeErrno is the system's words for err's errno ("read-only file
// system"), else err.
func describeErrno(err error) string {
	var no unix.Errno
	if errors.As(err, &no) {
		return no.Error()
	}
	return err.Error()
}
