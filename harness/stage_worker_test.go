package harness

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/testenv"
	"github.com/dpsbatch/dpsbatch/mapper"
)

// workerRun is a pipeline whose worker stage runs a Python function
// through python/dpsworker.py, run in-process (Run with the local ranks).
type workerRun struct {
	dir    string // the script, its marks (starts, exits)
	runDir string
	log    *testenv.SyncBuffer
}

// workerScript writes a worker in Python: the body of
// process(inputs, data_id, visit, params), run through dpsworker.serve.
// It prints a banner on stdout before serving, and notes each start and
// each end (stdin closed) of a worker in DIR/starts and DIR/exits.
func workerScript(t *testing.T, body string) *workerRun {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		testenv.SkipOrFail(t, "python3 is not installed (scripts/cluster.sh install installs it)")
	}
	w := &workerRun{dir: t.TempDir(), runDir: filepath.Join(t.TempDir(), "run"), log: &testenv.SyncBuffer{}}
	script := "import os, sys, time\n" +
		"import dpsworker\n" +
		"def mark(name):\n" +
		"    with open(os.path.join(os.environ['MARKS'], name), 'a') as f: f.write('%d\\n' % os.getpid())\n" +
		"def process(inputs, data_id, visit, params):\n" +
		body +
		"mark('starts')\n" +
		"print('a banner, not an answer', flush=True)\n" +
		"dpsworker.serve(process)\n" +
		"mark('exits')\n"
	if err := os.WriteFile(filepath.Join(w.dir, "work.py"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	return w
}

// policy is a policy of 3 slices over ccd 1..6 whose stage "work" is the
// worker (settings extra added), then an output stage writing what it
// produced to out/VISIT/ccdN.json.
func (w *workerRun) policy(t *testing.T, extra string) string {
	lib, err := filepath.Abs("../python")
	if err != nil {
		t.Fatal(err)
	}
	return testHead + fmt.Sprintf(`locations: {output: "out/{visit}"}
events: {trigger: {properties: [filter]}}
stages:
  - name: work
    type: worker
    settings:
      command: [python3, %q]
      env: {PYTHONPATH: %q, MARKS: %q}
      inputs: [ccd, filter]
      produces: [result]
      params: {add: 100}
%s
  - name: write
    type: output
    settings: {files: {result: "{output}/ccd{ccd}.json"}}
`, filepath.Join(w.dir, "work.py"), lib, w.dir, extra)
}

func (w *workerRun) run(t *testing.T, policy string, visits ...string) (*Summary, error) {
	t.Helper()
	sum, _, err := runYAML(t, policy, visits, func(lr *RunOptions) {
		lr.RunDir = w.runDir
		lr.Logger = slog.New(slog.NewJSONHandler(w.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	return sum, err
}

// marks counts the lines of DIR/name.
func (w *workerRun) marks(name string) int {
	b, _ := os.ReadFile(filepath.Join(w.dir, name))
	return strings.Count(string(b), "\n")
}

// records returns the log records with message msg.
func (w *workerRun) records(t *testing.T, msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(w.log.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// A Python function becomes a worker stage: one worker per slice, started
// once and kept for the run's visits, asked per data ID with its inputs,
// the visit, its properties and locations, and the stage's params; its answer goes on
// the clipboard, its stderr to the log with the visit and data ID, a
// banner on its stdout is skipped, and at the end its stdin closes and it
// exits.
func TestWorkerStagePythonFunction(t *testing.T) {
	w := workerScript(t, `    print('working on', data_id['ccd'], file=sys.stderr)
    return {'result': {'ccd': int(inputs['ccd']) + params['add'], 'visit': visit['id'],
                       'filter': visit['properties']['filter'], 'input_filter': inputs['filter'],
                       'output': visit['locations']['output']}}
`)
	sum, err := w.run(t, w.policy(t, ""), "1", "2")
	if err != nil {
		t.Fatalf("%v\n%+v\nlog:\n%s", err, sum.SliceFailures, w.log)
	}
	for _, v := range []string{"1", "2"} {
		for ccd := 1; ccd <= 6; ccd++ {
			b, err := os.ReadFile(filepath.Join(w.runDir, "out", v, fmt.Sprintf("ccd%d.json", ccd)))
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			json.Unmarshal(b, &got)
			want := map[string]any{"ccd": float64(100 + ccd), "visit": v, "filter": "r" + v, "input_filter": "r" + v,
				"output": filepath.Join(w.runDir, "out", v)}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("visit %s ccd %d: %v, want %v", v, ccd, got, want)
			}
		}
	}
	if n := w.marks("starts"); n != 3 {
		t.Errorf("%d workers started, want 3 (one per slice, for the whole run)", n)
	}
	if n := w.marks("exits"); n != 3 {
		t.Errorf("%d workers ended on their stdin's end, want 3", n)
	}
	found := false
	for _, rec := range w.records(t, "worker stderr") {
		if rec["line"] == "working on 4" {
			found = rec["dataId"] == "ccd=4" && rec["stage"] == "work" && rec["slice"] != nil && rec["visit"] != nil
			if !found {
				t.Errorf("stderr record %v lacks the data ID, stage, slice or visit", rec)
			}
			break
		}
	}
	if !found {
		t.Errorf("no stderr line of ccd 4 in the log:\n%s", w.log)
	}
	if n := len(w.records(t, "worker stdout (not an answer)")); n != 3 {
		t.Errorf("%d banners logged, want 3", n)
	}
}

// A function that raises fails that data ID with its message and keeps
// the worker; one that exits fails its data ID and the worker is started
// again for the next; one that takes longer than the timeout is killed and
// started again. The other data IDs come through.
func TestWorkerStageFailures(t *testing.T) {
	w := workerScript(t, `    if data_id['ccd'] == '2': raise ValueError('no good ccd 2')
    if data_id['ccd'] == '3' and visit['id'] == '1': sys.exit(3)
    if data_id['ccd'] == '5' and visit['id'] == '1': time.sleep(120)
    return {'result': 1}
`)
	start := time.Now()
	// The timeout covers the worker's start too (python3 may take
	// seconds to start on a loaded machine).
	sum, err := w.run(t, w.policy(t, "      timeout: 10s"), "1", "2")
	if err == nil {
		t.Fatal("no visit failed")
	}
	if took := time.Since(start); took > 60*time.Second {
		t.Errorf("took %v: the sleeping worker was not killed at its timeout", took)
	}
	want := map[string]string{
		"1/ccd=2": "worker: python3: ValueError: no good ccd 2",
		"2/ccd=2": "worker: python3: ValueError: no good ccd 2",
		"1/ccd=3": "worker: python3 exited with status 3",
		"1/ccd=5": "worker: python3 timed out after 10s",
	}
	got := map[string]string{}
	for _, f := range sum.SliceFailures {
		got[f.Visit+"/"+f.DataID] = f.Err
	}
	for k, w := range want {
		if !strings.HasPrefix(got[k], w) {
			t.Errorf("%s failed with %q, want %q", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("failures %v, want only %v", got, want)
	}
	if n := w.marks("starts"); n != 5 {
		t.Errorf("%d workers started, want 5 (3, and again after the exit and the timeout)", n)
	}
	if !strings.Contains(w.log.String(), "Traceback") {
		t.Errorf("the raise's traceback is not in the log:\n%s", w.log)
	}
}

// A worker lost workerGiveUp times in a row is reported once and not
// started again: the slice's other data IDs fail at once with that one
// message.
func TestWorkerStageGivesUp(t *testing.T) {
	w := workerScript(t, `    os._exit(1)
`)
	policy := strings.Replace(w.policy(t, ""), "slices: 3", "slices: 1", 1)
	sum, err := w.run(t, policy, "1", "2")
	if err == nil {
		t.Fatal("no visit failed")
	}
	if len(sum.SliceFailures) != 12 {
		t.Fatalf("%d failures, want 12: %+v", len(sum.SliceFailures), sum.SliceFailures)
	}
	for i, f := range sum.SliceFailures {
		want := "worker: python3 exited with status 1"
		if i >= workerGiveUp {
			want = "worker: python3 was lost 3 times in a row and is not started again in this run; the last time: python3 exited with status 1"
		}
		if !strings.HasPrefix(f.Err, want) {
			t.Errorf("failure %d (%s/%s): %q, want %q", i, f.Visit, f.DataID, f.Err, want)
		}
	}
	if n := w.marks("starts"); n != workerGiveUp {
		t.Errorf("%d workers started, want %d", n, workerGiveUp)
	}
	if n := len(w.records(t, "worker given up")); n != 1 {
		t.Errorf("%d records of the worker given up, want 1", n)
	}
}

// A worker that does not end when its stdin closes is killed after its
// grace.
func TestWorkerStageKilledAfterGrace(t *testing.T) {
	cx := stContext(t, t.TempDir(), nil, "", nil)
	st := newStage(t, "worker", map[string]any{
		"command": []string{"sh", "-c", "trap '' TERM; exec 0</dev/null; echo $$ > pid; sleep 60"},
		"timeout": 10 * time.Second,
		"grace":   200 * time.Millisecond,
	})
	if err := st.(Initializer).Initialize(cx); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(cx.RunDir(), "pid")
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(pidFile); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	if err := st.(Shutdowner).Shutdown(cx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown took %v, want about the grace", took)
	}
	b, _ := os.ReadFile(pidFile)
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%s/stat", strings.TrimSpace(string(b)))); err == nil && !strings.Contains(string(b), ") Z ") {
		t.Errorf("the worker still runs after its grace: %s", b)
	}
}

// A worker's command may not use what it does not know when it starts.
func TestWorkerStageSettings(t *testing.T) {
	ty, _ := LookupStage("worker")
	for _, tc := range []struct {
		settings map[string]any
		want     string
	}{
		{map[string]any{"command": []string{"prog", "{visit}"}, "timeout": time.Second}, `command: "{visit}" uses {visit}`},
		{map[string]any{"command": []string{"prog", "{input}/{gain}"}, "timeout": time.Second}, `uses {gain}`},
		{map[string]any{"command": []string{"prog"}, "timeout": time.Second, "params": []any{1}}, "params: expected a mapping"},
		{map[string]any{"command": []string{"prog"}, "timeout": time.Second, "produces": []string{"a"}, "shared": []string{"b"}}, `shared: "b" is not one of the keys in produces`},
	} {
		_, err := ty.New(settingsOf(tc.settings))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.settings, err, tc.want)
		}
	}
}

// A worker ended by a stop signal reads as killed (ErrKilled), so a slice
// that heard the signal leaves the visit interrupted, not failed; an
// ordinary exit does not.
func TestWorkerStageKilledBySignal(t *testing.T) {
	for _, tc := range []struct {
		script string
		killed bool
	}{
		{`read line; kill -TERM $$`, true},
		{`read line; exit 1`, false},
	} {
		cx := stContext(t, t.TempDir(), nil, "v1", mapper.DataID{"ccd": "1"})
		st := newStage(t, "worker", map[string]any{"command": []string{"sh", "-c", tc.script}, "timeout": 10 * time.Second})
		if err := st.(Initializer).Initialize(cx); err != nil {
			t.Fatal(err)
		}
		err := st.(Processor).Process(cx, newClipboard())
		if errors.Is(err, ErrKilled) != tc.killed {
			t.Errorf("%s: error %v, ErrKilled %v; want %v", tc.script, err, errors.Is(err, ErrKilled), tc.killed)
		}
		st.(Shutdowner).Shutdown(cx)
	}
}
