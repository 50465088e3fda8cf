package harness

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dpsbatch/dpsbatch/capture"
	"github.com/dpsbatch/dpsbatch/events"
)

// freezer freeze-dries stage calls on one rank (package capture): the
// input of every call that fails, and of every call of the stages named
// for it (the policy's freeze_dry, RunOptions.FreezeDry) as it starts.
// The loop calls it at those sites only: snapshot before a call, entry
// and failed around it. It never fails a visit: a capture that cannot be
// written is logged, and the failure is recorded without one.
type freezer struct {
	w      *capture.Writer
	entry  map[string]bool
	policy *Policy
	log    *slog.Logger

	once sync.Once
	text string // the policy file's text, read at the first capture

	// concurrent: calls of several visits run at once on the rank
	// (in_flight above 1), so each call's input is a copy of its own
	// (snapshot) instead of the one watched clipboard below.
	concurrent bool

	// undo keeps what the watched call changes on watched, the clipboard
	// of the call in progress (snapshot).
	undo    undoLog
	watched *Clipboard
}

// newFreezer returns the rank's freezer, writing into the run's captures
// folder within the policy's limits.
func newFreezer(cfg config) *freezer {
	entry := map[string]bool{}
	for _, s := range append(slices.Clone(cfg.Policy.FreezeDry), cfg.FreezeDry...) {
		entry[s] = true
	}
	log := cfg.Logger.With(slog.String("run", cfg.RunID))
	return &freezer{w: capture.NewWriter(cfg.RunDir, cfg.Policy.FreezeLimits, log), entry: entry, policy: cfg.Policy, log: log,
		concurrent: cfg.Policy.InFlight > 1}
}

// checkFreezeDry checks that every stage named for freeze-drying is one
// of the policy's.
func (p *Policy) checkFreezeDry(names []string, from string) error {
	var have []string
	for _, s := range p.Stages {
		have = append(have, s.Name)
	}
	for _, n := range names {
		if !slices.Contains(have, n) {
			return fmt.Errorf("%w: %s: the pipeline has no stage %q (have: %s)", ErrInvalid, from, n, strings.Join(have, ", "))
		}
	}
	return nil
}

// snapshot watches cb for the call about to start and returns it: the
// items the call changes are kept (their values are not copied), so a
// failing call's input is cb with them put back (failed), at the cost of
// a note per changed key rather than a copy per call.
func (f *freezer) snapshot(cb *Clipboard) *Clipboard {
	if f.concurrent {
		return cb.Clone() // no watch shared by the calls of several visits
	}
	if f.watched != nil {
		f.watched.undo = nil
	}
	f.undo.kept = f.undo.kept[:0]
	cb.undo, f.watched = &f.undo, cb
	return cb
}

// input is the watched clipboard cb as its call got it.
func (f *freezer) input(cb *Clipboard) *Clipboard {
	in := cb.Clone()
	if cb != f.watched {
		return in
	}
	for _, k := range f.undo.kept {
		if k.had {
			in.items[k.key] = k.it
		} else {
			delete(in.items, k.key)
		}
	}
	return in
}

// entry writes the capture of a call of a stage named for freeze-drying,
// as it starts; for other stages it does nothing.
func (f *freezer) entryCall(cx *Context, b *built, cb *Clipboard, part string) {
	if f.entry[b.spec.Name] {
		f.write(cx, b, cb, part, capture.WhyEntry, nil)
	}
}

// failed writes the capture of a call that failed with err, on cb as
// the call got it (watched by snapshot), and returns its path relative to
// the run directory ("" when none was written).
func (f *freezer) failed(cx *Context, b *built, cb *Clipboard, part string, err error) string {
	return f.write(cx, b, f.input(cb), part, capture.WhyFailed, err)
}

func (f *freezer) write(cx *Context, b *built, cb *Clipboard, part, why string, err error) (path string) {
	defer func() {
		// A capture is a diagnosis: it never takes the rank down.
		if p := recover(); p != nil {
			f.log.Error("freeze-dry: could not describe the stage's call", "stage", b.spec.Name, "visit", cx.Visit(), "panic", fmt.Sprint(p))
			path = ""
		}
	}()
	c := f.describe(cx, b, cb, part, why)
	if err != nil {
		c.Err = err.Error()
	}
	path, werr := f.w.Write(c)
	switch {
	case werr == capture.ErrLimit:
		return ""
	case werr != nil:
		f.log.Error("freeze-dry: could not write the stage's capture", "stage", b.spec.Name, "visit", cx.Visit(), "err", werr)
		return ""
	}
	level := slog.LevelInfo
	if why == capture.WhyEntry { // one a call: the failures' stand out
		level = slog.LevelDebug
	}
	cx.Logger().Log(cx.Context(), level, "freeze-dry: the stage's input is captured", "why", why, "capture", path)
	return path
}

// describe is the capture of a call of stage b on cb.
func (f *freezer) describe(cx *Context, b *built, cb *Clipboard, part, why string) *capture.Capture {
	f.once.Do(func() {
		data, err := os.ReadFile(f.policy.File)
		f.text = string(data)
		if err != nil {
			f.text = "# the policy could not be read: " + err.Error()
		}
	})
	c := &capture.Capture{Why: why, At: time.Now().UTC(), Run: cx.RunID(), RunDir: cx.RunDir(), Pipeline: cx.run.pipeline,
		PipelineDir: cx.run.static["pipelinedir"], Visit: cx.Visit(), Stage: b.spec.Name, StageType: b.spec.Type,
		Side: capture.SideSlice, Part: part, Slice: cx.Slice(), Policy: f.text, PolicyFile: f.policy.File}
	if cx.DataID() == nil {
		c.Side = capture.SidePipeline
	} else {
		c.DataID = map[string]any{}
		for k, v := range cx.DataID() {
			c.DataID[k] = v
		}
	}
	c.Event = f.event(cx, cb)
	c.Items, c.Unserialisable = capture.EncodeItems(clipboardValues(cb))
	var named []capture.Named
	c.Settings, c.Expanded, named = expandSettings(cx, b, cb)
	c.Files = capture.InputFiles(named, workDirs(c.Expanded, cx), f.w.CopyBelow())
	if ps, ok := b.stage.(programStdin); ok && cx.DataID() != nil {
		if req, err := ps.request(cx, cb); err == nil {
			c.Stdin = string(req)
		}
	}
	return c
}

// programStdin is a stage whose program reads a request per call on its
// stdin (the worker stage): the capture keeps the line.
type programStdin interface {
	request(cx *Context, cb *Clipboard) ([]byte, error)
}

// event is the visit's trigger event as the clipboard holds it: the
// visit and the trigger's declared properties.
func (f *freezer) event(cx *Context, cb *Clipboard) map[string]any {
	ev := map[string]any{events.PropVisit: cx.Visit()}
	for _, k := range f.policy.Trigger.Properties {
		if v, ok := cb.Get(k); ok {
			ev[k] = v
		}
	}
	return ev
}

func clipboardValues(cb *Clipboard) map[string]capture.Value {
	out := make(map[string]capture.Value, len(cb.items))
	for k, it := range cb.items {
		out[k] = capture.Value{V: it.v, Shared: it.shared}
	}
	return out
}

// expandSettings returns stage b's settings (defaults filled in), its
// string settings expanded for this call (a value that does not expand
// holds why), and the expanded values that may name input files.
func expandSettings(cx *Context, b *built, cb *Clipboard) (raw, expanded map[string]any, named []capture.Named) {
	raw, expanded = map[string]any{}, map[string]any{}
	t, err := LookupStage(b.spec.Type)
	if err != nil {
		return raw, expanded, nil
	}
	expand := func(key, s string) string {
		pt, err := parsePattern(s)
		if err != nil {
			return s
		}
		v, err := cx.Expand(pt, cb)
		if err != nil {
			return fmt.Sprintf("(does not expand: %v)", err)
		}
		named = append(named, capture.Named{Setting: key, Text: v})
		return v
	}
	for _, st := range t.Settings {
		if v := b.spec.Settings.Raw(st.Key); v != nil {
			raw[st.Key] = settingJSON(v)
		}
	}
	for _, tx := range settingTexts(t, b.spec.Settings) {
		v := expand(tx.path, tx.text)
		switch tx.kind {
		case String:
			expanded[tx.key] = v
		case Strings:
			list, _ := expanded[tx.key].([]string)
			expanded[tx.key] = append(list, v)
		case StringMap:
			m, _ := expanded[tx.key].(map[string]string)
			if m == nil {
				m = map[string]string{}
				expanded[tx.key] = m
			}
			m[tx.sub] = v
		}
	}
	return raw, expanded, named
}

// settingJSON is a setting's value as JSON shows it best.
func settingJSON(v any) any {
	switch v := v.(type) {
	case time.Duration:
		return v.String()
	case []Pair:
		m := map[string]string{}
		for _, p := range v {
			m[p.Key] = p.Value
		}
		return m
	}
	return v
}

// workDirs are where a relative file name in the settings is looked for:
// the expanded dir setting (exec, worker), the run directory, the
// pipeline's directory.
func workDirs(expanded map[string]any, cx *Context) []string {
	var dirs []string
	if d, ok := expanded["dir"].(string); ok && d != "" {
		dirs = append(dirs, cx.run.locs.abs(d))
	}
	return append(dirs, cx.RunDir(), cx.run.static["pipelinedir"])
}
