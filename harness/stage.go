package harness

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/mapper"
)

// Stage is a configured instance of a registered stage type. Each rank
// builds its own instances from the policy. A stage does its work through
// the optional interfaces below; it must implement at least one of
// Processor, Preprocessor and Postprocessor.
type Stage any

// Processor is the parallel part of a stage: Process runs on every Slice,
// once per clipboard in the stage's input queue (one per data ID, unless an
// earlier stage emitted more), on the Slice's loop goroutine. Without it the
// stage is serial only and no communication happens for it.
//
// An error or a panic fails that clipboard (its data ID, for this visit):
// it is dropped from the queue, recorded with the stage, slice, data ID and
// message, and the other clipboards and slices carry on.
type Processor interface {
	Process(ctx *Context, cb *Clipboard) error
}

// Preprocessor is the serial part run on the Pipeline before the stage's
// Process, with the Pipeline's clipboard. Shared items it puts reach every
// slice clipboard before Process. Without it nothing runs there. An error
// fails the visit.
type Preprocessor interface {
	Preprocess(ctx *Context, cb *Clipboard) error
}

// Postprocessor is the serial part run on the Pipeline after every Slice's
// Process, once the shared items and outcomes are gathered (see
// Context.Outcomes). An error fails the visit.
type Postprocessor interface {
	Postprocess(ctx *Context, cb *Clipboard) error
}

// Initializer is called once per rank before the first visit, on every
// rank. An error stops the run before any visit.
type Initializer interface {
	Initialize(ctx *Context) error
}

// Shutdowner is called once per rank after the last visit, on every rank
// whose Initialize succeeded (or that has no Initialize).
type Shutdowner interface {
	Shutdown(ctx *Context) error
}

// KeyDeclarer is implemented by stages whose clipboard keys depend on their
// settings. It replaces the stage type's static Needs and Produces for
// `dpsbatch validate`.
type KeyDeclarer interface {
	Keys() (needs, produces []string)
}

// TopicDeclarer is implemented by stages that publish events, so validate
// knows which topics the pipeline itself produces.
type TopicDeclarer interface {
	Topics() []string
}

// Outcome is what the Pipeline learns from one slice clipboard at a
// parallel stage: its failure, or the shared items it set. Clipboards that
// came through without sharing anything are not listed.
type Outcome struct {
	Slice  int    // rank of the slice
	DataID string // the clipboard's data ID, as mapper.DataID.String
	Err    string // failure message; empty when the clipboard came through
	Shared map[string]any
}

// Context is handed to every stage call. It knows the run, visit, stage,
// slice and data ID of the call, expands templates, and carries a logger
// whose records name them all. A Context is valid only during the call it
// was passed to.
type Context struct {
	ctx    context.Context
	run    *runInfo
	visit  string
	stage  string
	slice  int // 0 on the Pipeline
	dataID mapper.DataID
	log    *slog.Logger

	emitted    []*Clipboard
	emitCalled bool
	outcomes   []Outcome
	outputs    map[string]int64 // madeOutputs: path to size
}

// madeOutputs notes files the call made that its stage declared it
// writes (path to size in bytes): the Slice reports them for the data
// ID, and the run records them with the visit's end.
func (c *Context) madeOutputs(sizes map[string]int64) {
	if c.outputs == nil {
		c.outputs = make(map[string]int64, len(sizes))
	}
	maps.Copy(c.outputs, sizes)
}

// runInfo is what every Context of one rank shares.
type runInfo struct {
	id       string
	pipeline string
	static   map[string]string // run, pipeline, pipelinedir
	trigger  []string          // the properties every trigger event carries
	locs     *locationMap
	log      *slog.Logger
	publish  func(context.Context, events.Event) error // Pipeline only
}

// Context returns the Go context of the call: cancelled when the run is
// interrupted. Long-running stages should watch it.
func (c *Context) Context() context.Context { return c.ctx }

// RunID is the run's ID.
func (c *Context) RunID() string { return c.run.id }

// Visit is the current visit's ID ("" in Initialize and Shutdown).
func (c *Context) Visit() string { return c.visit }

// Stage is the name of the stage being called.
func (c *Context) Stage() string { return c.stage }

// Slice is the rank of the Slice being called, or 0 on the Pipeline.
func (c *Context) Slice() int { return c.slice }

// DataID is the data ID of the clipboard being processed (nil on the
// Pipeline).
func (c *Context) DataID() mapper.DataID { return c.dataID }

// RunDir is the run directory.
func (c *Context) RunDir() string { return c.run.locs.RunDir() }

// Logger returns a logger whose records carry run, visit, stage, slice and
// data ID as they apply.
func (c *Context) Logger() *slog.Logger {
	if c.log == nil {
		c.log = contextLogger(c.run.log, c.visit, c.stage, c.slice, c.dataID)
	}
	return c.log
}

func contextLogger(base *slog.Logger, visit, stage string, slice int, id mapper.DataID) *slog.Logger {
	attrs := make([]any, 0, 8)
	if visit != "" {
		attrs = append(attrs, slog.String("visit", visit))
	}
	if stage != "" {
		attrs = append(attrs, slog.String("stage", stage))
	}
	if slice > 0 {
		attrs = append(attrs, slog.Int("slice", slice))
	}
	if id != nil {
		attrs = append(attrs, slog.String("dataId", id.String()))
	}
	return base.With(attrs...)
}

// Emit sends cb to the next stage's input queue. A Process that calls Emit
// at least once sends only what it emitted, in place of its input
// clipboard; one that never calls it passes its input on. Emit is for
// Process only.
func (c *Context) Emit(cb *Clipboard) {
	c.emitCalled = true
	if cb.dataID == nil {
		cb.dataID = c.dataID
	}
	c.emitted = append(c.emitted, cb)
}

// Outcomes lists, in Postprocess, the slice clipboards of this stage that
// failed or sent shared items.
func (c *Context) Outcomes() []Outcome { return c.outcomes }

// Publish sends an event on topic for this run and visit, from the
// Pipeline (Slices never talk to the broker: it fails there).
func (c *Context) Publish(topic string, props map[string]any) error {
	if c.run.publish == nil {
		return fmt.Errorf("publish %q: only the Pipeline (Preprocess, Postprocess) can publish events", topic)
	}
	own := make(map[string]any, len(props)+1)
	for k, v := range props {
		own[k] = v
	}
	if _, ok := own[events.PropVisit]; !ok && c.visit != "" {
		own[events.PropVisit] = c.visit
	}
	return c.run.publish(c.ctx, events.Event{Topic: topic, RunID: c.run.id, Pipeline: c.run.pipeline, Kind: events.KindData, Properties: own})
}

// Expand expands t with the run's names, the locations, the data ID and
// cb's values (cb may be nil): scalars as Clipboard.Text gives them, maps
// and lists of plain values as JSON (a shared key's values by data ID on
// the Pipeline: {"ccd=1":12,"ccd=3":9}); Path takes scalars only.
func (c *Context) Expand(t Pattern, cb *Clipboard) (string, error) {
	return t.Expand(c.lookup(cb, false))
}

// Path expands t into a clean absolute path (relative results resolve
// against the run directory) and checks that it stays inside the run's
// locations (see locationMap).
func (c *Context) Path(t Pattern, cb *Clipboard) (string, error) {
	p, err := t.Expand(c.lookup(cb, true))
	if err != nil {
		return "", err
	}
	p = c.run.locs.abs(p)
	if err := c.run.locs.contain(p); err != nil {
		return "", err
	}
	return p, nil
}

func (c *Context) lookup(cb *Clipboard, forPath bool) func(string) (string, error) {
	var look func(name string, locs bool) (string, error)
	look = func(name string, locs bool) (string, error) {
		// Inside a location (locs false) the value is part of a path.
		v, err := c.value(name, cb, locs, forPath || !locs, look)
		if err == nil && forPath && !isLocation(name) && name != "pipelinedir" {
			err = safeSegment(name, v)
		}
		return v, err
	}
	return func(name string) (string, error) { return look(name, true) }
}

func isLocation(name string) bool {
	for _, l := range locationNames {
		if l == name {
			return true
		}
	}
	return false
}

func (c *Context) value(name string, cb *Clipboard, locs, inPath bool, look func(string, bool) (string, error)) (string, error) {
	switch name {
	case "visit":
		if c.visit == "" {
			return "", fmt.Errorf("{visit} used outside a visit")
		}
		return c.visit, nil
	case "slice":
		return strconv.Itoa(c.slice), nil
	case "stage":
		return c.stage, nil
	}
	if v, ok := c.run.static[name]; ok {
		return v, nil
	}
	if t, ok := c.run.locs.tmpls[name]; ok && locs {
		// A location is a path wherever it is used: every value put
		// into it is one path element, and it stays under its root.
		p, err := t.Expand(func(n string) (string, error) {
			v, err := look(n, false)
			if err == nil && n != "pipelinedir" {
				err = safeSegment(n, v)
			}
			return v, err
		})
		if err == nil {
			p, err = c.run.locs.location(name, p)
		}
		if err != nil {
			return "", fmt.Errorf("location %s: %w", name, err)
		}
		return p, nil
	}
	if v, ok := c.dataID[name]; ok {
		return v, nil
	}
	if cb != nil {
		if _, ok := cb.Get(name); ok {
			return cb.templateText(name, inPath)
		}
	}
	return "", fmt.Errorf("nothing is called {%s}: not a built-in (%s), a location, a data ID key or a clipboard key", name, strings.Join(builtinNames, ", "))
}

// patternNeeds returns the clipboard keys the templates refer to: every
// name that is not a built-in or a location.
func patternNeeds(ts ...Pattern) []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range ts {
		for _, n := range t.Names() {
			if seen[n] || isLocation(n) || contains(builtinNames, n) {
				continue
			}
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
