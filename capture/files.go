package capture

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Named is a value of a stage setting after expansion that may name an
// input file.
type Named struct {
	Setting string // the setting's key, with [i] or .key for an element
	Text    string // the expanded value
}

// InputFiles records the regular files that the named values name: a
// whole value, or the part after the first '=' (--in=PATH). Relative
// names are looked for in each of dirs, in order (the stage's working
// directory first). Files below copyBelow bytes keep their bytes.
func InputFiles(named []Named, dirs []string, copyBelow int64) []File {
	var out []File
	seen := map[string]bool{}
	for _, n := range named {
		for _, text := range candidates(n.Text) {
			path, ok := findFile(text, dirs)
			if !ok || seen[n.Setting+"\x00"+path] {
				continue
			}
			seen[n.Setting+"\x00"+path] = true
			out = append(out, record(n.Setting, text, path, copyBelow))
		}
	}
	return out
}

func candidates(text string) []string {
	out := []string{text}
	if i := strings.IndexByte(text, '='); i > 0 && i < len(text)-1 {
		out = append(out, text[i+1:])
	}
	return out
}

// findFile says where text names a regular file, if it does.
func findFile(text string, dirs []string) (string, bool) {
	if text == "" || strings.ContainsAny(text, "\n\x00") {
		return "", false
	}
	try := []string{text}
	if !filepath.IsAbs(text) {
		try = try[:0]
		for _, d := range dirs {
			try = append(try, filepath.Join(d, text))
		}
	}
	for _, p := range try {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return filepath.Clean(p), true
		}
	}
	return "", false
}

// record is path's File: its size, time, checksum and, below copyBelow
// bytes, its bytes. A file that cannot be read says so in NotCopied.
func record(setting, named, path string, copyBelow int64) File {
	f := File{Setting: setting, Named: named, Path: path}
	fi, err := os.Stat(path)
	if err != nil {
		f.NotCopied = err.Error()
		return f
	}
	f.Size, f.ModTime = fi.Size(), fi.ModTime().UTC()
	keep := f.Size < copyBelow
	data, sum, err := readSum(path, keep)
	if err != nil {
		f.NotCopied = err.Error()
		return f
	}
	f.SHA256 = sum
	if keep {
		f.Data = data
	} else {
		f.NotCopied = fmt.Sprintf("%d bytes, not below the copy limit of %d (freeze_dry_limits.copy_below)", f.Size, copyBelow)
	}
	return f
}

// readSum checksums the file, keeping its bytes if keep.
func readSum(path string, keep bool) ([]byte, string, error) {
	in, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer in.Close()
	h := sha256.New()
	var w io.Writer = h
	var kept strings.Builder
	if keep {
		w = io.MultiWriter(h, &kept)
	}
	if _, err := io.Copy(w, in); err != nil {
		return nil, "", err
	}
	var data []byte
	if keep {
		data = []byte(kept.String())
	}
	return data, hex.EncodeToString(h.Sum(nil)), nil
}

// Matches says whether the file at path is the one f recorded: same size
// and checksum.
func (f File) Matches(path string) bool {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != f.Size {
		return false
	}
	_, sum, err := readSum(path, false)
	return err == nil && sum == f.SHA256
}
