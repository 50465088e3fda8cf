package input

// A production is several pipelines run together: concurrent srun steps
// inside one Slurm allocation, sharing the run's event broker, so that an
// event stage of one pipeline triggers the next (detection ->
// association -> moving objects) and a stage may wait for an event another
// pipeline publishes. This file reads and checks the production file; ReadInput
// makes it a run's steps.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/rundir"
)

// Production is a production file, read and checked by LoadProduction:
//
//	production: nightly               # the production's (and run's) name
//	pipelines:
//	  - policy: detect/pipeline.yaml  # relative to the file's folder
//	    name: detect                  # default: the policy's pipeline name
//	    visits: detect/visits.csv     # none: it listens for trigger events
//	    slices: 4                     # default: the policy's count
//	    after: [other]                # its input closes once these ended
//
// All its pipelines run under one run ID (the run's name), so they share
// event topics.
type Production struct {
	File      string // as given
	Dir       string // absolute folder of File
	Name      string
	Pipelines []ProductionPipeline // in the file's order
}

// ProductionPipeline is one entry of a production's pipelines list.
type ProductionPipeline struct {
	Name       string // unique in the production; a run name (CheckName)
	PolicyPath string // absolute
	VisitsPath string // absolute; "" when it has no visit list
	Slices     int    // 0: the policy's count
	// After names the pipelines whose end closes this one's input: once
	// they have all ended it finishes what is queued and ends.
	After  []string
	Policy *harness.Policy // loaded and validated
	Visits []harness.Visit // read and checked against Policy; nil without VisitsPath
	Line   int             // of its entry in File
}

// pipeline returns the entry called name, or nil.
func (p *Production) pipeline(name string) *ProductionPipeline {
	for i := range p.Pipelines {
		if p.Pipelines[i].Name == name {
			return &p.Pipelines[i]
		}
	}
	return nil
}

// Listening reports whether pipeline name reads trigger events from the
// run's broker: it has no visit list, or its input stays open until the
// pipelines it runs after have ended. A name not in the production is not
// listening.
func (p *Production) Listening(name string) bool {
	pp := p.pipeline(name)
	return pp != nil && (pp.VisitsPath == "" || len(pp.After) > 0)
}

// ExternalTopics lists, sorted, the topics some pipeline of the
// production reads (a stage's event wait, or the trigger topic of a
// listening pipeline) and none of its event stages publishes: each policy
// declares them in events.external, and they must come from outside the
// production (dpsbatch event send, another program). Submit prints them
// as a note, not an error.
func (p *Production) ExternalTopics() []string {
	published := p.published()
	read := map[string]bool{}
	for _, pp := range p.Pipelines {
		if pp.Policy == nil {
			continue
		}
		if p.Listening(pp.Name) {
			read[pp.Policy.Trigger.Topic] = true
		}
		for _, sp := range pp.Policy.Stages {
			if sp.Event != nil {
				read[sp.Event.Topic] = true
			}
		}
	}
	var out []string
	for t := range read {
		if len(published[t]) == 0 {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// ExternalNote says which topics the production's pipelines read from
// outside it (ExternalTopics), each with the name of a topic one of its
// pipelines publishes when that is close (a misspelling would leave the
// readers waiting for their timeout); "" when there are none.
func (p *Production) ExternalNote() string {
	ext := p.ExternalTopics()
	if len(ext) == 0 {
		return ""
	}
	published := p.published()
	have := make([]string, 0, len(published))
	for t := range published {
		have = append(have, t)
	}
	sort.Strings(have)
	parts := make([]string, len(ext))
	for i, t := range ext {
		parts[i] = t
		if s := conf.Suggest(t, have); s != "" {
			best := strings.TrimSuffix(strings.TrimPrefix(s, ` (did you mean "`), `"?)`)
			parts[i] += fmt.Sprintf(" (did you mean %q, which %s publishes?)", best, strings.Join(published[best], ", "))
		}
	}
	return "topics the production's pipelines read from outside it (dpsbatch event send, or another program): " + strings.Join(parts, ", ")
}

// published maps every topic the production's stages publish to the
// pipelines whose stages publish it, in the production's order.
func (p *Production) published() map[string][]string {
	out := map[string][]string{}
	for _, pp := range p.Pipelines {
		if pp.Policy == nil {
			continue
		}
		for _, t := range stageTopics(pp.Policy) {
			if !slices.Contains(out[t], pp.Name) {
				out[t] = append(out[t], pp.Name)
			}
		}
	}
	return out
}

// stageTopics lists the topics the stages of p publish, the way
// harness.Load validates them: each stage built from its settings, asked
// through harness.TopicDeclarer. A stage that does not build publishes
// nothing here (Load reports it).
func stageTopics(p *harness.Policy) []string {
	var out []string
	for _, sp := range p.Stages {
		t, err := harness.LookupStage(sp.Type)
		if err != nil {
			continue
		}
		st, err := t.New(sp.Settings)
		if err != nil {
			continue
		}
		if td, ok := st.(harness.TopicDeclarer); ok {
			out = append(out, td.Topics()...)
		}
	}
	return out
}

// IsProduction sniffs the YAML file at path for submit, which takes a
// production or a single pipeline: true when its top-level mapping has the
// key production, false when it has the key pipeline (a policy). Anything
// else — a file that cannot be read or parsed, not a mapping, both keys,
// neither — is an error naming the file (and line), matching
// conf.ErrInvalid.
func IsProduction(path string) (bool, error) {
	d, root, err := conf.ReadFile(path)
	if err != nil {
		if errors.Is(err, conf.ErrInvalid) {
			return false, err
		}
		return false, fmt.Errorf("%w: input: %v", conf.ErrInvalid, err)
	}
	for root.Kind == yaml.AliasNode && root.Alias != nil {
		root = root.Alias
	}
	if root.Kind != yaml.MappingNode {
		d.Errorf(root, "", "expected a pipeline policy (a mapping with the key pipeline) or a production (a mapping with the key production)")
		return false, d.Errs
	}
	var prod, pipe *yaml.Node
	var keys []string
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i]
		switch k.Value {
		case "production":
			prod = k
		case "pipeline":
			pipe = k
		}
		keys = append(keys, k.Value)
	}
	switch {
	case prod != nil && pipe != nil:
		d.Errorf(pipe, "", "has both the key production (line %d) and the key pipeline: a file is either a production or a pipeline policy", prod.Line)
		return false, d.Errs
	case prod != nil:
		return true, nil
	case pipe != nil:
		return false, nil
	}
	hint := ""
	for _, k := range keys {
		if s := conf.Suggest(k, []string{"pipeline", "production"}); s != "" {
			hint = fmt.Sprintf("; key %q%s", k, s)
			break
		}
	}
	d.Errorf(root, "", "neither a pipeline policy (key pipeline) nor a production (key production)%s", hint)
	return false, d.Errs
}

// LoadProduction reads the production file at path and everything it
// names: each pipeline's policy (loaded and validated) and visit list
// (read and checked against the policy's trigger). Relative paths are
// taken from the file's folder. Besides each policy's own checks it
// checks what spans the pipelines:
//
//   - names are run names (CheckName) and unique; a name defaults to the
//     policy's pipeline name;
//   - after names other pipelines of the production, without cycles;
//   - a listening pipeline (no visits, or after set) has a trigger topic
//     that another pipeline's event stage publishes or that its own
//     policy declares in events.external;
//   - pipelines that share a trigger topic (one run ID: shared topics)
//     each select their events (events.trigger.select), with at least one
//     property selected by both with different values.
//
// Every problem found is reported, each naming its file, line and key (a
// conf.Errors, matching conf.ErrInvalid); a file that cannot be read is an
// error matching conf.ErrInvalid too.
func LoadProduction(path string) (*Production, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: input: production: %v", conf.ErrInvalid, err)
	}
	d := &conf.Decoder{File: path}
	root, err := d.Parse(data)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	pr := &prodReader{d: d, prod: &Production{File: path, Dir: dir}}
	if !d.Map(root, "", map[string]conf.Field{
		"production": {Required: true, Decode: func(n *yaml.Node, path string) {
			pr.prod.Name = d.NonEmpty(n, path)
			if pr.prod.Name != "" && rundir.CheckName(pr.prod.Name) != nil {
				d.Errorf(n, path, "%q is not a run name: use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 128)", pr.prod.Name)
			}
		}},
		"pipelines": {Required: true, Decode: pr.pipelines},
	}) {
		return nil, d.Errs
	}
	pr.crossChecks()
	d.Errs.Sort()
	if err := d.Errs.Err(); err != nil {
		return nil, err
	}
	return pr.prod, nil
}

// prodReader decodes one production file, keeping the nodes that checks
// spanning several pipelines point their errors at.
type prodReader struct {
	d     *conf.Decoder
	prod  *Production
	nodes []pipeNodes // per pipeline
	// broken: some policy or visit list did not load, so the checks that
	// need every pipeline's policy are skipped.
	broken bool
}

// pipeNodes holds, for pipelines[i], its item and the nodes of its keys
// (nil when absent or invalid), and whether its name was given.
type pipeNodes struct {
	item, name, policy, after *yaml.Node
	afterItems                []*yaml.Node
}

func (r *prodReader) pipelines(n *yaml.Node, path string) {
	d := r.d
	items := d.List(n, path)
	if len(items) == 0 {
		if n.Kind == yaml.SequenceNode {
			d.Errorf(n, path, "a production needs at least one pipeline")
		}
		return
	}
	for i, item := range items {
		at := conf.Index(path, i)
		pp := ProductionPipeline{Line: item.Line}
		nodes := pipeNodes{item: item}
		var policyGiven, visitsGiven string
		if !d.Map(item, at, map[string]conf.Field{
			"policy": {Required: true, Decode: func(n *yaml.Node, path string) {
				policyGiven, nodes.policy = d.NonEmpty(n, path), n
			}},
			"name": {Decode: func(n *yaml.Node, path string) {
				before := len(d.Errs)
				pp.Name = d.NonEmpty(n, path)
				if len(d.Errs) == before {
					nodes.name = n
					if rundir.CheckName(pp.Name) != nil {
						d.Errorf(n, path, "%q is not a pipeline name here: use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 128)", pp.Name)
					}
				}
			}},
			"visits": {Decode: func(n *yaml.Node, path string) { visitsGiven = d.NonEmpty(n, path) }},
			"slices": {Decode: func(n *yaml.Node, path string) {
				before := len(d.Errs)
				pp.Slices = d.Int(n, path)
				if len(d.Errs) == before && pp.Slices < 1 {
					d.Errorf(n, path, "must be at least 1, got %d", pp.Slices)
					pp.Slices = 0
				}
			}},
			"after": {Decode: func(n *yaml.Node, path string) {
				before := len(d.Errs)
				names := d.Strings(n, path)
				if len(d.Errs) > before {
					return
				}
				nodes.after = n
				seq := n
				for seq.Kind == yaml.AliasNode && seq.Alias != nil {
					seq = seq.Alias
				}
				for k, name := range names {
					node := seq
					if seq.Kind == yaml.SequenceNode {
						node = seq.Content[k]
					}
					pp.After = append(pp.After, name)
					nodes.afterItems = append(nodes.afterItems, node)
				}
			}},
		}) {
			// Not a mapping: a placeholder keeps pipelines[i] in step.
			r.broken = true
			r.prod.Pipelines = append(r.prod.Pipelines, pp)
			r.nodes = append(r.nodes, nodes)
			continue
		}
		if policyGiven == "" {
			r.broken = true
		} else {
			pp.PolicyPath = r.abs(policyGiven)
			pp.Policy = r.loadPolicy(nodes.policy, conf.Join(at, "policy"), pp.PolicyPath)
		}
		if visitsGiven != "" {
			pp.VisitsPath = r.abs(visitsGiven)
			if pp.Policy != nil {
				pp.Visits = r.loadVisits(item, conf.Join(at, "visits"), pp.Policy, pp.VisitsPath)
			}
		}
		if pp.Name == "" && pp.Policy != nil {
			pp.Name = pp.Policy.Name
			if rundir.CheckName(pp.Name) != nil {
				d.Errorf(nodes.policy, conf.Join(at, "name"), "the policy's pipeline name %q is not a pipeline name here (letters, digits, '.', '_' and '-', starting with a letter or digit): set name", pp.Name)
			}
		}
		r.prod.Pipelines = append(r.prod.Pipelines, pp)
		r.nodes = append(r.nodes, nodes)
	}
}

// abs makes a path of the file absolute from the file's folder.
func (r *prodReader) abs(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(r.prod.Dir, p)
}

// loadPolicy loads and validates the policy at p, recording its problems
// (in the policy's own file) or why it cannot be read (at n).
func (r *prodReader) loadPolicy(n *yaml.Node, at, p string) *harness.Policy {
	if !r.readable(n, at, p, "policy") {
		return nil
	}
	pol, err := harness.Load(p, harness.LoadOptions{})
	if err == nil {
		err = pol.CheckDataIDValues() // a production file is new input
	}
	if err != nil {
		r.addErr(n, at, err)
		return nil
	}
	return pol
}

// loadVisits reads the visit list at p and checks it against pol.
func (r *prodReader) loadVisits(item *yaml.Node, at string, pol *harness.Policy, p string) []harness.Visit {
	n := item
	for i := 0; i+1 < len(item.Content); i += 2 {
		if item.Content[i].Value == "visits" {
			n = item.Content[i+1]
		}
	}
	if !r.readable(n, at, p, "visit list") {
		return nil
	}
	vs, err := harness.ReadVisits(p)
	if err == nil {
		err = harness.CheckVisits(pol, p, vs)
	}
	if err == nil && len(vs) == 0 {
		r.d.Errorf(n, at, "%s: no visits (leave visits out for a pipeline that listens for trigger events)", p)
		r.broken = true
		return nil
	}
	if err != nil {
		r.addErr(n, at, err)
		return nil
	}
	return vs
}

// readable reports whether p is a file that can be opened, recording at
// n why not.
func (r *prodReader) readable(n *yaml.Node, at, p, what string) bool {
	fi, err := os.Stat(p)
	switch {
	case os.IsNotExist(err):
		r.d.Errorf(n, at, "no such %s file: %s", what, p)
	case err != nil:
		r.d.Errorf(n, at, "%v", err)
	case fi.IsDir():
		r.d.Errorf(n, at, "%s is a folder, expected a %s file", p, what)
	default:
		return true
	}
	r.broken = true
	return false
}

// addErr records err, the problems of a file the production names: a
// conf.Errors keeps its own files and lines, anything else is placed at n.
func (r *prodReader) addErr(n *yaml.Node, at string, err error) {
	r.broken = true
	var ce conf.Errors
	if errors.As(err, &ce) {
		r.d.Errs = append(r.d.Errs, ce...)
		return
	}
	var one *conf.Error
	if errors.As(err, &one) {
		r.d.Errs = append(r.d.Errs, one)
		return
	}
	r.d.Errorf(n, at, "%v", err)
}

// crossChecks reports what spans several pipelines.
func (r *prodReader) crossChecks() {
	d, pipes := r.d, r.prod.Pipelines
	names := make([]string, 0, len(pipes))
	first := map[string]int{}
	for i, pp := range pipes {
		if pp.Name == "" {
			continue
		}
		at := conf.Join(conf.Index("pipelines", i), "name")
		if j, dup := first[pp.Name]; dup {
			n, how := r.nodes[i].name, ""
			if n == nil {
				n, how = r.nodes[i].item, " (the policy's pipeline name: set name to tell them apart)"
			}
			d.Errorf(n, at, "duplicate pipeline name %q (also pipelines[%d])%s", pp.Name, j, how)
			continue
		}
		first[pp.Name] = i
		names = append(names, pp.Name)
	}
	before := len(d.Errs)
	r.checkAfter(first, names)
	if r.broken || before > 0 {
		// The topic checks need every pipeline's policy, and would
		// mostly repeat what is reported already (a misspelt visits
		// key makes a listening pipeline).
		return
	}
	r.checkTriggers()
}

// checkAfter reports unknown, repeated and self references in after, and
// every cycle.
func (r *prodReader) checkAfter(index map[string]int, names []string) {
	d, pipes := r.d, r.prod.Pipelines
	for i, pp := range pipes {
		seen := map[string]bool{}
		for k, a := range pp.After {
			at := conf.Index(conf.Join(conf.Index("pipelines", i), "after"), k)
			n := r.nodes[i].afterItems[k]
			_, known := index[a]
			switch {
			case a == pp.Name:
				d.Errorf(n, at, "pipeline %q cannot run after itself", a)
			case seen[a]:
				d.Errorf(n, at, "%q is listed twice", a)
			case !known:
				d.Errorf(n, at, "no pipeline %q in the production%s %s", a, conf.Suggest(a, names), conf.Have(names))
			}
			seen[a] = true
		}
	}
	// Cycles: a depth-first walk along after; a pipeline met again while
	// on the path closes a cycle, reported once, at its first member.
	const (
		unseen = iota
		onPath
		done
	)
	mark := make([]int, len(pipes))
	var path []int
	var walk func(i int)
	walk = func(i int) {
		mark[i] = onPath
		path = append(path, i)
		for _, a := range pipes[i].After {
			j, ok := index[a]
			if !ok || j == i || pipes[j].Name != a {
				continue
			}
			switch mark[j] {
			case unseen:
				walk(j)
			case onPath:
				start := slices.Index(path, j)
				cycle := make([]string, 0, len(path)-start+1)
				for _, p := range path[start:] {
					cycle = append(cycle, pipes[p].Name)
				}
				cycle = append(cycle, pipes[j].Name)
				n := r.nodes[j].after
				if n == nil {
					n = r.nodes[j].item
				}
				d.Errorf(n, conf.Join(conf.Index("pipelines", j), "after"),
					"a cycle: %s (each would wait for the next to end)", strings.Join(cycle, " after "))
			}
		}
		path = path[:len(path)-1]
		mark[i] = done
	}
	for i := range pipes {
		if mark[i] == unseen && pipes[i].Name != "" {
			walk(i)
		}
	}
}

// checkTriggers reports listening pipelines whose trigger topic nothing
// publishes, and pipelines sharing a trigger topic without telling their
// events apart.
func (r *prodReader) checkTriggers() {
	d, prod := r.d, r.prod
	published := prod.published()
	topics := make([]string, 0, len(published))
	for t := range published {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	for i, pp := range prod.Pipelines {
		if !prod.Listening(pp.Name) {
			continue
		}
		trig := pp.Policy.Trigger.Topic
		others := slices.DeleteFunc(slices.Clone(published[trig]), func(s string) bool { return s == pp.Name })
		if len(others) > 0 || slices.Contains(pp.Policy.External, trig) {
			continue
		}
		var fromOthers []string // for the suggestion
		for _, t := range topics {
			if slices.ContainsFunc(published[t], func(s string) bool { return s != pp.Name }) {
				fromOthers = append(fromOthers, t)
			}
		}
		self := ""
		if len(published[trig]) > 0 {
			self = " (its own event stage publishes it, but a pipeline cannot trigger itself)"
		}
		why := "it has no visit list"
		if len(pp.After) > 0 {
			why = "it runs after " + strings.Join(pp.After, ", ")
			if pp.VisitsPath != "" {
				why = "its input stays open until " + strings.Join(pp.After, ", ") + " ended"
			}
		}
		have := "(the production's event stages publish: none)"
		if len(topics) > 0 {
			have = "(the production's event stages publish: " + strings.Join(topics, ", ") + ")"
		}
		d.Errorf(r.nodes[i].item, conf.Index("pipelines", i),
			"pipeline %q listens for trigger events (%s) on topic %q, which no other pipeline of the production publishes%s and %s does not declare in events.external%s %s",
			pp.Name, why, trig, self, pp.Policy.File, conf.Suggest(trig, fromOthers), have)
	}
	for i, a := range prod.Pipelines {
		for j := i + 1; j < len(prod.Pipelines); j++ {
			b := prod.Pipelines[j]
			if a.Policy.Trigger.Topic != b.Policy.Trigger.Topic {
				continue
			}
			if msg := selectClash(a.Policy.Trigger.Select, b.Policy.Trigger.Select); msg != "" {
				d.Errorf(r.nodes[j].item, conf.Index("pipelines", j),
					"pipelines %q and %q (pipelines[%d]) share the trigger topic %q in one run, so each would take the other's triggers: %s",
					b.Name, a.Name, i, a.Policy.Trigger.Topic, msg)
			}
		}
	}
}

// selectClash says why two trigger selections do not keep their events
// apart, or "" when some property is selected by both with different
// values.
func selectClash(a, b map[string]any) string {
	if len(a) == 0 || len(b) == 0 {
		return "give each policy an events.trigger.select with a property they both select, with different values"
	}
	var both []string
	for k, va := range a {
		if vb, ok := b[k]; ok {
			if !harness.SameValue(va, vb) {
				return ""
			}
			both = append(both, k)
		}
	}
	if len(both) == 0 {
		return "their events.trigger.select name no property in common, so an event can match both; select one property in both, with different values"
	}
	sort.Strings(both)
	return fmt.Sprintf("their events.trigger.select give the same values to %s; select different values", strings.Join(both, ", "))
}
