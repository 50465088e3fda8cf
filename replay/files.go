package replay

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/dpsbatch/dpsbatch/capture"
)

// restoreDir is where restored input files go in the replay's run
// directory.
const restoreDir = "capture-files"

// restoreFiles checks each input file the capture recorded: one found
// unchanged is read where it is; one missing or changed whose bytes the
// capture holds is written into the run directory and stage's setting
// pointed at it; one whose bytes it does not hold is noted.
func restoreFiles(c *capture.Capture, stage map[string]any, runDir string) (restored, notes []string) {
	touched := map[string]bool{} // list settings already set to their expanded values
	for i, f := range c.Files {
		if f.Matches(f.Path) {
			continue
		}
		if f.Data == nil {
			notes = append(notes, fmt.Sprintf("input file %s is missing or changed since the capture, which does not hold it (%s): the stage reads it as it is", f.Path, f.NotCopied))
			continue
		}
		path := filepath.Join(runDir, restoreDir, strconv.Itoa(i+1), filepath.Base(f.Path))
		if err := write(path, f.Data); err != nil {
			notes = append(notes, fmt.Sprintf("input file %s could not be restored: %v", f.Path, err))
			continue
		}
		if err := pointAt(stage, c.Expanded, f, path, touched); err != nil {
			notes = append(notes, fmt.Sprintf("input file %s restored as %s, but setting %s could not be pointed at it: %v", f.Path, path, f.Setting, err))
			continue
		}
		restored = append(restored, fmt.Sprintf("%s (setting %s) as %s", f.Path, f.Setting, path))
	}
	return restored, notes
}

func write(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

var settingPath = regexp.MustCompile(`^([^.\[]+)(?:\[(\d+)\]|\.(.+))?$`)

// pointAt sets the stage's setting that named f (key, key[i] or key.name)
// to its expanded value with f's name replaced by path, as a pattern. A
// list setting becomes its expanded elements the first time (touched).
func pointAt(stage map[string]any, expanded map[string]any, f capture.File, path string, touched map[string]bool) error {
	m := settingPath.FindStringSubmatch(f.Setting)
	if m == nil {
		return fmt.Errorf("not a setting's name")
	}
	key, index, name := m[1], m[2], m[3]
	settings, _ := stage["settings"].(map[string]any)
	if settings == nil {
		settings = map[string]any{}
		stage["settings"] = settings
	}
	switch {
	case index != "":
		i, _ := strconv.Atoi(index)
		list, _ := expanded[key].([]any)
		if i >= len(list) {
			return fmt.Errorf("the capture's expanded %s has no element %d", key, i)
		}
		if !touched[key] {
			elems := make([]any, len(list))
			for j, e := range list {
				elems[j] = escape(fmt.Sprint(e))
			}
			settings[key], touched[key] = elems, true
		}
		settings[key].([]any)[i] = escape(strings.Replace(fmt.Sprint(list[i]), f.Named, path, 1))
	case name != "":
		mp, _ := expanded[key].(map[string]any)
		out, _ := settings[key].(map[string]any)
		if mp == nil || out == nil {
			return fmt.Errorf("the capture's expanded %s is not a mapping", key)
		}
		out[name] = escape(strings.Replace(fmt.Sprint(mp[name]), f.Named, path, 1))
	default:
		s, ok := expanded[key].(string)
		if !ok {
			return fmt.Errorf("the capture's expanded %s is not a string", key)
		}
		settings[key] = escape(strings.Replace(s, f.Named, path, 1))
	}
	return nil
}

// escape makes s a pattern that expands to s.
func escape(s string) string {
	return strings.NewReplacer("{", "{{", "}", "}}").Replace(s)
}
