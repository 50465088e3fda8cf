package harness

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/dpsbatch/dpsbatch/capture"
	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/mapper"
)

// visitRule says when slice failures make a visit count as failed.
type visitRule string

// The visit failure rules.
const (
	// anySlice: the visit fails if any data ID failed (the default).
	anySlice visitRule = "any-slice"
	// allSlices: the visit fails only if every data ID failed.
	allSlices visitRule = "all-slices"
	// never: slice failures are recorded but never fail the visit.
	never visitRule = "never"
)

// defaultTrigger is the trigger topic when a policy names none.
const defaultTrigger = "visits"

// defaultEventTimeout is how long a stage waits for its event by default.
const defaultEventTimeout = time.Minute

// Policy is a pipeline policy file, parsed and checked. Load fills it;
// validate checks what spans several sections.
type Policy struct {
	File     string // as given
	Dir      string // absolute directory of the file
	Checksum string // sha256 of the file's bytes, hex

	Name      string
	Slices    int  // number of slices; 0 with PerDataID
	PerDataID bool // one slice per data ID
	Mapper    mapperSpec
	Locations map[string]Pattern
	locLines  map[string]int
	Failure   visitRule
	Trigger   triggerSpec
	External  []string // topics produced outside the pipeline
	Stages    []stageSpec
	// VisitTime is how long one visit is expected to take (visit_time),
	// 0 when the policy does not say: before any visit of a batch run has
	// been timed, a job stops taking visits when less than this (and a
	// margin) is left before its time limit.
	VisitTime time.Duration
	// GPUsPerSlice is how many GPUs each slice needs (gpus_per_slice), 0
	// for none: a batch run asks for them unless submit names its own.
	GPUsPerSlice int
	// InFlight is how many visits the Pipeline runs at once (in_flight,
	// at least 1, the default): it starts a visit while fewer are in
	// their stages. protocol.go ("Visits in flight") has what changes.
	InFlight int
	// FreezeDry names the stages whose every call is captured as it
	// starts (freeze_dry; a failing call is always captured), and
	// FreezeLimits bounds the captures (freeze_dry_limits): package
	// capture.
	FreezeDry    []string
	FreezeLimits capture.Limits
	freezeLines  []int
	// GrowTime and GrowMemory (grow: {time, memory}) are the factors by
	// which a batch run with growth on asks for more time, or more memory
	// per slice, after a job that ran short of it; 0 where the policy
	// does not say (the site file's then).
	GrowTime, GrowMemory float64
}

// mapperSpec is the policy's mapper section.
type mapperSpec struct {
	Type     string
	Settings conf.Values
	Line     int
}

// triggerSpec names the trigger topic and the properties every trigger
// event carries (besides visitId), which go on every clipboard.
type triggerSpec struct {
	Topic string
	EventFilter
	Line int
}

// stageSpec is one entry of the policy's stages list.
type stageSpec struct {
	Name     string
	Type     string
	Settings Settings
	Event    *waitSpec     // nil when the stage runs without waiting
	Exchange *exchangeSpec // nil when its slices exchange nothing with each other
	Line     int
	Path     string // stages[i], for messages
}

// waitSpec is an event a stage waits for before it runs.
type waitSpec struct {
	Topic   string
	Timeout time.Duration
	// EventFilter: the properties the event carries onto the clipboards
	// and the values it must have.
	EventFilter
	Line int
}

// LoadOptions adjust a policy between reading it and validating it. The
// zero value loads and validates the file as it is.
type LoadOptions struct {
	Name        string // replaces the policy's pipeline name, if set
	PipelineDir string // replaces the policy's directory ({pipelinedir}), if set
	// Check, if set, runs before validating; its error is Load's (e.g. a
	// run's policy copy that changed since the run was submitted).
	Check func(*Policy) error
	// NoValidate skips validating: for reading a run's copy only for its
	// names and topics.
	NoValidate bool
}

// Load reads, checks and validates a policy file: YAML syntax, known
// keys, types, required keys, stage types and their settings, duplicate
// stage names, then what spans stages (validate). It reports every
// problem found, each naming the file, line and key (an ErrInvalid).
func Load(path string, o LoadOptions) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: policy: %v", ErrInvalid, err)
	}
	return parsePolicy(path, data, o)
}

// parsePolicy is Load for a policy already in memory; path names it in messages
// and anchors {pipelinedir}.
func parsePolicy(path string, data []byte, o LoadOptions) (*Policy, error) {
	p, err := parse(path, data)
	if err != nil {
		return nil, err
	}
	if o.Name != "" {
		p.Name = o.Name
	}
	if o.PipelineDir != "" {
		p.Dir = o.PipelineDir
	}
	if o.Check != nil {
		if err := o.Check(p); err != nil {
			return nil, err
		}
	}
	if o.NoValidate {
		return p, nil
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// parse reads and checks a policy's sections, without validating what
// spans them.
func parse(path string, data []byte) (*Policy, error) {
	d := &conf.Decoder{File: path}
	root, err := d.Parse(data)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	p := &Policy{File: path, Dir: dir, Checksum: hex.EncodeToString(sum[:]), Failure: anySlice, InFlight: 1,
		Trigger: triggerSpec{Topic: defaultTrigger}, Locations: map[string]Pattern{}, locLines: map[string]int{}}
	d.Map(root, "", map[string]conf.Field{
		"pipeline": {Required: true, Decode: func(n *yaml.Node, path string) {
			p.Name = d.NonEmpty(n, path)
			if p.Name != "" && safeSegment("pipeline", p.Name) != nil {
				d.Errorf(n, path, "must not contain '/' or be '.' or '..'")
			}
		}},
		"slices": {Required: true, Decode: func(n *yaml.Node, path string) {
			if n.Kind == yaml.ScalarNode && n.Value == "per-data-id" {
				p.PerDataID = true
				return
			}
			if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
				d.Errorf(n, path, "expected a number of slices or per-data-id, got %q", n.Value)
				return
			}
			p.Slices = d.Int(n, path)
			if p.Slices < 1 {
				d.Errorf(n, path, "must be at least 1, got %d", p.Slices)
			}
		}},
		"mapper":    {Required: true, Decode: func(n *yaml.Node, path string) { p.Mapper = decodeMapper(d, n, path) }},
		"locations": {Decode: func(n *yaml.Node, path string) { decodeLocations(d, n, path, p) }},
		"gpus_per_slice": {Decode: func(n *yaml.Node, path string) {
			p.GPUsPerSlice = d.Int(n, path)
			if p.GPUsPerSlice < 0 {
				d.Errorf(n, path, "must not be negative, got %d", p.GPUsPerSlice)
			}
		}},
		"grow": {Decode: func(n *yaml.Node, path string) { p.GrowTime, p.GrowMemory = d.Growth(n, path) }},
		"visit_time": {Decode: func(n *yaml.Node, path string) {
			p.VisitTime = max(d.Duration(n, path), 0)
		}},
		"in_flight": {Decode: func(n *yaml.Node, path string) {
			before := len(d.Errs)
			switch k := d.Int(n, path); {
			case len(d.Errs) > before:
			case k < 1:
				d.Errorf(n, path, "must be at least 1 (the visits the Pipeline runs at once), got %d", k)
			default:
				p.InFlight = k
			}
		}},
		"failure": {Decode: func(n *yaml.Node, path string) {
			d.Map(n, path, map[string]conf.Field{"visit": {Decode: func(n *yaml.Node, path string) {
				switch r := visitRule(d.String(n, path)); r {
				case anySlice, allSlices, never:
					p.Failure = r
				default:
					d.Errorf(n, path, "expected any-slice, all-slices or never, got %q", r)
				}
			}}})
		}},
		"events": {Decode: func(n *yaml.Node, path string) {
			d.Map(n, path, map[string]conf.Field{
				"trigger": {Decode: func(n *yaml.Node, path string) {
					p.Trigger.Line = n.Line
					d.Map(n, path, map[string]conf.Field{
						"topic":      {Decode: func(n *yaml.Node, path string) { p.Trigger.Topic = topicName(d, n, path) }},
						"properties": {Decode: func(n *yaml.Node, path string) { p.Trigger.decodeProperties(d, n, path) }},
						"select":     {Decode: func(n *yaml.Node, path string) { p.Trigger.decodeSelect(d, n, path) }},
					})
				}},
				"external": {Decode: func(n *yaml.Node, path string) {
					for i, t := range d.List(n, path) {
						p.External = append(p.External, topicName(d, t, conf.Index(path, i)))
					}
				}},
			})
		}},
		"stages": {Required: true, Decode: func(n *yaml.Node, path string) { p.Stages = decodeStages(d, n, path) }},
		"freeze_dry": {Decode: func(n *yaml.Node, path string) {
			for i, s := range d.List(n, path) {
				p.FreezeDry = append(p.FreezeDry, d.NonEmpty(s, conf.Index(path, i)))
				p.freezeLines = append(p.freezeLines, s.Line)
			}
		}},
		"freeze_dry_limits": {Decode: func(n *yaml.Node, path string) { p.FreezeLimits = decodeFreezeLimits(d, n, path) }},
	})
	if err := d.Errs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// decodeFreezeLimits decodes freeze_dry_limits: {copy_below: SIZE,
// per_run: SIZE}, sizes such as 16MiB.
func decodeFreezeLimits(d *conf.Decoder, n *yaml.Node, path string) capture.Limits {
	var l capture.Limits
	size := func(into *int64) conf.Field {
		return conf.Field{Decode: func(n *yaml.Node, path string) {
			v, err := capture.ParseSize(n.Value)
			if err != nil || n.Kind != yaml.ScalarNode {
				d.Errorf(n, path, "%v", err)
			}
			*into = v
		}}
	}
	d.Map(n, path, map[string]conf.Field{"copy_below": size(&l.CopyBelow), "per_run": size(&l.PerRun)})
	return l
}

func topicName(d *conf.Decoder, n *yaml.Node, path string) string {
	t := d.NonEmpty(n, path)
	if t == events.TopicControl {
		d.Errorf(n, path, "%q is reserved for shutdown events", t)
	}
	return t
}

func decodeMapper(d *conf.Decoder, n *yaml.Node, path string) mapperSpec {
	m := mapperSpec{Line: n.Line}
	var settings *yaml.Node
	d.Map(n, path, map[string]conf.Field{
		"type": {Required: true, Decode: func(n *yaml.Node, path string) {
			m.Type, m.Line = d.NonEmpty(n, path), n.Line
		}},
		"settings": {Decode: func(n *yaml.Node, _ string) { settings = n }},
	})
	if m.Type == "" {
		return m
	}
	f, err := mapper.Lookup(m.Type)
	if err != nil {
		d.Errorf(&yaml.Node{Line: m.Line}, conf.Join(path, "type"), "%v", trimPkg(err))
		return m
	}
	m.Settings = d.Settings(settings, conf.Join(path, "settings"), f.Declared())
	return m
}

func decodeLocations(d *conf.Decoder, n *yaml.Node, path string, p *Policy) {
	fields := map[string]conf.Field{}
	for _, name := range locationNames {
		fields[name] = conf.Field{Decode: func(n *yaml.Node, path string) {
			s := d.NonEmpty(n, path)
			t, err := parsePattern(s)
			if err != nil {
				d.Errorf(n, path, "%v", err)
				return
			}
			for _, ref := range t.Names() {
				if isLocation(ref) {
					d.Errorf(n, path, "a location may not refer to another location ({%s})", ref)
				}
			}
			p.Locations[name], p.locLines[name] = t, n.Line
		}}
	}
	d.Map(n, path, fields)
}

func decodeStages(d *conf.Decoder, n *yaml.Node, path string) []stageSpec {
	items := d.List(n, path)
	if items == nil && n.Kind == yaml.SequenceNode {
		d.Errorf(n, path, "a pipeline needs at least one stage")
	}
	var out []stageSpec
	names := map[string]int{}
	for i, item := range items {
		sp := stageSpec{Line: item.Line, Path: conf.Index(path, i)}
		var settings, typeNode, nameNode *yaml.Node
		ok := d.Map(item, sp.Path, map[string]conf.Field{
			"name":     {Required: true, Decode: func(n *yaml.Node, path string) { sp.Name, nameNode = d.NonEmpty(n, path), n }},
			"type":     {Required: true, Decode: func(n *yaml.Node, path string) { sp.Type, typeNode = d.NonEmpty(n, path), n }},
			"settings": {Decode: func(n *yaml.Node, _ string) { settings = n }},
			"event":    {Decode: func(n *yaml.Node, path string) { sp.Event = decodeWait(d, n, path) }},
			"exchange": {Decode: func(n *yaml.Node, path string) { sp.Exchange = decodeExchange(d, n, path) }},
		})
		if !ok {
			continue
		}
		if sp.Name != "" {
			if j, dup := names[sp.Name]; dup {
				d.Errorf(nameNode, conf.Join(sp.Path, "name"), "duplicate stage name %q (also stages[%d])", sp.Name, j)
			}
			names[sp.Name] = i
		}
		if sp.Type != "" {
			t, err := LookupStage(sp.Type)
			if err != nil {
				d.Errorf(typeNode, conf.Join(sp.Path, "type"), "%v", trimPkg(err))
			} else {
				sp.Settings = Settings{d.Settings(settings, conf.Join(sp.Path, "settings"), confSettings(t.Settings))}
			}
		}
		out = append(out, sp)
	}
	return out
}

func decodeWait(d *conf.Decoder, n *yaml.Node, path string) *waitSpec {
	w := &waitSpec{Timeout: defaultEventTimeout, Line: n.Line}
	d.Map(n, path, map[string]conf.Field{
		"topic":      {Required: true, Decode: func(n *yaml.Node, path string) { w.Topic = topicName(d, n, path) }},
		"timeout":    {Decode: func(n *yaml.Node, path string) { w.Timeout = d.Duration(n, path) }},
		"properties": {Decode: func(n *yaml.Node, path string) { w.decodeProperties(d, n, path) }},
		"select":     {Decode: func(n *yaml.Node, path string) { w.decodeSelect(d, n, path) }},
	})
	if w.Timeout == 0 {
		w.Timeout = defaultEventTimeout
	}
	return w
}

// decodeExchange decodes a stage's exchange section:
//
//	exchange: {topology: ring, keys: [sources]}
//
// Both keys are required; keys lists at least one clipboard key, each once.
func decodeExchange(d *conf.Decoder, n *yaml.Node, path string) *exchangeSpec {
	x := &exchangeSpec{Line: n.Line}
	d.Map(n, path, map[string]conf.Field{
		"topology": {Required: true, Decode: func(n *yaml.Node, path string) {
			x.TopologyLine = n.Line
			s := d.NonEmpty(n, path)
			switch t := topology(s); t {
			case topologyRing, topologyMapper:
				x.Topology = t
			case "":
				// reported by NonEmpty
			default:
				names := []string{string(topologyMapper), string(topologyRing)}
				d.Errorf(n, path, "unknown topology %q%s; expected ring or mapper", s, conf.Suggest(s, names))
			}
		}},
		"keys": {Required: true, Decode: func(n *yaml.Node, path string) {
			x.KeysLine = n.Line
			before := len(d.Errs)
			keys := d.Strings(n, path)
			if len(d.Errs) > before {
				return
			}
			if len(keys) == 0 {
				d.Errorf(n, path, "must list at least one clipboard key")
				return
			}
			seq := yamlDeref(n)
			seen := map[string]bool{}
			for i, k := range keys {
				at, kp := n, path
				if seq.Kind == yaml.SequenceNode {
					at, kp = seq.Content[i], conf.Index(path, i)
				}
				switch {
				case k == "":
					d.Errorf(at, kp, "must not be empty")
				case seen[k]:
					d.Errorf(at, kp, "clipboard key %q listed twice", k)
				default:
					seen[k] = true
					x.Keys = append(x.Keys, k)
					x.KeyLines = append(x.KeyLines, at.Line)
				}
			}
		}},
	})
	return x
}

// yamlDeref follows an alias to the node it names.
func yamlDeref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// trimPkg drops the "harness: " or "mapper: " prefix of a registry error
// when it is shown at a position in a file.
func trimPkg(err error) string {
	s := err.Error()
	for _, p := range []string{"harness: ", "mapper: "} {
		if len(s) > len(p) && s[:len(p)] == p {
			return s[len(p):]
		}
	}
	return s
}

// errorAt makes a conf.Error for a stage or section of the policy.
func (p *Policy) errorAt(line int, path, format string, args ...any) *conf.Error {
	return &conf.Error{File: p.File, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)}
}
