package stagerun

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dpsbatch/dpsbatch/harness"
)

// loadPolicy writes the case's policy into dir as pipeline.yaml and
// loads it: the case's stages between the seed and the keep stage.
// Its errors name the file's lines, and quote the file.
func loadPolicy(dir string, c Case) (*harness.Policy, error) {
	text, err := policyText(c)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return nil, err
	}
	p, err := harness.Load(path, harness.LoadOptions{PipelineDir: c.PipelineDir, NoValidate: c.NoValidate})
	if err != nil {
		return nil, fmt.Errorf("the case's policy does not load: %w\n%s", err, numbered(text))
	}
	return p, nil
}

// policyText is the case's policy file. Generated parts are written as
// JSON, which YAML reads, so no value needs quoting by hand.
func policyText(c Case) (string, error) {
	if c.Mapper == nil {
		ids := c.DataIDs
		if ids == nil {
			ids = []map[string]any{{"id": 1}}
		}
		c.Mapper = map[string]any{"type": "list", "settings": map[string]any{"ids": ids}}
	}
	head := map[string]any{
		"pipeline": cmp.Or(c.Name, "stagerun"),
		"slices":   sliceCount(c),
		"mapper":   c.Mapper,
		"events":   eventsSection(c),
	}
	if len(c.Locations) > 0 {
		head["locations"] = c.Locations
	}
	if c.Failure != "" {
		head["failure"] = map[string]any{"visit": c.Failure}
	}
	var b strings.Builder
	for _, k := range sortedKeys(head) {
		v, err := json.Marshal(head[k])
		if err != nil {
			return "", fmt.Errorf("policy %s: %w", k, err)
		}
		fmt.Fprintf(&b, "%s: %s\n", k, v)
	}
	seeded, err := json.Marshal(seededKeys(c))
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "stages:\n  - {name: %s, type: %s, settings: {produces: %s}}\n", seedStage, seedStage, seeded)
	for _, line := range strings.Split(strings.TrimRight(c.Stages, "\n"), "\n") {
		b.WriteString("  " + line + "\n")
	}
	fmt.Fprintf(&b, "  - {name: %s, type: %s}\n", keepStage, keepStage)
	return b.String(), nil
}

// eventsSection declares the trigger's properties (those of Case.Event)
// and the topics of Case.Events as external.
func eventsSection(c Case) map[string]any {
	props := make([]string, 0, len(c.Event))
	for k := range c.Event {
		props = append(props, k)
	}
	sort.Strings(props)
	ev := map[string]any{"trigger": map[string]any{"properties": props}}
	if len(c.Events) > 0 {
		ev["external"] = sortedKeys(c.Events)
	}
	return ev
}

// seededKeys are the keys the seed stage puts, for validate: those of
// Case.Clipboard, Case.ClipboardFor and Case.Pipeline.
func seededKeys(c Case) []string {
	all := map[string]bool{}
	for k := range c.Clipboard {
		all[k] = true
	}
	for k := range c.Pipeline {
		all[k] = true
	}
	for _, items := range c.ClipboardFor {
		for k := range items {
			all[k] = true
		}
	}
	return sortedKeys(all)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func numbered(text string) string {
	var b strings.Builder
	for i, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		fmt.Fprintf(&b, "%3d  %s\n", i+1, line)
	}
	return b.String()
}
