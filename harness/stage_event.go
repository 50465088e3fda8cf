package harness

import (
	"errors"
	"fmt"
	"slices"
)

type eventStage struct {
	topic string
	props []propSpec
	keys  []string
}

type propSpec struct {
	name string
	tmpl Pattern
}

func newEvent(s Settings) (Stage, error) {
	st := &eventStage{topic: s.String("topic"), keys: s.Strings("keys")}
	if st.topic == "" {
		return nil, errors.New("topic must not be empty")
	}
	for _, p := range s.Pairs("properties") {
		t, err := parsePattern(p.Value)
		if err != nil {
			return nil, fmt.Errorf("properties.%s: %w", p.Key, err)
		}
		st.props = append(st.props, propSpec{p.Key, t})
	}
	return st, nil
}

func (st *eventStage) Keys() (needs, produces []string) {
	ts := make([]Pattern, len(st.props))
	for i, p := range st.props {
		ts[i] = p.tmpl
	}
	return append(append([]string(nil), st.keys...), patternNeeds(ts...)...), nil
}

func (st *eventStage) Topics() []string { return []string{st.topic} }

// locationsUsed are the locations its properties' templates name
// (locationUser): they are expanded on the Pipeline.
func (st *eventStage) locationsUsed() []string {
	var out []string
	for _, p := range st.props {
		for _, n := range p.tmpl.Names() {
			if isLocation(n) && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// Postprocess publishes on the Pipeline, once per visit, after the slices.
func (st *eventStage) Postprocess(cx *Context, cb *Clipboard) error {
	props := make(map[string]any, len(st.keys)+len(st.props)+1)
	for _, k := range st.keys {
		v, ok := cb.Get(k)
		if !ok {
			return fmt.Errorf("event %s: the Pipeline's clipboard has no key %q", st.topic, k)
		}
		props[k] = v
	}
	for _, p := range st.props {
		v, err := cx.Expand(p.tmpl, cb)
		if err != nil {
			return fmt.Errorf("event %s: property %s: %w", st.topic, p.name, err)
		}
		props[p.name] = v
	}
	if err := cx.Publish(st.topic, props); err != nil {
		return fmt.Errorf("event %s: %w", st.topic, err)
	}
	cx.Logger().Debug("event published", "topic", st.topic)
	return nil
}
