package harness

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/mapper"
)

// execSignals runs an exec stage whose program reports its parent's pid
// and the signals it ignores, as /proc shows them.
func execSignals(t *testing.T, settings map[string]any) (ppid int, ignored uint64) {
	t.Helper()
	cx := stContext(t, t.TempDir(), nil, "v1", mapper.DataID{"ccd": "1"})
	script := `printf '{{"ppid": %d, "ign": "%s"}}' $PPID "$(sed -n 's/^SigIgn:[[:space:]]*//p' /proc/$$/status)"`
	settings["command"] = []string{"sh", "-c", script}
	settings["timeout"] = 10 * time.Second
	st := newStage(t, "exec", settings)
	cb := newClipboard()
	if err := st.(Processor).Process(cx, cb); err != nil {
		t.Fatal(err)
	}
	p, _ := cb.Get("ppid")
	ign, _ := cb.Text("ign")
	mask, err := strconv.ParseUint(ign, 16, 64)
	if err != nil {
		t.Fatalf("SigIgn %q: %v", ign, err)
	}
	return p.(int), mask
}

// stopMask is the SigIgn bits of SIGINT, SIGTERM and SIGUSR1.
const stopMask = 1<<(2-1) | 1<<(15-1) | 1<<(10-1)

// By default the exec stage starts its program itself, with no shell in
// between and no signal ignored: a stop signal ends it, and its visit is
// interrupted (see stopsignals.go).
func TestExecStageStartsProgramDirectly(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	ppid, ign := execSignals(t, map[string]any{})
	if ppid != os.Getpid() {
		t.Errorf("the program's parent is %d, want this process %d", ppid, os.Getpid())
	}
	if ign&stopMask != 0 {
		t.Errorf("the program ignores signals %#x; want INT, TERM and USR1 at their default", ign&stopMask)
	}
	cx := stContext(t, t.TempDir(), nil, "v1", mapper.DataID{"ccd": "1"})
	st := newStage(t, "exec", map[string]any{
		"command": []string{"sh", "-c", `kill -TERM $$; sleep 0.1; echo '{{"alive": 1}}'`},
		"timeout": 10 * time.Second,
	})
	if err := st.(Processor).Process(cx, newClipboard()); !errors.Is(err, ErrKilled) {
		t.Errorf("a program that got SIGTERM: error %v, want one matching ErrKilled", err)
	}
}

// With ignore_stop_signals the program starts with the stop signals
// ignored (through /bin/sh), still a child of this process.
func TestExecStageIgnoreStopSignalsSetting(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	ppid, ign := execSignals(t, map[string]any{"ignore_stop_signals": true})
	if ppid != os.Getpid() {
		t.Errorf("the program's parent is %d, want this process %d", ppid, os.Getpid())
	}
	if ign&stopMask != stopMask {
		t.Errorf("the program ignores %#x of the stop signals, want %#x", ign&stopMask, stopMask)
	}
}

// The exec stage makes the directories of the locations it writes to
// (output, scratch, work) that its command, environment or directory name,
// before the program runs, as the output stage makes its files'
// directories. The input location is never made.
func TestExecStageMakesOutputLocations(t *testing.T) {
	run := t.TempDir()
	locs := map[string]string{"input": "in/{visit}", "output": "out/{visit}", "scratch": "scratch/{visit}/{ccd}", "work": "work/{visit}"}
	cx := stContext(t, run, locs, "v1", mapper.DataID{"ccd": "3"})
	st := newStage(t, "exec", map[string]any{
		"command": []string{"sh", "-c", `echo 1 > "$1/a.json" && echo 2 > "$2" && echo "$3" >/dev/null`, "sh", "{output}", "{scratch}/b.json", "{input}/x"},
		"env":     pairs("WORK", "{work}"),
		"timeout": 10 * time.Second,
	})
	if err := st.(Processor).Process(cx, newClipboard()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"out/v1/a.json", "scratch/v1/3/b.json", "work/v1"} {
		if _, err := os.Stat(filepath.Join(run, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(run, "in")); err == nil {
		t.Error("the input location was made")
	}
}
