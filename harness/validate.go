package harness

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/mapper"
)

// built is a stage instance with its optional parts resolved once, so the
// loop does no type assertions per call.
type built struct {
	spec     *stageSpec
	stage    Stage
	proc     Processor
	pre      Preprocessor
	post     Postprocessor
	needs    []string
	produces []string
	topics   []string
	// shares are the keys a parallel stage of a built-in type declares
	// shared (sharer); sharesKnown says it declares them. Any other
	// parallel stage may share any key it produces.
	shares      []string
	sharesKnown bool
	// locations are the locations a stage that runs on the Pipeline
	// names in its templates (locationUser).
	locations []string
	// neighbours are the ranks this Slice exchanges with after the stage
	// (see exchange.go), set by Run once the data is assigned.
	neighbours []int
	// concurrent: the type declared the stage safe to call for several
	// visits at once (Type.Concurrent); if not, mu makes the calls of
	// visits in flight take turns (rank.exclusive).
	concurrent bool
	mu         sync.Mutex
}

// buildStages makes one instance of every stage. Each rank calls it once.
func (p *Policy) buildStages() ([]*built, conf.Errors) {
	var errs conf.Errors
	out := make([]*built, 0, len(p.Stages))
	for i := range p.Stages {
		sp := &p.Stages[i]
		t, err := LookupStage(sp.Type)
		if err != nil {
			errs = append(errs, p.errorAt(sp.Line, sp.Path+".type", "%s", trimPkg(err)))
			continue
		}
		st, err := t.New(sp.Settings)
		if err != nil {
			errs = append(errs, p.settingError(sp.Settings.v, sp.Line, sp.Path+".settings", err.Error()))
			continue
		}
		b := &built{spec: sp, stage: st, needs: t.Needs, produces: t.Produces, concurrent: t.Concurrent}
		b.proc, _ = st.(Processor)
		b.pre, _ = st.(Preprocessor)
		b.post, _ = st.(Postprocessor)
		if b.proc == nil && b.pre == nil && b.post == nil {
			errs = append(errs, p.errorAt(sp.Line, sp.Path+".type", "stage type %q implements none of Process, Preprocess and Postprocess", sp.Type))
			continue
		}
		if x := sp.Exchange; x != nil && b.proc == nil {
			errs = append(errs, p.errorAt(x.Line, sp.Path+".exchange", "stage type %q has no Process: only a parallel stage can exchange items between slices", sp.Type))
			continue
		}
		if kd, ok := st.(KeyDeclarer); ok {
			b.needs, b.produces = kd.Keys()
		}
		if td, ok := st.(TopicDeclarer); ok {
			b.topics = td.Topics()
		}
		if sh, ok := st.(sharer); ok && b.proc != nil {
			b.shares, b.sharesKnown = sh.sharedKeys(), true
		}
		if lu, ok := st.(locationUser); ok {
			b.locations = lu.locationsUsed()
		}
		out = append(out, b)
	}
	return out, errs
}

// locationUser is implemented by the built-in stages that run on the
// Pipeline only and expand templates there (event): the locations their
// templates name, whose own templates must need only what the Pipeline
// has.
type locationUser interface{ locationsUsed() []string }

// sharer is implemented by the built-in parallel stages that say which
// keys they share with the Pipeline (exec and worker: their shared
// setting; input: none).
type sharer interface{ sharedKeys() []string }

// NewMapper builds the policy's data mapper.
func (p *Policy) NewMapper() (mapper.DataMapper, error) {
	f, err := mapper.Lookup(p.Mapper.Type)
	if err != nil {
		return nil, p.errorAt(p.Mapper.Line, "mapper.type", "%s", trimPkg(err))
	}
	m, err := f.Build(p.Mapper.Settings)
	if err != nil {
		// A mapper's errors start with its name ("range: step must be
		// at least 1"); the position says which mapper it is.
		msg := strings.TrimPrefix(err.Error(), p.Mapper.Type+": ")
		return nil, conf.Errors{p.settingError(p.Mapper.Settings, p.Mapper.Line, "mapper.settings", msg)}
	}
	return m, nil
}

// CheckDataIDValues checks, for new input (validate, submit, local), that
// every data ID value the mapper's settings define can go into a path
// and a command line (see mapper.ValueChecker), naming its line of the
// policy. It is not part of validating, so that a run created before the
// check still resumes.
func (p *Policy) CheckDataIDValues() error {
	m, err := p.NewMapper()
	if err != nil {
		return err
	}
	vc, ok := m.(mapper.ValueChecker)
	if !ok {
		return nil
	}
	if err := vc.CheckValues(); err != nil {
		msg := strings.TrimPrefix(err.Error(), p.Mapper.Type+": ")
		return conf.Errors{p.settingError(p.Mapper.Settings, p.Mapper.Line, "mapper.settings", msg)}
	}
	return nil
}

// settingError places an error from a stage's or mapper's constructor at
// the line of the setting it is about, when its message starts with a
// settings key (see conf.Values.Locate), and at line and path (the stage
// or the mapper) otherwise.
func (p *Policy) settingError(v conf.Values, line int, path, msg string) *conf.Error {
	if key, at, rest, ok := v.Locate(msg); ok {
		return p.errorAt(at, path+"."+key, "%s", rest)
	}
	return p.errorAt(line, path, "%s", msg)
}

// SliceCount is the number of slices a run of this policy has: the
// policy's number, or one per data ID.
func (p *Policy) SliceCount() (int, error) {
	if !p.PerDataID {
		return p.Slices, nil
	}
	m, err := p.NewMapper()
	if err != nil {
		return 0, err
	}
	e, ok := m.(mapper.Enumerator)
	if !ok {
		return 0, conf.Errors{p.errorAt(p.Mapper.Line, "slices", "per-data-id needs a mapper with a fixed list of data IDs; %q has none", p.Mapper.Type)}
	}
	n := mapper.Count(e)
	if n == 0 {
		return 0, conf.Errors{p.errorAt(p.Mapper.Line, "slices", "per-data-id: the mapper has no data IDs")}
	}
	return n, nil
}

// validate checks what spans the policy's sections: every stage builds
// from its settings; every clipboard key a stage needs is produced earlier
// (by a stage, the trigger event, a waited-for event or the data ID), and
// on the Pipeline's clipboard for a stage that runs there only
// (pipelineKeys);
// every topic waited on is produced by a stage, is the trigger topic or is
// declared external; per-data-id has a mapper that can count its data IDs;
// every key a stage exchanges is produced by it or earlier, and a stage
// exchanging over the mapper topology has a mapper that names neighbours.
// It reports every problem (a conf.Errors), or nil.
func (p *Policy) validate() error {
	stages, errs := p.buildStages()
	m, err := p.NewMapper()
	var dataKeys []string
	knowKeys := false
	if err != nil {
		if ce, ok := err.(conf.Errors); ok {
			errs = append(errs, ce...)
		} else {
			errs = append(errs, p.errorAt(p.Mapper.Line, "mapper", "%v", err))
		}
	} else if kl, ok := m.(mapper.KeyLister); ok {
		dataKeys, knowKeys = kl.Keys(), true
	}
	if err == nil && p.PerDataID {
		if _, err := p.SliceCount(); err != nil {
			errs = append(errs, err.(conf.Errors)...)
		}
	}

	// Clipboard keys, in stage order.
	have := map[string]string{KeyVisit: "the visit", KeyDataID: "the data ID"}
	for _, k := range dataKeys {
		have[k] = "the data ID"
	}
	for _, k := range p.Trigger.Properties {
		have[k] = "the trigger event"
	}
	checkNames := func(line int, path, what string, names []string) {
		for _, k := range names {
			if _, ok := have[k]; ok || !knowKeys {
				continue
			}
			errs = append(errs, p.errorAt(line, path, "%s clipboard key %q, which no earlier stage, trigger event property, waited-for event or data ID key provides%s",
				what, k, conf.Suggest(k, keysOf(have))))
		}
	}
	for _, name := range locationNames {
		if t, ok := p.Locations[name]; ok {
			checkNames(p.locLines[name], "locations."+name, "uses", patternNeeds(t))
		}
	}
	produced := map[string]bool{p.Trigger.Topic: true}
	for _, t := range p.External {
		produced[t] = true
	}
	for _, b := range stages {
		for _, t := range b.topics {
			produced[t] = true
		}
	}
	pipe := newPipelineKeys(p.Trigger.Properties)
	for _, b := range stages {
		if w := b.spec.Event; w != nil {
			if !produced[w.Topic] {
				errs = append(errs, p.errorAt(w.Line, b.spec.Path+".event.topic",
					"waits for topic %q, which no stage publishes and events.external does not declare%s", w.Topic, conf.Suggest(w.Topic, keysOfBool(produced))))
			}
			for _, k := range w.Properties {
				have[k] = "event " + w.Topic
				pipe[k] = true
			}
		}
		if b.proc == nil {
			errs = append(errs, p.checkPipelineNeeds(b, pipe, have, dataKeys)...)
		} else {
			checkNames(b.spec.Line, b.spec.Path, fmt.Sprintf("stage %q needs", b.spec.Name), b.needs)
		}
		for _, k := range b.produces {
			have[k] = "stage " + b.spec.Name
		}
		pipe.addStage(b)
		if x := b.spec.Exchange; x != nil {
			for i, k := range x.Keys {
				if _, ok := have[k]; ok || !knowKeys {
					continue
				}
				errs = append(errs, p.errorAt(x.KeyLines[i], conf.Index(b.spec.Path+".exchange.keys", i),
					"stage %q exchanges clipboard key %q, which neither it nor an earlier stage, trigger event property, waited-for event or data ID key provides%s",
					b.spec.Name, k, conf.Suggest(k, keysOf(have))))
			}
			for _, k := range x.Keys {
				have[NeighboursKey(k)] = "the exchange of stage " + b.spec.Name
			}
			if x.Topology == topologyMapper && m != nil {
				if _, ok := m.(mapper.NeighbourMapper); !ok {
					errs = append(errs, p.errorAt(x.TopologyLine, b.spec.Path+".exchange.topology",
						"topology mapper needs a mapper that names each slice's neighbours; mapper %q does not (it does not implement mapper.NeighbourMapper)", p.Mapper.Type))
				}
			}
		}
	}
	errs = append(errs, p.checkFreezeDryNames()...)
	errs = append(errs, p.checkPipelineRefs()...)
	errs.Sort()
	return errs.Err()
}

// pipelineKeys are the keys the Pipeline's clipboard can hold at a stage:
// visitId, dataIds (KeyDataIDs), the trigger event's properties, those of
// the events earlier stages waited for, what earlier stages' Preprocess
// and Postprocess put, and what earlier parallel stages shared (keyed by
// data ID there).
type pipelineKeys map[string]bool

func newPipelineKeys(trigger []string) pipelineKeys {
	have := pipelineKeys{KeyVisit: true, KeyDataIDs: true}
	for _, k := range trigger {
		have[k] = true
	}
	return have
}

// addStage notes what stage b leaves on the Pipeline's clipboard: the
// keys it produces if it runs there, and the keys its slices share:
// those it declares shared (sharer), or else any key it produces.
func (h pipelineKeys) addStage(b *built) {
	if b.pre != nil || b.post != nil || b.proc != nil && !b.sharesKnown {
		for _, k := range b.produces {
			h[k] = true
		}
	}
	for _, k := range b.shares {
		h[k] = true
	}
}

// checkPipelineNeeds checks that stage b, which runs on the Pipeline only
// (such as the event stage), needs only keys the Pipeline's clipboard
// has there; slice are the keys the slices' clipboards have, to say why
// one is missing.
func (p *Policy) checkPipelineNeeds(b *built, pipe pipelineKeys, slice map[string]string, dataKeys []string) conf.Errors {
	var errs conf.Errors
	for _, k := range b.needs {
		if pipe[k] {
			continue
		}
		why := p.whyNotOnPipeline(k, slice, dataKeys)
		have := keysOfBool(pipe)
		errs = append(errs, p.errorAt(b.spec.Line, b.spec.Path, "stage %q runs on the Pipeline and needs clipboard key %q, which the Pipeline's clipboard never has (it has: %s)%s%s",
			b.spec.Name, k, strings.Join(have, ", "), why, conf.Suggest(k, have)))
	}
	for _, l := range b.locations {
		t, ok := p.Locations[l]
		if !ok {
			continue
		}
		for _, k := range patternNeeds(t) {
			if pipe[k] {
				continue
			}
			errs = append(errs, p.errorAt(b.spec.Line, b.spec.Path, "stage %q runs on the Pipeline and uses location %q (%q), which needs clipboard key %q, which the Pipeline's clipboard never has (it has: %s)%s",
				b.spec.Name, l, t.String(), k, strings.Join(keysOfBool(pipe), ", "), p.whyNotOnPipeline(k, slice, dataKeys)))
		}
	}
	return errs
}

// whyNotOnPipeline says why key k, which a stage that runs on the
// Pipeline needs, is not on the Pipeline's clipboard, when it is on the
// slices' (slice: the keys they have, by where each comes from).
func (p *Policy) whyNotOnPipeline(k string, slice map[string]string, dataKeys []string) string {
	switch from, onSlices := slice[k]; {
	case k == KeyDataID || slices.Contains(dataKeys, k):
		return "; a data ID key is on the slices' clipboards only: shared values reach the Pipeline keyed by data ID, and dataIds lists the visit's data IDs with their outcomes"
	case onSlices:
		return fmt.Sprintf("; %s puts it on the slices' clipboards, but no stage shares it (exec and worker: settings.shared)", from)
	}
	return ""
}

// checkFreezeDryNames: freeze_dry names stages of the policy.
func (p *Policy) checkFreezeDryNames() conf.Errors {
	var errs conf.Errors
	names := make([]string, len(p.Stages))
	for i, s := range p.Stages {
		names[i] = s.Name
	}
	for i, n := range p.FreezeDry {
		if n != "" && !slices.Contains(names, n) {
			errs = append(errs, p.errorAt(p.freezeLines[i], conf.Index("freeze_dry", i), "no stage is called %q%s", n, conf.Suggest(n, names)))
		}
	}
	return errs
}

func keysOf(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func keysOfBool(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
