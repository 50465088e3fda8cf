// Package version says which dpsbatch a binary is: its version (set at
// build time with -ldflags "-X
// github.com/dpsbatch/dpsbatch/internal/version.Version=1.2.0", "dev"
// otherwise) and the commit it was built from (the Go toolchain's build
// information, vcs.revision and vcs.modified). `dpsbatch --version`
// prints it on one line, and `dpsbatch submit --binary` reads that line
// from the binary it is given, to refuse one that is no dpsbatch or not
// this version. It never looks at the source tree or the network.
package version

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"runtime/debug"
	"strings"
	"time"
)

// Version is this build's version; a release build sets it with -ldflags.
var Version = "dev"

// Info is what a binary says about itself.
type Info struct {
	Version  string
	Commit   string // the full commit hash; "" when the build did not record one (go test, go run, no VCS)
	Modified bool   // built from a tree with uncommitted changes
}

// Get returns this binary's Info.
func Get() Info {
	i := Info{Version: Version}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return i
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Commit = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
}

// String is the line `dpsbatch --version` prints:
//
//	dpsbatch 1.2.0 (commit 0123abcd..., modified)
//	dpsbatch dev (commit unknown)
func (i Info) String() string {
	commit := i.Commit
	if commit == "" {
		commit = "unknown"
	}
	if i.Modified {
		commit += ", modified"
	}
	return fmt.Sprintf("dpsbatch %s (commit %s)", i.Version, commit)
}

var line = regexp.MustCompile(`^dpsbatch (\S+) \(commit ([0-9a-f]+|unknown)(, modified)?\)$`)

// Parse reads the line String writes.
func Parse(s string) (Info, error) {
	m := line.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return Info{}, fmt.Errorf("version: %q is not a dpsbatch version line (dpsbatch VERSION (commit HASH))", preview(s))
	}
	i := Info{Version: m[1], Commit: m[2], Modified: m[3] != ""}
	if i.Commit == "unknown" {
		i.Commit = ""
	}
	return i, nil
}

// ErrIncompatible is wrapped by Compatible's and Check's refusals.
var ErrIncompatible = errors.New("not a compatible dpsbatch")

// Compatible says whether a binary that reports other can run the jobs of
// this one: the same version and, when both know the commit they were
// built from, the same commit (dev builds all say "dev").
func (i Info) Compatible(other Info) error {
	if other.Version != i.Version {
		return fmt.Errorf("%w: it is version %s, this dpsbatch is %s", ErrIncompatible, other.Version, i.Version)
	}
	if i.Commit != "" && other.Commit != "" && i.Commit != other.Commit {
		return fmt.Errorf("%w: it was built from commit %.12s, this dpsbatch from %.12s", ErrIncompatible, other.Commit, i.Commit)
	}
	return nil
}

// Check runs bin --version and says whether it is a dpsbatch compatible
// with this one (Get).
func Check(ctx context.Context, bin string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--version")
	cmd.WaitDelay = time.Second
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			err = fmt.Errorf("%w: %s", err, preview(string(ee.Stderr)))
		}
		return fmt.Errorf("%w: %s --version: %v", ErrIncompatible, bin, err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	if strings.TrimSpace(first) == "" {
		return fmt.Errorf("%w: %s --version printed nothing", ErrIncompatible, bin)
	}
	other, err := Parse(first)
	if err != nil {
		return fmt.Errorf("%w: %s --version: %v", ErrIncompatible, bin, err)
	}
	return Get().Compatible(other)
}

func preview(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
