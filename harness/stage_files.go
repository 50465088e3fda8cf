package harness

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// fileSpec is one clipboard key and the path template of its file.
type fileSpec struct {
	key  string
	path Pattern
}

func parseFiles(s Settings) ([]fileSpec, error) {
	var out []fileSpec
	for _, p := range s.Pairs("files") {
		t, err := parsePattern(p.Value)
		if err != nil {
			return nil, fmt.Errorf("files.%s: %w", p.Key, err)
		}
		out = append(out, fileSpec{p.Key, t})
	}
	if len(out) == 0 {
		return nil, errors.New("files: name at least one clipboard key and its path")
	}
	if f := s.String("format"); f != "auto" {
		if _, err := lookupFormat(f); err != nil {
			return nil, fmt.Errorf("format: %s", trimPkg(err))
		}
	}
	return out, nil
}

func filePatterns(fs []fileSpec) []Pattern {
	ts := make([]Pattern, len(fs))
	for i, f := range fs {
		ts[i] = f.path
	}
	return ts
}

type inputStage struct {
	files    []fileSpec
	format   string
	optional bool
}

func newInput(s Settings) (Stage, error) {
	files, err := parseFiles(s)
	if err != nil {
		return nil, err
	}
	return &inputStage{files: files, format: s.String("format"), optional: s.Bool("optional")}, nil
}

// sharedKeys: the input stage shares nothing (sharer).
func (st *inputStage) sharedKeys() []string { return nil }

func (st *inputStage) Keys() (needs, produces []string) {
	for _, f := range st.files {
		produces = append(produces, f.key)
	}
	return patternNeeds(filePatterns(st.files)...), produces
}

func (st *inputStage) Process(cx *Context, cb *Clipboard) error {
	for _, f := range st.files {
		path, err := cx.Path(f.path, cb)
		if err != nil {
			return fmt.Errorf("input %s: %w", f.key, err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			if st.optional && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("input %s: %w", f.key, err)
		}
		format, err := formatFor(st.format, path)
		if err != nil {
			return err
		}
		v, err := format.Decode(data)
		if err != nil {
			return fmt.Errorf("input %s: %s: reading as %s: %w", f.key, path, format.Name, err)
		}
		cb.Put(f.key, v)
	}
	return nil
}

type outputStage struct {
	files  []fileSpec
	format string
}

func newOutput(s Settings) (Stage, error) {
	files, err := parseFiles(s)
	if err != nil {
		return nil, err
	}
	return &outputStage{files: files, format: s.String("format")}, nil
}

func (st *outputStage) Keys() (needs, produces []string) {
	for _, f := range st.files {
		needs = append(needs, f.key)
	}
	return append(needs, patternNeeds(filePatterns(st.files)...)...), nil
}

func (st *outputStage) Process(cx *Context, cb *Clipboard) error {
	for _, f := range st.files {
		v, ok := cb.Get(f.key)
		if !ok {
			return fmt.Errorf("output %s: the clipboard has no such key", f.key)
		}
		path, err := cx.Path(f.path, cb)
		if err != nil {
			return fmt.Errorf("output %s: %w", f.key, err)
		}
		format, err := formatFor(st.format, path)
		if err != nil {
			return err
		}
		data, err := format.Encode(v)
		if err != nil {
			return fmt.Errorf("output %s: %s: writing as %s: %w", f.key, path, format.Name, err)
		}
		if err := writeAtomic(path, data); err != nil {
			return fmt.Errorf("output %s: %w", f.key, err)
		}
	}
	return nil
}

// makeDir makes a directory a stage writes into, and its parents, as
// needed: the output stage's and symlink stage's folders, the exec
// stage's working directory and the locations it writes to.
func makeDir(dir string) error { return os.MkdirAll(dir, 0o755) }

// writeAtomic writes data to path through a temporary file in the same
// directory and a rename, so readers see the whole file or none.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := makeDir(dir); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

type symlinkStage struct{ from, to Pattern }

func newSymlink(s Settings) (Stage, error) {
	from, err := parsePattern(s.String("from"))
	if err != nil {
		return nil, fmt.Errorf("from: %w", err)
	}
	to, err := parsePattern(s.String("to"))
	if err != nil {
		return nil, fmt.Errorf("to: %w", err)
	}
	return &symlinkStage{from, to}, nil
}

func (st *symlinkStage) Keys() (needs, produces []string) {
	return patternNeeds(st.from, st.to), nil
}

func (st *symlinkStage) Process(cx *Context, cb *Clipboard) error {
	target, err := cx.Path(st.from, cb)
	if err != nil {
		return fmt.Errorf("symlink from: %w", err)
	}
	link, err := cx.Path(st.to, cb)
	if err != nil {
		return fmt.Errorf("symlink to: %w", err)
	}
	if err := makeDir(filepath.Dir(link)); err != nil {
		return err
	}
	if fi, err := os.Lstat(link); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("symlink: %s exists and is not a link", link)
	}
	return replaceLink(target, link)
}

// replaceLink makes link point to target, replacing an older link in one
// rename, so that visits in flight that link the same name at once each
// succeed (the last rename wins) and a reader never finds it missing.
func replaceLink(target, link string) error {
	tmp, err := os.CreateTemp(filepath.Dir(link), "."+filepath.Base(link)+".*")
	if err != nil {
		return err
	}
	tmp.Close()
	os.Remove(tmp.Name()) // the name is ours; the link takes it
	err = os.Symlink(target, tmp.Name())
	if err == nil {
		err = os.Rename(tmp.Name(), link)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
