// Package examples holds the example pipelines, embedded in the binary so
// that `dpsbatch local` with no arguments runs one from anywhere.
package examples

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed ccdproc
var files embed.FS

// Default is the example `dpsbatch local` runs when given no pipeline.
const Default = "ccdproc"

// Extract writes the example called name into dir (created if needed) and
// returns the paths of its policy and its visit file.
func Extract(name, dir string) (policy, visits string, err error) {
	sub, err := fs.Sub(files, name)
	if err != nil {
		return "", "", err
	}
	if _, err := fs.Stat(sub, "pipeline.yaml"); err != nil {
		return "", "", fmt.Errorf("examples: no example %q", name)
	}
	err = fs.WalkDir(sub, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, path)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := fs.ReadFile(sub, path)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if filepath.Ext(path) == ".sh" {
			mode = 0o755
		}
		return os.WriteFile(dst, data, mode)
	})
	if err != nil {
		return "", "", fmt.Errorf("examples: extracting %s: %w", name, err)
	}
	return filepath.Join(dir, "pipeline.yaml"), filepath.Join(dir, "visits.csv"), nil
}
