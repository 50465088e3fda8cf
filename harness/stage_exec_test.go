package harness

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/dpsbatch/dpsbatch/internal/conf"
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

// logContext is stContext with its log in buf.
func logContext(t *testing.T, run string, locs map[string]string, buf *bytes.Buffer) *Context {
	cx := stContext(t, run, locs, "v1", mapper.DataID{"ccd": "3"})
	cx.run.log = slog.New(slog.NewTextHandler(buf, nil))
	return cx
}

// A real program prints a banner before its JSON object: the object on
// stdout's last non-empty line is the result, the lines before it go to
// the log with the visit, stage and data ID. A program printing one
// object over several lines still works as before.
func TestExecStageResultsFromLastLine(t *testing.T) {
	var log bytes.Buffer
	cx := logContext(t, t.TempDir(), nil, &log)
	st := newStage(t, "exec", map[string]any{
		"command":  []string{"sh", "-c", `echo 'SExtractor banner line'; echo; echo '{{"nsources": 12}}'; echo`},
		"timeout":  10 * time.Second,
		"produces": []string{"nsources"},
	})
	cb := newClipboard()
	if err := st.(Processor).Process(cx, cb); err != nil {
		t.Fatal(err)
	}
	if v, _ := cb.Get("nsources"); v != 12 {
		t.Errorf("nsources = %#v, want 12", v)
	}
	for _, want := range []string{`line="SExtractor banner line"`, "visit=v1", "stage=s", `dataId="ccd=3"`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log lacks %s:\n%s", want, log.String())
		}
	}
	if strings.Contains(log.String(), "nsources") {
		t.Errorf("the result line went to the log:\n%s", log.String())
	}
	st = newStage(t, "exec", map[string]any{
		"command": []string{"printf", `{{\n  "a": 1,\n  "b": [2, 3]\n}}\n`},
		"timeout": 10 * time.Second,
	})
	cb = newClipboard()
	if err := st.(Processor).Process(cx, cb); err != nil {
		t.Fatal(err)
	}
	if v, _ := cb.Get("a"); v != 1 {
		t.Errorf("a multi-line object: a = %#v, want 1", v)
	}
}

// results_file: the results come from a JSON file the program writes
// (a template, read after it exits; its stdout goes to the log). A file
// left from an earlier attempt is removed before the program starts; a
// missing or invalid file fails the data ID, naming the file.
func TestExecStageResultsFile(t *testing.T) {
	run := t.TempDir()
	var log bytes.Buffer
	cx := logContext(t, run, map[string]string{"output": "out/{visit}"}, &log)
	settings := func(script string) map[string]any {
		return map[string]any{
			"command":      []string{"sh", "-c", script, "sh", "{output}/r-{ccd}.json"},
			"results_file": "{output}/r-{ccd}.json",
			"timeout":      10 * time.Second,
			"produces":     []string{"n"},
		}
	}
	file := filepath.Join(run, "out", "v1", "r-3.json")
	cb := newClipboard()
	st := newStage(t, "exec", settings(`echo 'banner {{"x": 1}}'; echo '{{"n": 7}}' > "$1"`))
	if err := st.(Processor).Process(cx, cb); err != nil {
		t.Fatal(err)
	}
	if v, _ := cb.Get("n"); v != 7 {
		t.Errorf("n = %#v, want 7", v)
	}
	if cb.Has("x") || !strings.Contains(log.String(), "banner") {
		t.Errorf("stdout was not only logged: x on the clipboard %v; log:\n%s", cb.Has("x"), log.String())
	}
	for _, tc := range []struct{ name, script, want string }{
		{"stale", `true`, "did not write its results file " + file},
		{"invalid", `echo 'n=7' > "$1"`, "results file " + file + " is not one JSON object"},
	} {
		st := newStage(t, "exec", settings(tc.script))
		err := st.(Processor).Process(cx, newClipboard())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// results: none: the program's stdout all goes to the log, nothing to the
// clipboard; produces then has nothing to come from.
func TestExecStageResultsNone(t *testing.T) {
	var log bytes.Buffer
	cx := logContext(t, t.TempDir(), nil, &log)
	st := newStage(t, "exec", map[string]any{"command": []string{"echo", "3 lines counted"}, "results": "none", "timeout": 10 * time.Second})
	if err := st.(Processor).Process(cx, newClipboard()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "3 lines counted") {
		t.Errorf("stdout not logged:\n%s", log.String())
	}
	ty, _ := LookupStage("exec")
	for _, bad := range []map[string]any{
		{"command": []string{"true"}, "results": "none", "produces": []string{"n"}},
		{"command": []string{"true"}, "results": "last"},
		{"command": []string{"true"}, "results": "none", "results_file": "r.json"},
		{"command": []string{"true"}, "results": "file"},
	} {
		bad["timeout"] = time.Second
		if _, err := ty.New(settingsOf(bad)); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}

// outputs: after the program exits, each declared output file must
// exist, else the data ID fails naming the missing ones; their sizes go on
// the clipboard under outputSizes (path -> bytes), added to by each stage.
func TestExecStageDeclaredOutputs(t *testing.T) {
	run := t.TempDir()
	cx := stContext(t, run, map[string]string{"output": "out/{visit}"}, "v1", mapper.DataID{"ccd": "3"})
	outs := []string{"{output}/a-{ccd}.txt", "{output}/b-{ccd}.txt"}
	a, b := filepath.Join(run, "out", "v1", "a-3.txt"), filepath.Join(run, "out", "v1", "b-3.txt")
	st := newStage(t, "exec", map[string]any{
		"command": []string{"sh", "-c", `printf 12345 > "$1"`, "sh", outs[0]},
		"outputs": outs, "timeout": 10 * time.Second,
	})
	err := st.(Processor).Process(cx, newClipboard())
	if err == nil || !strings.Contains(err.Error(), "did not write its declared outputs: "+b) || strings.Contains(err.Error(), a) {
		t.Fatalf("error %v, want one naming %s only", err, b)
	}
	st = newStage(t, "exec", map[string]any{
		"command": []string{"sh", "-c", `printf 12345 > "$1"; printf 1 > "$2"`, "sh", outs[0], outs[1]},
		"outputs": outs, "timeout": 10 * time.Second,
	})
	cb := newClipboard()
	cb.Put("outputSizes", map[string]any{"/earlier": 9})
	if err := st.(Processor).Process(cx, cb); err != nil {
		t.Fatal(err)
	}
	got, _ := cb.Get("outputSizes")
	if want := map[string]any{"/earlier": 9, a: 5, b: 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("outputSizes = %#v, want %#v", got, want)
	}
	if _, p := st.(KeyDeclarer).Keys(); !contains(p, "outputSizes") {
		t.Errorf("produces %v lacks outputSizes", p)
	}
}

// The README's exec example, a Debian-packaged program (sort) as it is:
// the stage of that block runs here on one CCD that exists and one that
// does not.
func TestExecStageReadmeExample(t *testing.T) {
	if _, err := exec.LookPath("sort"); err != nil {
		t.Skip("no sort")
	}
	settings := readmeExecSettings(t)
	run := t.TempDir()
	locs := map[string]string{"input": "{pipelinedir}/data/{visit}", "output": "output/{visit}", "work": "work"}
	os.MkdirAll(filepath.Join(run, "data", "v1"), 0o755)
	os.WriteFile(filepath.Join(run, "data", "v1", "ccd1.txt"), []byte("10\n9\n100\n"), 0o644)
	ty, _ := LookupStage("exec")
	st, err := ty.New(settings)
	if err != nil {
		t.Fatal(err)
	}
	cx := stContext(t, run, locs, "v1", mapper.DataID{"ccd": "1"})
	cb := newClipboard()
	if err := st.(Processor).Process(cx, cb); err != nil {
		t.Fatal(err)
	}
	sorted := filepath.Join(run, "output", "v1", "sorted-1.txt")
	if b, err := os.ReadFile(sorted); err != nil || string(b) != "9\n10\n100\n" {
		t.Errorf("%s: %q %v", sorted, b, err)
	}
	if got, _ := cb.Get("outputSizes"); !reflect.DeepEqual(got, map[string]any{sorted: 9}) {
		t.Errorf("outputSizes = %#v", got)
	}
	cx = stContext(t, run, locs, "v1", mapper.DataID{"ccd": "2"})
	err = st.(Processor).Process(cx, newClipboard())
	if err == nil || !strings.Contains(err.Error(), "ccd2.txt") || !strings.Contains(err.Error(), "exited with status 2") {
		t.Errorf("a missing CCD: error %v, want sort's exit and its stderr", err)
	}
}

// readmeExecSettings decodes the settings of the exec stage in the README's
// block that starts with "# sort every CCD's numbers".
func readmeExecSettings(t *testing.T) Settings {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "```yaml\n# sort every CCD's numbers")
	_, block, _ = strings.Cut(block, "\n") // the rest of the comment
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no exec example starting with \"# sort every CCD's numbers\"")
	}
	var stages []struct {
		Type     string
		Settings yaml.Node
	}
	if err := yaml.Unmarshal([]byte(block), &stages); err != nil || len(stages) != 1 || stages[0].Type != "exec" {
		t.Fatalf("README.md's exec example is not one exec stage: %v", err)
	}
	ty, _ := LookupStage("exec")
	d := &conf.Decoder{File: "README.md"}
	v := d.Settings(&stages[0].Settings, "settings", confSettings(ty.Settings))
	if len(d.Errs) > 0 {
		t.Fatal(d.Errs)
	}
	return Settings{v}
}
