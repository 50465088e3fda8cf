package input

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/input/inputtest"
	"github.com/dpsbatch/dpsbatch/internal/conf"
)

func TestLoadProduction(t *testing.T) {
	dir := inputtest.Dir(t, inputtest.ChainFiles(inputtest.ChainProduction))
	prod, err := LoadProduction(filepath.Join(dir, "prod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if prod.Name != "nightly" || prod.Dir != dir || prod.File != filepath.Join(dir, "prod.yaml") {
		t.Errorf("production = %q in %q (%q)", prod.Name, prod.Dir, prod.File)
	}
	type want struct {
		name, policy, visits string
		slices, visitN, line int
		after                []string
		listening            bool
	}
	wants := []want{
		{"detect", "detect/pipeline.yaml", "detect/visits.csv", 0, 3, 3, nil, false},
		{"association", "assoc/pipeline.yaml", "", 0, 0, 5, []string{"detect"}, true},
		{"moving", "moving/pipeline.yaml", "", 4, 0, 8, []string{"association"}, true},
	}
	if len(prod.Pipelines) != len(wants) {
		t.Fatalf("%d pipelines, want %d", len(prod.Pipelines), len(wants))
	}
	for i, w := range wants {
		pp := prod.Pipelines[i]
		wantVisits := ""
		if w.visits != "" {
			wantVisits = filepath.Join(dir, w.visits)
		}
		if pp.Name != w.name || pp.PolicyPath != filepath.Join(dir, w.policy) || pp.VisitsPath != wantVisits ||
			pp.Slices != w.slices || len(pp.Visits) != w.visitN || pp.Line != w.line || !slices.Equal(pp.After, w.after) {
			t.Errorf("pipelines[%d] = %+v; want %+v", i, pp, w)
		}
		if pp.Policy == nil || pp.Policy.File != pp.PolicyPath {
			t.Errorf("pipelines[%d]: policy not loaded: %+v", i, pp.Policy)
		}
		if got := prod.Listening(pp.Name); got != w.listening {
			t.Errorf("Listening(%s) = %v, want %v", pp.Name, got, w.listening)
		}
	}
	if prod.Listening("nope") {
		t.Error("Listening(nope) = true for a pipeline not in the production")
	}
	// CheckVisits turned the CSV cells into the trigger's properties.
	if v := prod.Pipelines[0].Visits[1]; v.ID != "v2" || v.Props["filter"] != "g" {
		t.Errorf("visit 2 = %+v", v)
	}
	if got := prod.ExternalTopics(); !slices.Equal(got, []string{"calib"}) {
		t.Errorf("ExternalTopics = %q, want [calib]", got)
	}
}

// TestLoadProductionListeningExternal: a pipeline without visits or after
// is allowed when its trigger topic is external, and then is listed by
// ExternalTopics; one with visits and after listens too.
func TestLoadProductionListeningExternal(t *testing.T) {
	files := inputtest.ChainFiles(`production: p
pipelines:
  - {policy: detect/pipeline.yaml, visits: detect/visits.csv, after: [alone]}
  - {policy: alone.yaml}
`)
	files["alone.yaml"] = strings.Replace(inputtest.AssocPolicy, "events: {trigger: {topic: detected}}",
		"events: {trigger: {topic: outside}, external: [outside]}", 1)
	files["alone.yaml"] = strings.Replace(files["alone.yaml"], "pipeline: assoc", "pipeline: alone", 1)
	// detect listens (visits and after), and its trigger topic is visits:
	// external in its policy makes it valid.
	files["detect/pipeline.yaml"] = strings.Replace(inputtest.DetectPolicy, "properties: [filter]}}",
		"properties: [filter]}, external: [visits]}", 1)
	dir := inputtest.Dir(t, files)
	prod, err := LoadProduction(filepath.Join(dir, "prod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !prod.Listening("detect") || !prod.Listening("alone") {
		t.Errorf("Listening: detect %v, alone %v; want both", prod.Listening("detect"), prod.Listening("alone"))
	}
	if got := prod.ExternalTopics(); !slices.Equal(got, []string{"outside", "visits"}) {
		t.Errorf("ExternalTopics = %q, want [outside visits]", got)
	}
}

// TestLoadProductionSharedTrigger: two pipelines on one trigger topic
// are fine when their selections differ in a property both select.
func TestLoadProductionSharedTrigger(t *testing.T) {
	files := inputtest.ChainFiles(`production: p
pipelines:
  - {policy: detect/pipeline.yaml, visits: detect/visits.csv}
  - {policy: red.yaml}
  - {policy: blue.yaml}
`)
	files["red.yaml"] = strings.NewReplacer("pipeline: assoc", "pipeline: red",
		"{topic: detected}", "{topic: detected, select: {band: r, n: 1}}").Replace(inputtest.AssocPolicy)
	files["blue.yaml"] = strings.NewReplacer("pipeline: assoc", "pipeline: blue",
		"{topic: detected}", "{topic: detected, select: {band: b, n: 1}}").Replace(inputtest.AssocPolicy)
	dir := inputtest.Dir(t, files)
	if _, err := LoadProduction(filepath.Join(dir, "prod.yaml")); err != nil {
		t.Fatal(err)
	}
}

func TestLoadProductionErrors(t *testing.T) {
	withSelect := func(name, sel string) string {
		return strings.NewReplacer("pipeline: assoc", "pipeline: "+name,
			"{topic: detected}", "{topic: detected"+sel+"}").Replace(inputtest.AssocPolicy)
	}
	for _, c := range []struct {
		name  string
		prod  string
		extra map[string]string // more files, or "" to remove one
		want  []string          // each must appear in the error
	}{
		{name: "unknown key", prod: "production: p\npipelines:\n  - {policy: assoc/pipeline.yaml, visit: x.csv}\n",
			want: []string{`prod.yaml:3: pipelines[0].visit: unknown key (did you mean "visits"?)`}},
		{name: "unknown top key", prod: "production: p\npipeline:\n  - {policy: assoc/pipeline.yaml}\n",
			want: []string{`prod.yaml:2: pipeline: unknown key (did you mean "pipelines"?)`}},
		{name: "missing production", prod: "pipelines:\n  - {policy: assoc/pipeline.yaml}\n",
			want: []string{`prod.yaml:1: production: required key is missing`}},
		{name: "bad production name", prod: "production: my run\npipelines:\n  - {policy: detect/pipeline.yaml, visits: detect/visits.csv}\n",
			want: []string{`prod.yaml:1: production: "my run" is not a run name`}},
		{name: "no pipelines", prod: "production: p\npipelines: []\n",
			want: []string{`prod.yaml:2: pipelines: a production needs at least one pipeline`}},
		{name: "pipelines not a list", prod: "production: p\npipelines: {policy: x}\n",
			want: []string{`prod.yaml:2: pipelines: expected a list, got a mapping`}},
		{name: "item not a mapping", prod: "production: p\npipelines:\n  - detect/pipeline.yaml\n",
			want: []string{`prod.yaml:3: pipelines[0]: expected a mapping`}},
		{name: "no policy", prod: "production: p\npipelines:\n  - {visits: detect/visits.csv}\n",
			want: []string{`prod.yaml:3: pipelines[0].policy: required key is missing`}},
		{name: "policy missing", prod: "production: p\npipelines:\n  - policy: nope.yaml\n",
			want: []string{`prod.yaml:3: pipelines[0].policy: no such policy file: `, `nope.yaml`}},
		{name: "policy a folder", prod: "production: p\npipelines:\n  - policy: detect\n",
			want: []string{`prod.yaml:3: pipelines[0].policy: `, `is a folder, expected a policy file`}},
		{name: "policy invalid", prod: "production: p\npipelines:\n  - {policy: bad.yaml, visits: detect/visits.csv}\n",
			extra: map[string]string{"bad.yaml": "pipeline: bad\nslices: 2\nmapper: {type: rang}\nstages:\n  - {name: w, type: noop}\n"},
			want:  []string{`bad.yaml:3: mapper.type: unknown mapper "rang" (did you mean`}},
		{name: "policy fails Validate", prod: "production: p\npipelines:\n  - {policy: bad.yaml, visits: detect/visits.csv}\n",
			extra: map[string]string{"bad.yaml": "pipeline: bad\nslices: 2\nmapper: {type: range, settings: {key: ccd, from: 1, to: 2}}\nstages:\n  - {name: w, type: noop, event: {topic: nowhere}}\n"},
			want:  []string{`bad.yaml:5: stages[0].event.topic: waits for topic "nowhere"`}},
		{name: "visits missing", prod: "production: p\npipelines:\n  - {policy: detect/pipeline.yaml, visits: none.csv}\n",
			want: []string{`prod.yaml:3: pipelines[0].visits: no such visit list file: `}},
		{name: "visits lack a property", prod: "production: p\npipelines:\n  - {policy: detect/pipeline.yaml, visits: v.csv}\n",
			extra: map[string]string{"v.csv": "visitId\nv1\n"},
			want:  []string{`v.csv:2: visit "v1" has no property "filter"`}},
		{name: "visits empty", prod: "production: p\npipelines:\n  - {policy: detect/pipeline.yaml, visits: v.csv}\n",
			extra: map[string]string{"v.csv": "visitId,filter\n"},
			want:  []string{`v.csv: no visits`}},
		{name: "slices zero", prod: "production: p\npipelines:\n  - {policy: detect/pipeline.yaml, visits: detect/visits.csv, slices: 0}\n",
			want: []string{`prod.yaml:3: pipelines[0].slices: must be at least 1, got 0`}},
		{name: "slices not a number", prod: "production: p\npipelines:\n  - {policy: detect/pipeline.yaml, visits: detect/visits.csv, slices: many}\n",
			want: []string{`prod.yaml:3: pipelines[0].slices: expected an integer, got "many"`}},
		{name: "bad name", prod: "production: p\npipelines:\n  - {policy: detect/pipeline.yaml, visits: detect/visits.csv, name: a/b}\n",
			want: []string{`prod.yaml:3: pipelines[0].name: "a/b" is not a pipeline name here`}},
		{name: "duplicate names", prod: "production: p\npipelines:\n  - {policy: detect/pipeline.yaml, visits: detect/visits.csv}\n  - {policy: detect/pipeline.yaml, visits: detect/visits.csv}\n",
			want: []string{`prod.yaml:4: pipelines[1].name: duplicate pipeline name "detect" (also pipelines[0]) (the policy's pipeline name: set name to tell them apart)`}},
		{name: "after unknown", prod: "production: p\npipelines:\n  - {policy: detect/pipeline.yaml, visits: detect/visits.csv}\n  - policy: assoc/pipeline.yaml\n    after: [detct]\n",
			want: []string{`prod.yaml:5: pipelines[1].after[0]: no pipeline "detct" in the production (did you mean "detect"?) (have: assoc, detect)`}},
		{name: "after itself", prod: "production: p\npipelines:\n  - {policy: detect/pipeline.yaml, visits: detect/visits.csv}\n  - policy: assoc/pipeline.yaml\n    after: [detect, assoc]\n",
			want: []string{`prod.yaml:5: pipelines[1].after[1]: pipeline "assoc" cannot run after itself`}},
		{name: "after twice", prod: "production: p\npipelines:\n  - {policy: detect/pipeline.yaml, visits: detect/visits.csv}\n  - policy: assoc/pipeline.yaml\n    after: [detect, detect]\n",
			want: []string{`prod.yaml:5: pipelines[1].after[1]: "detect" is listed twice`}},
		{name: "cycle", prod: `production: p
pipelines:
  - {policy: detect/pipeline.yaml, visits: detect/visits.csv, after: moving}
  - {policy: assoc/pipeline.yaml, after: detect}
  - {policy: moving/pipeline.yaml, after: assoc}
`, extra: map[string]string{"detect/pipeline.yaml": strings.Replace(inputtest.DetectPolicy, "properties: [filter]}}", "properties: [filter]}, external: [visits]}", 1)},
			want: []string{`prod.yaml:3: pipelines[0].after: a cycle: detect after moving after assoc after detect`}},
		{name: "listener without publisher", prod: "production: p\npipelines:\n  - {policy: detect/pipeline.yaml, visits: detect/visits.csv}\n  - {policy: other.yaml}\n",
			extra: map[string]string{"other.yaml": strings.Replace(inputtest.AssocPolicy, "{topic: detected}", "{topic: detectd}", 1)},
			want: []string{`prod.yaml:4: pipelines[1]: pipeline "assoc" listens for trigger events (it has no visit list) on topic "detectd", which no other pipeline of the production publishes and `,
				`other.yaml does not declare in events.external (did you mean "detected"?) (the production's event stages publish: associated, detected)`}},
		{name: "listener after, no publisher", prod: "production: p\npipelines:\n  - {policy: detect/pipeline.yaml, visits: detect/visits.csv}\n  - {policy: moving/pipeline.yaml, after: detect}\n",
			want: []string{`prod.yaml:4: pipelines[1]: pipeline "moving" listens for trigger events (it runs after detect) on topic "associated"`,
				`(the production's event stages publish: detected)`}},
		{name: "listener publishing its own trigger", prod: "production: p\npipelines:\n  - {policy: self.yaml}\n",
			extra: map[string]string{"self.yaml": strings.Replace(inputtest.AssocPolicy, "topic: associated", "topic: detected", 1)},
			want:  []string{`prod.yaml:3: pipelines[0]: pipeline "assoc" listens for trigger events (it has no visit list) on topic "detected", which no other pipeline of the production publishes (its own event stage publishes it, but a pipeline cannot trigger itself) and self.yaml does not declare in events.external (the production's event stages publish: detected)`}},
		{name: "shared trigger, no select", prod: "production: p\npipelines:\n  - {policy: detect/pipeline.yaml, visits: detect/visits.csv}\n  - {policy: a.yaml}\n  - {policy: b.yaml}\n",
			extra: map[string]string{"a.yaml": withSelect("a", ", select: {band: r}"), "b.yaml": withSelect("b", "")},
			want:  []string{`prod.yaml:5: pipelines[2]: pipelines "b" and "a" (pipelines[1]) share the trigger topic "detected" in one run, so each would take the other's triggers: give each policy an events.trigger.select`}},
		{name: "shared trigger, same select", prod: "production: p\npipelines:\n  - {policy: detect/pipeline.yaml, visits: detect/visits.csv}\n  - {policy: a.yaml}\n  - {policy: b.yaml}\n",
			extra: map[string]string{"a.yaml": withSelect("a", ", select: {band: r, n: 1}"), "b.yaml": withSelect("b", ", select: {band: r, n: \"1\"}")},
			want:  []string{`pipelines[2]: pipelines "b" and "a" (pipelines[1]) share the trigger topic "detected"`, `their events.trigger.select give the same values to band, n; select different values`}},
		{name: "shared trigger, disjoint select", prod: "production: p\npipelines:\n  - {policy: detect/pipeline.yaml, visits: detect/visits.csv}\n  - {policy: a.yaml}\n  - {policy: b.yaml}\n",
			extra: map[string]string{"a.yaml": withSelect("a", ", select: {band: r}"), "b.yaml": withSelect("b", ", select: {ccd: 1}")},
			want:  []string{`their events.trigger.select name no property in common`}},
		{name: "every problem at once", prod: "production: p q\npipelines:\n  - {policy: detect/pipeline.yaml, visits: detect/visits.csv, slices: -1}\n  - {policy: nope.yaml, after: [x]}\n  - {polcy: a}\n",
			want: []string{`prod.yaml:1: production:`, `prod.yaml:3: pipelines[0].slices:`, `prod.yaml:4: pipelines[1].policy: no such policy file`,
				`prod.yaml:4: pipelines[1].after[0]: no pipeline "x"`, `prod.yaml:5: pipelines[2].polcy: unknown key (did you mean "policy"?)`}},
		{name: "not YAML", prod: "production: [\n", want: []string{`prod.yaml:`, `not valid YAML`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			files := inputtest.ChainFiles(c.prod)
			for k, v := range c.extra {
				files[k] = v
			}
			dir := inputtest.Dir(t, files)
			prod, err := LoadProduction(filepath.Join(dir, "prod.yaml"))
			if c.want == nil {
				if err != nil {
					t.Fatalf("LoadProduction: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadProduction = %+v, nil; want an error", prod)
			}
			if !errors.Is(err, conf.ErrInvalid) {
				t.Errorf("error does not match conf.ErrInvalid: %v", err)
			}
			msg := strings.ReplaceAll(err.Error(), dir+string(os.PathSeparator), "")
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error\n%s\ndoes not say\n%s", msg, w)
				}
			}
			if prod != nil {
				t.Errorf("LoadProduction returned a production with its error")
			}
		})
	}
}

func TestLoadProductionUnreadable(t *testing.T) {
	_, err := LoadProduction(filepath.Join(t.TempDir(), "missing.yaml"))
	inputtest.WantInvalid(t, "missing file", err, "missing.yaml")
}

func TestIsProduction(t *testing.T) {
	dir := inputtest.Dir(t, map[string]string{
		"prod.yaml":    "# a production\nproduction: p\npipelines: []\n",
		"policy.yaml":  inputtest.TinyPolicy,
		"both.yaml":    "production: p\npipeline: q\n",
		"neither.yaml": "stages: []\npipline: x\n",
		"list.yaml":    "- production\n",
		"bad.yaml":     "production: [\n",
		"empty.yaml":   "",
	})
	for _, c := range []struct {
		file string
		want bool
		err  string
	}{
		{"prod.yaml", true, ""},
		{"policy.yaml", false, ""},
		{"both.yaml", false, "both.yaml:2: has both the key production (line 1) and the key pipeline"},
		{"neither.yaml", false, `neither.yaml:1: neither a pipeline policy (key pipeline) nor a production (key production); key "pipline" (did you mean "pipeline"?)`},
		{"list.yaml", false, "list.yaml:1: expected a pipeline policy (a mapping with the key pipeline) or a production"},
		{"bad.yaml", false, "bad.yaml:"},
		{"empty.yaml", false, "empty.yaml: the file is empty"},
		{"missing.yaml", false, "missing.yaml"},
	} {
		got, err := IsProduction(filepath.Join(dir, c.file))
		if c.err == "" {
			if err != nil || got != c.want {
				t.Errorf("IsProduction(%s) = %v, %v; want %v", c.file, got, err, c.want)
			}
			continue
		}
		if got {
			t.Errorf("IsProduction(%s) = true with error %v", c.file, err)
		}
		inputtest.WantInvalid(t, c.file, err, c.err)
	}
}

// ExternalNote names the topics read from outside the production, and
// suggests a published one with a close name.
func TestProductionExternalNote(t *testing.T) {
	dir := inputtest.Dir(t, inputtest.ChainFiles(inputtest.ChainProduction))
	prod, err := LoadProduction(filepath.Join(dir, "prod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := prod.ExternalNote(); !strings.HasSuffix(got, "another program): calib") {
		t.Errorf("note %q; want it to end naming calib alone", got)
	}
	files := inputtest.ChainFiles(inputtest.ChainProduction)
	files["moving/pipeline.yaml"] = strings.ReplaceAll(inputtest.MovingPolicy, "calib", "detectd")
	dir = inputtest.Dir(t, files)
	if prod, err = LoadProduction(filepath.Join(dir, "prod.yaml")); err != nil {
		t.Fatal(err)
	}
	if got := prod.ExternalNote(); !strings.Contains(got, `detectd (did you mean "detected", which detect publishes?)`) {
		t.Errorf("note %q; want a suggestion of detected", got)
	}
	files["moving/pipeline.yaml"] = strings.Replace(inputtest.MovingPolicy, "    event: {topic: calib}\n", "", 1)
	files["moving/pipeline.yaml"] = strings.Replace(files["moving/pipeline.yaml"], "  external: [calib]\n", "", 1)
	dir = inputtest.Dir(t, files)
	if prod, err = LoadProduction(filepath.Join(dir, "prod.yaml")); err != nil {
		t.Fatal(err)
	}
	if got := prod.ExternalNote(); got != "" {
		t.Errorf("note %q with no external topic; want none", got)
	}
}
