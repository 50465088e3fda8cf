package replay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/replay"
)

// measure puts the length of raw plus n; a raw that says "bad" fails
// it. Its Preprocess fails visit "pre".
type measure struct{}

func (measure) Process(cx *harness.Context, cb *harness.Clipboard) error {
	raw, _ := cb.Get("raw")
	if strings.TrimSpace(raw.(string)) == "bad" {
		return fmt.Errorf("measure: ccd %s is bad", cx.DataID()["ccd"])
	}
	n, _ := cb.Get("n")
	cb.Put("size", len(raw.(string))+n.(int))
	return nil
}

func (measure) Preprocess(cx *harness.Context, cb *harness.Clipboard) error {
	if cx.Visit() == "pre" {
		return errors.New("no calibration for visit pre")
	}
	return nil
}

func (measure) Postprocess(cx *harness.Context, cb *harness.Clipboard) error {
	if cx.Visit() == "post" {
		return errors.New("no summary for visit post")
	}
	return nil
}

type putN struct{}

func (putN) Process(cx *harness.Context, cb *harness.Clipboard) error { cb.Put("n", 100); return nil }

type after struct{}

func (after) Process(cx *harness.Context, cb *harness.Clipboard) error {
	cb.Put("after", true)
	return nil
}

func init() {
	harness.RegisterStage(harness.Type{Name: "replay-test-n", Produces: []string{"n"},
		New: func(harness.Settings) (harness.Stage, error) { return putN{}, nil }})
	harness.RegisterStage(harness.Type{Name: "replay-test-measure", Needs: []string{"n", "raw"}, Produces: []string{"size"},
		New: func(harness.Settings) (harness.Stage, error) { return measure{}, nil }})
	harness.RegisterStage(harness.Type{Name: "replay-test-after", Produces: []string{"after"},
		New: func(harness.Settings) (harness.Stage, error) { return after{}, nil }})
}

const policy = `pipeline: r
slices: 2
mapper: {type: list, settings: {ids: [{ccd: 1}, {ccd: 2}]}}
events: {trigger: {properties: [filter]}}
freeze_dry: [load]
stages:
  - {name: n, type: replay-test-n}
  - {name: load, type: input, settings: {files: {raw: "{pipelinedir}/in-{ccd}.txt"}}}
  - {name: measure, type: replay-test-measure}
  - {name: after, type: replay-test-after}
`

// batchRun runs the policy over visits as a run would, in its own
// directories, and returns the run directory with its captures.
func batchRun(t *testing.T, visits ...string) (runDir, pipelineDir string, sum *harness.Summary) {
	t.Helper()
	pipelineDir, runDir = t.TempDir(), t.TempDir()
	path := filepath.Join(pipelineDir, "pipeline.yaml")
	os.WriteFile(path, []byte(policy), 0o644)
	os.WriteFile(filepath.Join(pipelineDir, "in-1.txt"), []byte("good\n"), 0o644)
	os.WriteFile(filepath.Join(pipelineDir, "in-2.txt"), []byte("bad\n"), 0o644)
	p, err := harness.Load(path, harness.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var vs []harness.Visit
	for _, v := range visits {
		vs = append(vs, harness.Visit{ID: v, Props: map[string]any{"filter": "r"}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sum, err = harness.Run(ctx, harness.RunOptions{Ranks: harness.CommLocal, Policy: p, Visits: vs, RunID: "r1", RunDir: runDir})
	if !errors.Is(err, harness.ErrVisitsFailed) {
		t.Fatalf("run: %v, want visits failed", err)
	}
	return runDir, pipelineDir, sum
}

func TestReplayFailsAgainOnTheSameInputs(t *testing.T) {
	runDir, pipelineDir, sum := batchRun(t, "1")
	f := sum.SliceFailures[0]
	if f.Stage != "measure" {
		t.Fatalf("failures %+v, want measure's", sum.SliceFailures)
	}
	if f.DataID != "ccd=2" || f.Capture == "" {
		t.Fatalf("failures %+v, want ccd=2's with a capture", sum.SliceFailures)
	}
	file := filepath.Join(runDir, f.Capture)
	out, err := replay.Run(context.Background(), replay.Options{Capture: file, RunDir: t.TempDir()})
	if harness.ExitCode(err) != harness.ExitVisitsFailed || out == nil || !out.Failed || out.Error != f.Err {
		t.Fatalf("replay: %+v, %v (exit %d); want the failure %q again, exit 3", out, err, harness.ExitCode(err), f.Err)
	}

	// On another machine: the input file is gone, the capture of the
	// stage that reads it has it.
	os.RemoveAll(pipelineDir)
	load := filepath.Join(runDir, "captures", "visit-1", "load.slice2-ccd=2.entry.json")
	out, err = replay.Run(context.Background(), replay.Options{Capture: load, RunDir: t.TempDir(), Rest: true})
	if out == nil || out.Error != f.Err || len(out.Files) != 1 {
		t.Fatalf("replay --rest without the input file: %+v, %v; want the same failure, on the restored file", out, err)
	}
}

func TestReplayEntryCapturePutsWhatTheStagePuts(t *testing.T) {
	runDir, _, _ := batchRun(t, "1")
	file := filepath.Join(runDir, "captures", "visit-1", "load.slice1-ccd=1.entry.json")
	out, err := replay.Run(context.Background(), replay.Options{Capture: file, RunDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if out.Failed || out.Put["raw"] != "good\n" || len(out.Put) != 1 || len(out.Files) != 0 {
		t.Errorf("replay put %v (failed %v %s; restored %v); want raw only (n, the visit and data ID were there before), the file read where it is", out.Put, out.Failed, out.Error, out.Files)
	}
	out, err = replay.Run(context.Background(), replay.Options{Capture: file, RunDir: t.TempDir(), Rest: true})
	if err != nil || out.Put["after"] != true || out.Put["size"] != 105 || strings.Join(out.Stages, ",") != "load,measure,after" {
		t.Errorf("replay --rest: %+v, %v; want the later stages' items too", out, err)
	}
}

func TestReplayPipelineCapture(t *testing.T) {
	runDir, _, _ := batchRun(t, "pre")
	file := filepath.Join(runDir, "captures", "visit-pre", "measure.pipeline.failed.json")
	out, err := replay.Run(context.Background(), replay.Options{Capture: file, RunDir: t.TempDir()})
	if !errors.Is(err, harness.ErrVisitsFailed) || out == nil || !strings.Contains(out.Error, "no calibration for visit pre") || out.Part != "Preprocess" {
		t.Fatalf("replay: %+v, %v; want the Preprocess failure again", out, err)
	}
}

func TestReplayPostprocessCapture(t *testing.T) {
	runDir, _, _ := batchRun(t, "post")
	file := filepath.Join(runDir, "captures", "visit-post", "measure.pipeline.failed.json")
	out, err := replay.Run(context.Background(), replay.Options{Capture: file, RunDir: t.TempDir()})
	if !errors.Is(err, harness.ErrVisitsFailed) || out == nil || out.Part != "Postprocess" ||
		!strings.Contains(out.Error, `then stage "measure": postprocess: no summary for visit post`) {
		t.Fatalf("replay: %+v, %v; want the Postprocess failure again", out, err)
	}
}

func TestReplayRefusesWhatIsNoCapture(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.json")
	os.WriteFile(p, []byte(`{"hello": 1}`), 0o644)
	_, err := replay.Run(context.Background(), replay.Options{Capture: p})
	if harness.ExitCode(err) != harness.ExitBadInput || !strings.Contains(err.Error(), p) {
		t.Fatalf("replay of a non-capture: %v, want bad input naming the file", err)
	}
	// A stage type this binary does not have.
	os.WriteFile(p, []byte(`{"format": 1, "stage": "m", "stageType": "mystages.measure", "policy": "pipeline: x"}`), 0o644)
	_, err = replay.Run(context.Background(), replay.Options{Capture: p, RunDir: t.TempDir()})
	if harness.ExitCode(err) != harness.ExitBadInput || !strings.Contains(err.Error(), `"mystages.measure"`) || !strings.Contains(err.Error(), "the binary the run used") {
		t.Fatalf("replay of an unknown stage type: %v, want bad input naming it", err)
	}
}

// An item of a Go type the replaying binary does not know is put as its
// JSON, and said so.
func TestReplayItemOfAnUnknownType(t *testing.T) {
	runDir, _, _ := batchRun(t, "1")
	file := filepath.Join(runDir, "captures", "visit-1", "load.slice1-ccd=1.entry.json")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	json.Unmarshal(data, &c)
	items := c["items"].([]any)
	items = append(items, map[string]any{"key": "custom", "type": "mystages.Thing", "gob": "AAEC", "json": map[string]any{"a": 1}})
	c["items"] = items
	data, _ = json.Marshal(c)
	os.WriteFile(file, data, 0o644)
	out, err := replay.Run(context.Background(), replay.Options{Capture: file, RunDir: t.TempDir()})
	if err != nil || len(out.Notes) != 1 || !strings.Contains(out.Notes[0], "item custom is put as its JSON, not as a mystages.Thing") {
		t.Fatalf("replay: %+v, %v; want the item put as JSON and a note", out, err)
	}
}
