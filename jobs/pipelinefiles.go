package jobs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/state"
)

// maxPipelineFiles is the most a run copies of its pipeline's folder: the
// scripts and configuration its stages name, not data.
var maxPipelineFiles int64 = 256 << 20

// copyPipelineFiles copies the files and folders of p's folder that p
// names under {pipelinedir} (Policy.PipelineFiles) into dst, which must
// not exist, keeping their modes (symbolic links as links). One named but
// missing is left out: a location a stage writes to, say. More than
// maxPipelineFiles bytes in all is bad input, and nothing is left at dst.
func copyPipelineFiles(p *harness.Policy, dst string) (err error) {
	if err := os.Mkdir(dst, rundir.DirMode); err != nil {
		return fmt.Errorf("jobs: pipeline files: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dst)
		}
	}()
	var total int64
	for _, rel := range p.PipelineFiles() {
		err := filepath.WalkDir(filepath.Join(p.Dir, rel), func(path string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && path == filepath.Join(p.Dir, rel) {
				return nil
			}
			if err != nil {
				return err
			}
			inside, _ := filepath.Rel(p.Dir, path)
			n, err := copyEntry(path, filepath.Join(dst, inside), d)
			total += n
			if total > maxPipelineFiles {
				return fmt.Errorf("%w: %s: the files the policy names under {pipelinedir} (%s) total more than the %d MiB a run copies: keep data outside the pipeline's folder and name it by an absolute path",
					conf.ErrInvalid, p.File, strings.Join(p.PipelineFiles(), ", "), maxPipelineFiles>>20)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("jobs: pipeline files: %w", err)
		}
	}
	return nil
}

// copyEntry copies one file, folder or link at src to dst (its folder made
// first), and returns the bytes copied.
func copyEntry(src, dst string, d fs.DirEntry) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(dst), rundir.DirMode); err != nil {
		return 0, err
	}
	info, err := d.Info()
	if err != nil {
		return 0, err
	}
	switch {
	case d.IsDir():
		return 0, os.Mkdir(dst, info.Mode().Perm()|0o700)
	case info.Mode()&fs.ModeSymlink != 0:
		to, err := os.Readlink(src)
		if err != nil {
			return 0, err
		}
		return 0, os.Symlink(to, dst)
	case !info.Mode().IsRegular():
		return 0, nil // a socket or device is no pipeline file
	}
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// refreshPipelineFiles takes a new copy of the pipeline files of every
// step of the run in l (resume --refresh) from the folder each was copied
// from, checked as at submit, and records when in the step's settings. A
// step submitted before runs kept a copy has nothing to refresh: its jobs
// read the folder itself.
func refreshPipelineFiles(l rundir.Layout, set rundir.Settings, now time.Time) (refreshed []string, err error) {
	for _, d := range rundir.StepDirs(l, set) {
		run, ss, err := rundir.ReadSettings(d.Layout)
		if err != nil {
			return nil, err
		}
		if ss.PipelineFrom == "" {
			continue
		}
		p, err := harness.Load(d.Layout.Policy(), harness.LoadOptions{PipelineDir: ss.PipelineFrom,
			Check: func(p *harness.Policy) error { return rundir.SamePolicy(run, p) }})
		if err != nil {
			return nil, err
		}
		fresh := d.Layout.PipelineFiles() + ".new"
		os.RemoveAll(fresh) // a refresh that died half-way
		if err := copyPipelineFiles(p, fresh); err != nil {
			return nil, err
		}
		if err := swapDir(fresh, d.Layout.PipelineFiles()); err != nil {
			return nil, err
		}
		ss.PipelineCopied = now
		if err := setSettings(d.Layout, ss); err != nil {
			return nil, err
		}
		refreshed = append(refreshed, ss.PipelineFrom)
	}
	return refreshed, nil
}

// swapDir puts folder fresh in the place of folder dst.
func swapDir(fresh, dst string) error {
	old := dst + ".old"
	os.RemoveAll(old)
	if err := os.Rename(dst, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("jobs: pipeline files: %w", err)
	}
	if err := os.Rename(fresh, dst); err != nil {
		return fmt.Errorf("jobs: pipeline files: %w", err)
	}
	return os.RemoveAll(old)
}

// setSettings replaces the settings kept in the state file of l.
func setSettings(l rundir.Layout, set rundir.Settings) error {
	js, err := rundir.EncodeSettings(set)
	if err != nil {
		return err
	}
	st, err := state.Open(l.State())
	if err != nil {
		return err
	}
	return errors.Join(st.SetSettings(js), st.Close())
}
