package harness

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// propType is the type a policy declares for an event property.
type propType string

// The property types a policy may declare. propAny accepts any value.
const (
	propAny    propType = ""
	propString propType = "string"
	propInt    propType = "int"    // a whole number
	propNumber propType = "number" // any number
	propBool   propType = "bool"
)

var propTypes = []string{string(propString), string(propInt), string(propNumber), string(propBool)}

// EventFilter is what a receiver of events (the trigger, a stage's wait)
// declares in the policy about the events it takes:
//
//	properties: [ccdList, filter]               # must be present, any type
//	properties: {exposure: number, filter: string}  # present, with a type
//	select: {filter: r}                          # only events with these values
//
// An event that lacks a property or has one of the wrong type is
// malformed: the Pipeline logs, counts and drops it. An event whose
// properties do not have the selected values is not for this receiver:
// it is skipped (logged at debug level and counted), which lets several
// pipelines share a topic.
type EventFilter struct {
	Properties []string            // required properties, in the policy's order
	Types      map[string]propType // declared types; a property absent here is propAny
	Select     map[string]any      // property values an event must have
}

// decodeProperties decodes `properties:` as a list of names or a mapping
// of names to types.
func (f *EventFilter) decodeProperties(d *conf.Decoder, n *yaml.Node, path string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		f.Properties = d.Strings(n, path)
		return
	}
	for _, p := range d.Pairs(n, path) {
		name := p[0].Value
		t := propType(d.String(p[1], conf.Join(path, name)))
		if !slices.Contains(propTypes, string(t)) && t != "any" {
			d.Errorf(p[1], conf.Join(path, name), "unknown property type %q%s; expected string, int, number, bool or any",
				t, conf.Suggest(string(t), propTypes))
			continue
		}
		f.Properties = append(f.Properties, name)
		if t != "any" {
			if f.Types == nil {
				f.Types = map[string]propType{}
			}
			f.Types[name] = t
		}
	}
}

// decodeSelect decodes `select:` as a mapping of property names to plain
// values (string, number or bool).
func (f *EventFilter) decodeSelect(d *conf.Decoder, n *yaml.Node, path string) {
	for _, p := range d.Pairs(n, path) {
		name, at := p[0].Value, conf.Join(path, p[0].Value)
		v := d.Any(p[1], at)
		switch v.(type) {
		case string, int, float64, bool:
		default:
			d.Errorf(p[1], at, "expected a string, number or bool to select events by, got %s", describeValue(v))
			continue
		}
		if f.Select == nil {
			f.Select = map[string]any{}
		}
		f.Select[name] = v
	}
}

func describeValue(v any) string {
	switch v.(type) {
	case nil:
		return "nothing"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

// Selects reports whether e carries the selected values. A control event
// (no-more-data, shutdown) is selected unless it carries a selected
// property with another value: one without them is for every receiver.
func (f *EventFilter) Selects(e events.Event) bool {
	for k, want := range f.Select {
		got, ok := e.Properties[k]
		if !ok {
			if e.IsData() {
				return false
			}
			continue
		}
		if !SameValue(got, want) {
			return false
		}
	}
	return true
}

// malformed says what is wrong with a data event's properties, or "". A
// string whose text reads as the declared type (a CSV cell "30" for a
// number) is replaced by the value it reads as, in props itself.
func (f *EventFilter) malformed(props map[string]any) string {
	if ps := f.problems(props, 1); len(ps) > 0 {
		return ps[0].String()
	}
	return ""
}

// propProblem is one property an event lacks or has of the wrong type.
type propProblem struct {
	key  string
	want propType // "" when missing
	got  any
}

func (p propProblem) String() string {
	if p.want == propAny {
		return "missing property " + p.key
	}
	return fmt.Sprintf("property %s: expected %s, got %s", p.key, p.want, describeProp(p.got))
}

// Check says what is wrong with a data event's properties for this
// receiver, naming the first property it lacks or has of the wrong type
// and the type expected; nil when nothing is. Like the Pipeline, it
// replaces a string that reads as the declared type by the value it reads
// as, in props itself. `dpsbatch event send` checks an event with it
// before sending it.
func (f *EventFilter) Check(props map[string]any) error {
	if why := f.malformed(props); why != "" {
		return errors.New(why)
	}
	return nil
}

// problems checks props as malformed does, and returns up to max problems.
// A visitId, when there is one, must be a string or a number whatever the
// policy declares: it names the visit.
func (f *EventFilter) problems(props map[string]any, max int) []propProblem {
	var out []propProblem
	if v, ok := props[events.PropVisit]; ok && !visitScalar(v) {
		out = append(out, propProblem{key: events.PropVisit, want: propVisitID, got: v})
	}
	for _, k := range f.Properties {
		if len(out) == max {
			break
		}
		v, ok := props[k]
		if !ok {
			out = append(out, propProblem{key: k})
			continue
		}
		t := f.Types[k]
		if t == propAny || hasType(v, t) {
			continue
		}
		if s, ok := v.(string); ok {
			if x, ok := parseAs(strings.TrimSpace(s), t); ok {
				props[k] = x
				continue
			}
		}
		out = append(out, propProblem{key: k, want: t, got: v})
	}
	return out
}

// propVisitID is the type of visitId: a string or a number (never declared
// in a policy; for messages).
const propVisitID propType = "string or number"

// visitScalar reports whether v can name a visit: a string or a number,
// as events decode them (a JSON object or list cannot).
func visitScalar(v any) bool {
	if _, ok := v.(string); ok {
		return true
	}
	_, ok := number(v)
	return ok
}

// parseAs reads s as a value of type t.
func parseAs(s string, t propType) (any, bool) {
	switch t {
	case propBool:
		b, err := strconv.ParseBool(s)
		return b, err == nil
	case propInt:
		i, err := strconv.Atoi(s)
		return i, err == nil
	case propNumber:
		if i, err := strconv.Atoi(s); err == nil {
			return i, true
		}
		x, err := strconv.ParseFloat(s, 64)
		return x, err == nil && !math.IsNaN(x) && !math.IsInf(x, 0)
	}
	return nil, false
}

// hasType reports whether v, as events decode it, is of type t.
func hasType(v any, t propType) bool {
	switch t {
	case propString:
		_, ok := v.(string)
		return ok
	case propBool:
		_, ok := v.(bool)
		return ok
	case propNumber:
		_, ok := number(v)
		return ok
	case propInt:
		x, ok := number(v)
		return ok && x == math.Trunc(x) && !math.IsInf(x, 0)
	}
	return true
}

func describeProp(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 40 {
			x = x[:40] + "..."
		}
		return fmt.Sprintf("string %q", x)
	case bool:
		return fmt.Sprintf("bool %v", x)
	}
	if x, ok := number(v); ok {
		return fmt.Sprintf("number %v", x)
	}
	return describeValue(v)
}

// number returns v as a float64 if it is a number of any Go type events
// or YAML decode to.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case float64:
		return x, true
	case float32:
		return float64(x), true
	}
	return 0, false
}

// SameValue compares an event property's value with a selected one, as
// selection does (events.trigger.select, a stage's event.select): numbers
// by value (1 and 1.0 are the same), strings and bools exactly, and a
// number against a string by its text (select: {ccd: "12"} takes ccd=12).
// Lists and mappings never equal a selected value.
func SameValue(got, want any) bool {
	gn, gok := number(got)
	wn, wok := number(want)
	switch {
	case gok && wok:
		return gn == wn
	case gok || wok:
		return strings.TrimSpace(fmt.Sprint(got)) == strings.TrimSpace(fmt.Sprint(want))
	}
	switch g := got.(type) {
	case string, bool:
		switch want.(type) {
		case string, bool:
			return g == want
		}
	}
	return false // lists and mappings never equal a selected value
}
