// Package replay runs a freeze-dried stage call again (package capture):
// `dpsbatch replay FILE`. It runs the captured stage, and with Rest the
// stages after it, over the captured visit in this one process, through
// package stagerun (the stage loop with every rank a goroutine and an
// in-memory broker), on the captured clipboard, trigger properties, data
// ID, settings and policy; it says what the stages put on the clipboard,
// or the error.
//
// Input files the capture holds whose originals are missing here, or
// differ, are restored into the replay's run directory, and the stage's
// settings are pointed at them. A stage's event section is dropped: the
// event's properties are on the captured clipboard. A capture taken on
// the Pipeline (Preprocess, Postprocess) runs the stage with the
// policy's mapper on one slice, its data IDs' clipboards holding only
// what the visit and data ID give them.
//
// It never uses Slurm, MPI, a broker or a state file, and never writes
// into the captured run's directory unless asked to run there.
package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/dpsbatch/dpsbatch/capture"
	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/harness/stagerun"
	"github.com/dpsbatch/dpsbatch/internal/version"
)

// Options say what to replay and where.
type Options struct {
	Capture string // the capture file
	// Rest also runs the stages after the captured one.
	Rest bool
	// RunDir is the replay's run directory, which must exist; "" makes a
	// new one in the system's temporary folder.
	RunDir  string
	Logger  *slog.Logger  // the run's log; nil discards it
	Timeout time.Duration // 0: none
}

// Outcome is what a replay did.
type Outcome struct {
	Capture string                   `json:"capture"`
	Stage   string                   `json:"stage"`
	Stages  []string                 `json:"stages"` // the stages run, in order
	Visit   string                   `json:"visit"`
	Side    string                   `json:"side"` // capture.SideSlice or SidePipeline
	Part    string                   `json:"part"` // Process, Preprocess or Postprocess
	DataID  map[string]any           `json:"dataId,omitempty"`
	RunDir  string                   `json:"runDir"`
	Failed  bool                     `json:"failed"`
	Error   string                   `json:"error,omitempty"`
	Put     map[string]any           `json:"put"` // what the stages put or changed on the clipboard
	Files   []string                 `json:"restored,omitempty"`
	Notes   []string                 `json:"notes,omitempty"`
	Skipped []capture.Unserialisable `json:"unserialisable,omitempty"` // items the capture could not hold
}

// Run replays o.Capture. The error wraps harness.ErrInvalid for a file
// that is no capture or whose policy does not load, and
// harness.ErrVisitsFailed when the stage failed again (the Outcome says
// how).
func Run(ctx context.Context, o Options) (*Outcome, error) {
	c, err := capture.Read(o.Capture)
	if err != nil {
		return nil, fmt.Errorf("%w: replay: %v", harness.ErrInvalid, err)
	}
	if o.RunDir == "" {
		if o.RunDir, err = os.MkdirTemp("", "dpsbatch-replay-"); err != nil {
			return nil, fmt.Errorf("replay: %w", err)
		}
	}
	out := &Outcome{Capture: o.Capture, Stage: c.Stage, Visit: c.Visit, Side: c.Side, Part: c.Part, DataID: c.DataID,
		RunDir: o.RunDir, Put: map[string]any{}, Skipped: c.Unserialisable}
	cs, err := buildCase(c, o, out)
	if err != nil {
		return nil, fmt.Errorf("%w: replay: %s: %v", harness.ErrInvalid, o.Capture, err)
	}
	res, err := stagerun.Run(ctx, cs.Case, o.Logger)
	if err != nil {
		return nil, fmt.Errorf("replay: %s: %w", o.Capture, err)
	}
	return out, out.read(res, cs)
}

// read fills in the outcome from the run's result. The error is a
// slice capture's first slice failure, else the visit's (a Pipeline
// capture's names its stage's error after any its bare data IDs had).
func (out *Outcome) read(res *stagerun.Result, cs *replayCase) error {
	reason := ""
	if res.Summary != nil {
		reason = res.Summary.Reasons[cs.Visit]
	}
	switch {
	case out.Side == capture.SideSlice && len(res.Failures) > 0:
		out.Failed, out.Error = true, res.Failures[0].Err
	case reason != "":
		out.Failed, out.Error = true, reason
	case len(res.Failures) > 0: // the failure rule let the visit pass
		out.Failed, out.Error = true, res.Failures[0].Err
	case res.Err != nil:
		return fmt.Errorf("replay: %w", res.Err)
	}
	if out.Failed {
		return fmt.Errorf("%w: replay of stage %s: %s", harness.ErrVisitsFailed, out.Stage, out.Error)
	}
	after := res.Pipeline
	if out.Side == capture.SideSlice {
		for _, cb := range res.Clipboards {
			after = cb
		}
	}
	if after == nil {
		return nil
	}
	for _, k := range after.Keys() {
		v, _ := after.Get(k)
		if was, ok := cs.before[k]; ok && (harness.SameValue(v, was) || reflect.DeepEqual(v, was)) {
			continue
		}
		out.Put[k] = shown(v)
	}
	return nil
}

// shown is a value as JSON shows it, or its Go text when JSON cannot.
func shown(v any) any {
	if _, err := json.Marshal(v); err != nil {
		return fmt.Sprintf("%v (%T)", v, v)
	}
	return v
}

// replayCase is the stagerun case of a capture, and the clipboard the
// captured call got.
type replayCase struct {
	stagerun.Case
	before map[string]any
}

// buildCase makes the case: the captured policy's stages from the
// captured one (its settings pointed at restored files), its locations,
// the visit, and the captured clipboard on the side it was taken.
func buildCase(c *capture.Capture, o Options, out *Outcome) (*replayCase, error) {
	if _, err := harness.LookupStage(c.StageType); err != nil {
		return nil, fmt.Errorf("stage %s: %v: replay with the binary the run used, which registers it", c.Stage, err)
	}
	if v := version.Get().String(); v != c.Version {
		out.Notes = append(out.Notes, fmt.Sprintf("captured by %s, replayed by %s", c.Version, v))
	}
	var policy map[string]any
	if err := yaml.Unmarshal([]byte(c.Policy), &policy); err != nil {
		return nil, fmt.Errorf("the captured policy does not parse: %v", err)
	}
	stages, err := stagesFrom(policy, c.Stage, o.Rest)
	if err != nil {
		return nil, err
	}
	var notes []string
	out.Files, notes = restoreFiles(c, stages[0], o.RunDir)
	out.Notes = append(out.Notes, notes...)
	cs := &replayCase{Case: stagerun.Case{Name: c.Pipeline, RunID: c.Run, Slices: 1, Visit: c.Visit, Event: map[string]any{}, RunDir: o.RunDir, Timeout: o.Timeout,
		Locations: locations(policy), NoValidate: true}, before: map[string]any{}}
	if cs.Stages, err = stagesYAML(stages); err != nil {
		return nil, err
	}
	for _, s := range stages {
		out.Stages = append(out.Stages, fmt.Sprint(s["name"]))
	}
	for k, v := range c.Event {
		if k != events.PropVisit {
			cs.Event[k] = v
		}
	}
	if fi, err := os.Stat(c.PipelineDir); err == nil && fi.IsDir() {
		cs.PipelineDir = c.PipelineDir
	}
	if err := cs.putItems(c, policy, out); err != nil {
		return nil, err
	}
	return cs, nil
}

// putItems puts the captured items on the side the call was taken, with
// that side's data IDs. An item whose Go type this binary cannot decode
// (not registered with harness.RegisterType) is put as its JSON, noted.
func (cs *replayCase) putItems(c *capture.Capture, policy map[string]any, out *Outcome) error {
	for _, it := range c.Items {
		v, err := it.Value()
		if err != nil {
			if jerr := json.Unmarshal(it.JSON, &v); jerr != nil || v == nil {
				return err
			}
			out.Notes = append(out.Notes, fmt.Sprintf("item %s is put as its JSON, not as a %s: %v", it.Key, it.Type, err))
		}
		cs.before[it.Key] = v
		if it.Shared {
			cs.Shared = append(cs.Shared, it.Key)
		}
	}
	if c.Side == capture.SidePipeline {
		m, ok := policy["mapper"].(map[string]any)
		if !ok {
			return errors.New("the captured policy has no mapper")
		}
		cs.Mapper, cs.Pipeline = m, cs.before
		return nil
	}
	cs.DataIDs, cs.Clipboard = []map[string]any{c.DataID}, cs.before
	return nil
}

// stagesFrom returns the policy's stage named name, and with rest the
// stages after it, each without its event section.
func stagesFrom(policy map[string]any, name string, rest bool) ([]map[string]any, error) {
	list, _ := policy["stages"].([]any)
	var names []string
	for i, s := range list {
		m, _ := s.(map[string]any)
		names = append(names, fmt.Sprint(m["name"]))
		if m == nil || m["name"] != name {
			continue
		}
		end := i + 1
		if rest {
			end = len(list)
		}
		var out []map[string]any
		for _, s := range list[i:end] {
			m, _ := s.(map[string]any)
			if m == nil {
				return nil, errors.New("the captured policy's stages are not mappings")
			}
			delete(m, "event")
			out = append(out, m)
		}
		return out, nil
	}
	return nil, fmt.Errorf("the captured policy has no stage %q (have: %v)", name, names)
}

// stagesYAML writes the stages as a policy's list, one JSON mapping a
// line (YAML reads JSON).
func stagesYAML(stages []map[string]any) (string, error) {
	var b []byte
	for _, s := range stages {
		line, err := json.Marshal(s)
		if err != nil {
			return "", fmt.Errorf("stage %v: %v", s["name"], err)
		}
		b = append(append(append(b, "- "...), line...), '\n')
	}
	return string(b), nil
}

// locations are the policy's locations.
func locations(policy map[string]any) map[string]string {
	m, _ := policy["locations"].(map[string]any)
	out := map[string]string{}
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}
