package harness

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/capture"
)

// putStage puts n=5 and an item no encoder takes; bumpFailStage sets n=6
// and then fails, so its capture must show n as the call got it.
type putStage struct{}

func (putStage) Process(cx *Context, cb *Clipboard) error {
	cb.Put("n", 5)
	cb.Put("handle", make(chan int))
	return nil
}

type bumpFailStage struct{}

func (bumpFailStage) Process(cx *Context, cb *Clipboard) error {
	cb.Put("n", 6)
	cb.PutShared("fresh", 1)
	cb.Delete("visitId")
	cb.Put("visitId", "changed")
	return errors.New("bump says no")
}

func init() {
	RegisterStage(Type{Name: "test-put", Produces: []string{"n", "handle"}, New: func(Settings) (Stage, error) { return putStage{}, nil }})
	RegisterStage(Type{Name: "test-bumpfail", Settings: []Setting{{Key: "file", Kind: String}},
		New: func(Settings) (Stage, error) { return bumpFailStage{}, nil }})
}

// captures reads every capture file under the run directory.
func captures(t *testing.T, runDir string) map[string]*capture.Capture {
	t.Helper()
	out := map[string]*capture.Capture{}
	filepath.WalkDir(filepath.Join(runDir, capture.Dir), func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".json") {
			c, err := capture.Read(p)
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(runDir, p)
			out[rel] = c
		}
		return nil
	})
	return out
}

func withRunDir(dir *string) runOpt { return func(o *RunOptions) { *dir = o.RunDir } }

func TestFailedSliceCallIsCapturedAsItStarted(t *testing.T) {
	var runDir string
	sum, _, err := runYAML(t, `pipeline: t
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
events: {trigger: {properties: [filter]}}
stages:
  - {name: put, type: test-put}
  - {name: bump, type: test-bumpfail, settings: {file: "{pipelinedir}/pipeline.yaml"}}
`, []string{"7"}, withRunDir(&runDir))
	if !errors.Is(err, ErrVisitsFailed) || len(sum.SliceFailures) != 2 {
		t.Fatalf("run: %v, failures %+v; want both data IDs failed", err, sum.SliceFailures)
	}
	f := sum.SliceFailures[0]
	if f.Capture == "" {
		t.Fatalf("failure %+v names no capture", f)
	}
	c, err := capture.Read(filepath.Join(runDir, f.Capture))
	if err != nil {
		t.Fatal(err)
	}
	if c.Why != capture.WhyFailed || c.Err != "bump says no" || c.Stage != "bump" || c.Side != capture.SideSlice || c.Visit != "7" ||
		c.Slice != f.Slice || c.Event["filter"] != "r7" || c.Version == "" || !strings.Contains(c.Policy, "test-bumpfail") {
		t.Errorf("capture %+v", c)
	}
	items := map[string]any{}
	for _, it := range c.Items {
		items[it.Key], _ = it.Value()
	}
	if items["n"] != 5 || items["visitId"] != "7" || items["ccd"] == nil || items["fresh"] != nil {
		t.Errorf("items %v: want them as the call got them: n 5, the visit and the data ID, not fresh", items)
	}
	if len(c.Unserialisable) != 1 || c.Unserialisable[0].Key != "handle" {
		t.Errorf("unserialisable %+v, want handle listed", c.Unserialisable)
	}
	if len(c.Files) != 1 || c.Files[0].Setting != "file" || !strings.Contains(string(c.Files[0].Data), "test-bumpfail") {
		t.Errorf("files %+v: want the policy the file setting names, copied", c.Files)
	}
	if c.Expanded["file"] != c.Files[0].Path {
		t.Errorf("expanded settings %v", c.Expanded)
	}
}

func TestFailedPreprocessIsCapturedForTheVisit(t *testing.T) {
	var runDir string
	_, end, err := runYAML(t, testHead+`stages:
  - {name: gate, type: test-prefail, settings: {visit: "2"}}
`, []string{"1", "2"}, withRunDir(&runDir))
	if !errors.Is(err, ErrVisitsFailed) {
		t.Fatal(err)
	}
	res := end.results["2"]
	if res.Capture == "" || end.results["1"].Capture != "" {
		t.Fatalf("visit results %+v: want the failed visit's capture only", end.results)
	}
	c, err := capture.Read(filepath.Join(runDir, res.Capture))
	if err != nil {
		t.Fatal(err)
	}
	if c.Side != capture.SidePipeline || c.Part != "Preprocess" || c.Err != "preprocess says no" || c.DataID != nil {
		t.Errorf("capture %+v", c)
	}
}

func TestStagesNamedForFreezeDryAreCapturedAtEntry(t *testing.T) {
	var runDir string
	policy := testHead + `freeze_dry: [put]
stages:
  - {name: put, type: test-put}
  - {name: rec, type: test-record}
`
	if _, _, err := runYAML(t, policy, []string{"1"}, withRunDir(&runDir), func(o *RunOptions) { o.FreezeDry = []string{"rec"} }); err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, c := range captures(t, runDir) {
		if c.Why != capture.WhyEntry {
			t.Errorf("capture of %s: why %q", c.Stage, c.Why)
		}
		n[c.Stage]++
	}
	if n["put"] != 6 || n["rec"] != 6 {
		t.Errorf("entry captures by stage %v, want one per data ID of put (policy) and rec (RunOptions)", n)
	}
}

func TestFreezeDryNamesAStage(t *testing.T) {
	dir := t.TempDir()
	load := func(text string) error {
		path := filepath.Join(dir, "p.yaml")
		os.WriteFile(path, []byte(testHead+text+"stages:\n  - {name: measure, type: test-record}\n"), 0o644)
		_, err := Load(path, LoadOptions{})
		return err
	}
	err := load("freeze_dry: [mesure]\n")
	if err == nil || !strings.Contains(err.Error(), `p.yaml:4: freeze_dry[0]: no stage is called "mesure" (did you mean "measure"?)`) {
		t.Errorf("Load: %v; want the line, key and stage named", err)
	}
	err = load("freeze_dry_limits: {per_run: lots}\n")
	if err == nil || !strings.Contains(err.Error(), `p.yaml:4: freeze_dry_limits.per_run: expected a positive size`) || !strings.Contains(err.Error(), "lots") {
		t.Errorf("Load: %v; want the line, key and value named", err)
	}
	_, _, err = runYAML(t, testHead+"stages:\n  - {name: measure, type: test-record}\n", []string{"1"}, func(o *RunOptions) { o.FreezeDry = []string{"nope"} })
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `no stage "nope"`) {
		t.Errorf("RunOptions.FreezeDry naming no stage: %v, want ErrInvalid naming it", err)
	}
}

func TestCapturesKeepToTheRunsLimit(t *testing.T) {
	var runDir string
	sum, _, _ := runYAML(t, testHead+`freeze_dry_limits: {per_run: 6KiB}
stages:
  - {name: bump, type: test-bumpfail}
`, []string{"1", "2", "3"}, withRunDir(&runDir))
	written := 0
	for _, f := range sum.SliceFailures {
		if f.Capture != "" {
			written++
		}
	}
	if written == 0 || written == len(sum.SliceFailures) {
		t.Fatalf("%d of %d failures have a capture: want some, not all, under 6KiB", written, len(sum.SliceFailures))
	}
	if msg := capture.LimitReached(runDir); !strings.Contains(msg, "freeze_dry_limits.per_run") {
		t.Errorf("limit message %q", msg)
	}
}

// A worker stage's capture holds the request line its program read, so
// the program alone, given that line on stdin (under pdb, say), answers
// as it did in the run; and the program's file, copied.
func TestWorkerCaptureHoldsTheProgramsInput(t *testing.T) {
	w := workerScript(t, `    if data_id['ccd'] == '2':
        raise ValueError('no sources on ccd 2')
    return {'result': 1}
`)
	sum, err := w.run(t, w.policy(t, ""), "1")
	if !errors.Is(err, ErrVisitsFailed) || len(sum.SliceFailures) != 1 {
		t.Fatalf("run: %v, failures %+v", err, sum.SliceFailures)
	}
	c, err := capture.Read(filepath.Join(w.runDir, sum.SliceFailures[0].Capture))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.Stdin, `"dataId":{"ccd":"2"}`) || !strings.Contains(c.Stdin, `"inputs":{"ccd":"2","filter":"r1"}`) {
		t.Fatalf("capture's stdin %q, want the request for ccd 2", c.Stdin)
	}
	script := filepath.Join(w.dir, "work.py")
	if len(c.Files) != 1 || c.Files[0].Path != script || c.Files[0].Data == nil {
		t.Errorf("files %+v, want the worker's program, copied", c.Files)
	}
	cmd := exec.Command("python3", script)
	env := c.Expanded["env"].(map[string]any)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+env["PYTHONPATH"].(string), "MARKS="+t.TempDir())
	cmd.Stdin = strings.NewReader(c.Stdin)
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), `{"error": "ValueError: no sources on ccd 2"}`) || !strings.Contains(sum.SliceFailures[0].Err, "ValueError: no sources on ccd 2") {
		t.Errorf("the program on the captured stdin: %v\n%s", err, out)
	}
}

// touchy panics when encoded, either way.
type touchy struct{}

func (touchy) MarshalJSON() ([]byte, error) { panic("touchy: json") }
func (touchy) GobEncode() ([]byte, error)   { panic("touchy: gob") }

type touchyStage struct{}

func (touchyStage) Process(cx *Context, cb *Clipboard) error {
	cb.Put("touchy", touchy{})
	return nil
}

func init() {
	RegisterStage(Type{Name: "test-touchy", Produces: []string{"touchy"}, New: func(Settings) (Stage, error) { return touchyStage{}, nil }})
}

// A capture that cannot be made is logged; the failure is recorded
// without it, and the run goes on.
func TestCaptureThatPanicsLeavesTheRunAlone(t *testing.T) {
	sum, _, err := runYAML(t, testHead+`stages:
  - {name: touchy, type: test-touchy}
  - {name: bump, type: test-bumpfail}
`, []string{"1", "2"})
	if !errors.Is(err, ErrVisitsFailed) || sum.Failed != 2 || len(sum.SliceFailures) != 12 {
		t.Fatalf("run: %v, %d visits failed, %d slice failures; want both visits failed on every data ID", err, sum.Failed, len(sum.SliceFailures))
	}
	if f := sum.SliceFailures[0]; f.Capture != "" || f.Err != "bump says no" {
		t.Errorf("failure %+v, want the stage's error and no capture", f)
	}
}

// With visits in flight, calls of several visits run at once on a rank:
// each failing call's capture still holds its own input as it started.
func TestCapturesOfVisitsInFlight(t *testing.T) {
	for _, name := range []string{"test-put", "test-bumpfail"} {
		ty, err := LookupStage(name)
		if err != nil {
			t.Fatal(err)
		}
		ty.Name, ty.Concurrent = name+"-concurrent", true
		if _, err := LookupStage(ty.Name); err != nil {
			RegisterStage(ty)
		}
	}
	var runDir string
	visits := []string{"7", "8", "9", "10", "11", "12"}
	sum, _, err := runYAML(t, `pipeline: t
slices: 2
in_flight: 3
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
events: {trigger: {properties: [filter]}}
stages:
  - {name: put, type: test-put-concurrent}
  - {name: bump, type: test-bumpfail-concurrent}
`, visits, withRunDir(&runDir))
	if !errors.Is(err, ErrVisitsFailed) || len(sum.SliceFailures) != 2*len(visits) {
		t.Fatalf("run: %v, %d failures; want every data ID of every visit failed", err, len(sum.SliceFailures))
	}
	for _, f := range sum.SliceFailures {
		c, err := capture.Read(filepath.Join(runDir, f.Capture))
		if err != nil {
			t.Fatalf("failure %+v: %v", f, err)
		}
		items := map[string]any{}
		for _, it := range c.Items {
			items[it.Key], _ = it.Value()
		}
		if c.Visit != f.Visit || items["n"] != 5 || items["visitId"] != f.Visit || items["fresh"] != nil {
			t.Errorf("visit %s: capture of visit %s with items %v; want its own, as the call got them", f.Visit, c.Visit, items)
		}
	}
}
