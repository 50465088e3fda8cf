package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/state"
)

func TestResolveRun(t *testing.T) {
	e := newEnv(t, 2)
	dir := e.submit("calib-2025")
	e.submit("science-2025")
	for _, arg := range []string{dir, dir + "/", "calib-2025"} {
		got, err := ResolveRun(e.site, arg)
		if err != nil || got != dir {
			t.Errorf("ResolveRun(%q) = %q, %v; want %q", arg, got, err, dir)
		}
	}
	// A relative directory, from where the command runs.
	t.Chdir(e.root)
	if got, err := ResolveRun(nil, "./calib-2025"); err != nil || got != dir {
		t.Errorf("ResolveRun(./calib-2025) = %q, %v; want %q", got, err, dir)
	}
	// Without a site file, a bare name is a directory of the current one.
	if got, err := ResolveRun(nil, "calib-2025"); err != nil || got != dir {
		t.Errorf("ResolveRun(nil, calib-2025) = %q, %v; want %q", got, err, dir)
	}

	for _, tc := range []struct{ arg, says string }{
		{"calib-2052", `did you mean "calib-2025"?`},
		{"nothing-like-it", "is neither a run under " + e.root},
		{filepath.Join(e.root, "none"), "is not a run directory (no state.db)"},
		{"", "RUN is empty"},
	} {
		_, err := ResolveRun(e.site, tc.arg)
		if !errors.Is(err, conf.ErrInvalid) || tc.arg != "" && !errors.Is(err, ErrNoRun) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("ResolveRun(%q): %v; want ErrNoRun saying %q", tc.arg, err, tc.says)
		}
	}
	// A folder without a state file is no run, and is not suggested.
	if err := os.Mkdir(filepath.Join(e.root, "calib-2026"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ResolveRun(e.site, "calib-2026"); !errors.Is(err, ErrNoRun) || strings.Contains(err.Error(), `"calib-2026"?`) {
		t.Errorf("ResolveRun(calib-2026): %v; want ErrNoRun", err)
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"a", "run-1.2_x", "0abc", strings.Repeat("x", 128)} {
		if err := rundir.CheckName(ok); err != nil {
			t.Errorf("CheckName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".hidden", "-x", "a b", "a/b", "it's", `a"b`, "a$b", strings.Repeat("x", 129), "é"} {
		if err := rundir.CheckName(bad); !errors.Is(err, conf.ErrInvalid) {
			t.Errorf("CheckName(%q): %v; want invalid", bad, err)
		}
	}
}

// A submission killed before it moved its run directory in place leaves
// a hidden .NAME.new-* folder holding a state file: it is no run.
func TestRunsSkipsUnfinishedSubmissions(t *testing.T) {
	e := newEnv(t, 2)
	dir := e.submit("run1")
	left := filepath.Join(e.root, ".run2.new-123")
	if err := os.Mkdir(left, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(left, rundir.StateFile), readAll(t, rundir.Layout{Dir: dir}.State()), 0o644); err != nil {
		t.Fatal(err)
	}
	list, err := Runs(context.Background(), e.site, e.fake)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Dir != dir {
		var dirs []string
		for _, r := range list {
			dirs = append(dirs, r.Dir)
		}
		t.Errorf("Runs lists %v; want only %s", dirs, dir)
	}
}

// A run Runs cannot read (here: settings written by a newer dpsbatch) is
// listed with why, and the other runs still are: one run must not hide
// the rest.
func TestRunsListsUnreadableRuns(t *testing.T) {
	e := newEnv(t, 2)
	good := e.submit("run1")
	bad := filepath.Join(e.root, "run2")
	if err := os.Mkdir(bad, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := createState(rundir.Layout{Dir: bad}, state.Run{ID: "run2", Name: "run2", Dir: bad, Pipeline: "tiny", Created: runtest.FixedNow(),
		Settings: fmt.Sprintf(`{"version":%d}`, rundir.SettingsVersion+1)}, []string{"v1"}); err != nil {
		t.Fatal(err)
	}
	list, err := Runs(context.Background(), e.site, e.fake)
	if err != nil {
		t.Fatalf("Runs: %v; want both runs listed", err)
	}
	if len(list) != 2 || list[0].Dir != good || list[0].Unreadable != "" || list[1].Dir != bad || list[1].Run != "run2" ||
		!strings.Contains(list[1].Unreadable, fmt.Sprintf("version %d", rundir.SettingsVersion+1)) {
		t.Errorf("Runs: %+v; want run1, then run2 unreadable naming its settings' version", list)
	}
	// Status of that run alone is still an error.
	if _, err := Status(context.Background(), e.fake, []string{bad}); err == nil {
		t.Error("Status of an unreadable run: no error")
	}
}
