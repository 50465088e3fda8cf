package harness

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// loadText writes policy text to pipeline.yaml in a temporary directory,
// loads and validates it, and returns the error (nil when valid).
func loadText(t *testing.T, text string) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, LoadOptions{})
	return err
}

// wantOneError checks that err is bad input made of exactly one
// conf.Error whose text contains every want.
func wantOneError(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("bad policy accepted")
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("error does not match ErrInvalid: %v", err)
	}
	var errs conf.Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Errorf("want exactly one error, got:\n%v", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error\n  %v\ndoes not contain\n  %s", err, w)
		}
	}
}

const goodPolicy = `pipeline: p
slices: 2
mapper:
  type: range
  settings: {key: ccd, from: 1, to: 4}
locations:
  input: "/data/{visit}"
  output: "out/{visit}"
events:
  trigger: {topic: visits, properties: [filter]}
  external: [ephem]
stages:
  - name: read
    type: input
    settings: {files: {raw: "{input}/c{ccd}-{filter}.txt"}}
  - name: wait
    type: noop
    event: {topic: ephem, timeout: 5s, properties: [ra]}
  - name: measure
    type: exec
    settings:
      command: [echo, "{ra}", "{raw}"]
      produces: [mean]
      shared: [mean]
  - name: write
    type: output
    settings: {files: {mean: "{output}/{ccd}.json"}}
  - name: tell
    type: event
    settings: {topic: done, keys: [mean]}
`

func TestGoodPolicyValidates(t *testing.T) {
	if err := loadText(t, goodPolicy); err != nil {
		t.Fatalf("valid policy rejected:\n%v", err)
	}
}

// in_flight is 1 unless the policy says otherwise.
func TestInFlightSetting(t *testing.T) {
	for text, want := range map[string]int{goodPolicy: 1, strings.Replace(goodPolicy, "slices: 2\n", "slices: 2\nin_flight: 3\n", 1): 3} {
		path := filepath.Join(t.TempDir(), "pipeline.yaml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := Load(path, LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.InFlight != want {
			t.Errorf("InFlight = %d, want %d", p.InFlight, want)
		}
	}
}

func TestExamplePolicyValidates(t *testing.T) {
	p, err := Load("../examples/ccdproc/pipeline.yaml", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.validate(); err != nil {
		t.Fatal(err)
	}
	if p.Name != "ccdproc" || p.Slices != 2 || len(p.Stages) != 5 {
		t.Errorf("loaded %s with %d slices and %d stages", p.Name, p.Slices, len(p.Stages))
	}
}

// TestPolicyErrors checks that each kind of bad input gets one clear error
// naming the file, the line and the key.
func TestPolicyErrors(t *testing.T) {
	for _, tc := range []struct {
		name, from, to string
		want           []string // substrings of the one error line expected
	}{
		{"unknown top-level key", "slices: 2\n", "slices: 2\nslcies: 3\n",
			[]string{"pipeline.yaml:3: slcies: unknown key", `did you mean "slices"?`}},
		{"misspelt stage key", "  - name: wait\n    type: noop\n", "  - name: wait\n    type: noop\n    setings: {}\n",
			[]string{"pipeline.yaml:18: stages[1].setings: unknown key", `did you mean "settings"?`}},
		{"unknown stage setting", "timeout: 5s, properties", "timeout: 5s, propertys",
			[]string{"pipeline.yaml:18: stages[1].event.propertys: unknown key", `did you mean "properties"?`}},
		{"wrong type", "slices: 2\n", "slices: two\n",
			[]string{"pipeline.yaml:2: slices: expected a number of slices or per-data-id"}},
		{"zero slices", "slices: 2\n", "slices: 0\n", []string{"pipeline.yaml:2: slices: must be at least 1"}},
		{"bad duration", "timeout: 5s", "timeout: 5 sec", []string{"pipeline.yaml:18: stages[1].event.timeout: expected a duration"}},
		{"setting of wrong type", "produces: [mean]", "produces: {a: b}",
			[]string{"pipeline.yaml:23: stages[2].settings.produces: expected a list"}},
		{"missing required key", "pipeline: p\n", "", []string{"pipeline.yaml:1: pipeline: required key is missing"}},
		{"missing required setting", "settings: {topic: done, keys: [mean]}", "settings: {keys: [mean]}",
			[]string{"stages[4].settings.topic: required key is missing"}},
		{"unknown stage type", "type: exec", "type: exce",
			[]string{"pipeline.yaml:20: stages[2].type: unknown stage type \"exce\" (did you mean \"exec\"?)", "(have: "}},
		{"unknown mapper", "type: range", "type: rnage", []string{`pipeline.yaml:4: mapper.type: unknown mapper "rnage" (did you mean "range"?)`}},
		{"duplicate stage name", "name: write", "name: read", []string{`stages[3].name: duplicate stage name "read" (also stages[0])`}},
		{"needed key never produced", `command: [echo, "{ra}", "{raw}"]`, `command: [echo, "{ra}", "{rwa}"]`,
			[]string{`pipeline.yaml:19: stages[2]: stage "measure" needs clipboard key "rwa"`, `did you mean "raw"?`}},
		{"key produced only later", "keys: [mean]", "keys: [mean, late]",
			[]string{`stage "tell" runs on the Pipeline and needs clipboard key "late"`}},
		{"event key only on the slices", "keys: [mean]", "keys: [dataId]",
			[]string{`pipeline.yaml:28: stages[4]: stage "tell" runs on the Pipeline and needs clipboard key "dataId", which the Pipeline's clipboard never has`,
				"(it has: dataIds, filter, mean, ra, visitId)", "a data ID key is on the slices' clipboards only", "keyed by data ID"}},
		{"event key not shared", "      shared: [mean]\n", "",
			[]string{`pipeline.yaml:27: stages[4]: stage "tell" runs on the Pipeline and needs clipboard key "mean", which the Pipeline's clipboard never has`,
				`no stage shares it`}},
		{"event template of a data ID key", "keys: [mean]}", "keys: [mean], properties: {c: \"{ccd}\"}}",
			[]string{`stage "tell" runs on the Pipeline and needs clipboard key "ccd"`}},
		{"misspelt topic", "event: {topic: ephem,", "event: {topic: ephen,",
			[]string{`pipeline.yaml:18: stages[1].event.topic: waits for topic "ephen", which no stage publishes`, `did you mean "ephem"?`}},
		{"zero in flight", "slices: 2\n", "slices: 2\nin_flight: 0\n", []string{"pipeline.yaml:3: in_flight: must be at least 1"}},
		{"in flight not a number", "slices: 2\n", "slices: 2\nin_flight: many\n", []string{"pipeline.yaml:3: in_flight: expected an integer"}},
		{"bad failure rule", "slices: 2\n", "slices: 2\nfailure: {visit: some}\n",
			[]string{"failure.visit: expected any-slice, all-slices or never"}},
		{"bad redo rule", "slices: 2\n", "slices: 2\nfailure: {redo: all}\n",
			[]string{"pipeline.yaml:3: failure.redo: expected data-ids or visit, got \"all\""}},
		{"bad template", `"out/{visit}"`, `"out/{visit"`, []string{"pipeline.yaml:8: locations.output:", "never closed"}},
		{"location needs unknown key", `"out/{visit}"`, `"out/{vist}"`, []string{"pipeline.yaml:8: locations.output: uses clipboard key \"vist\""}},
		{"mapper settings", "{key: ccd, from: 1, to: 4}", "{key: ccd, from: 5, to: 4}", []string{"pipeline.yaml:5: mapper.settings.to: to (4) is less than from (5)"}},
		{"reserved topic", "external: [ephem]", "external: [dpsbatch.control]", []string{"events.external[0]: \"dpsbatch.control\" is reserved"}},
		{"not YAML", "slices: 2\n", "slices: [2\n", []string{"pipeline.yaml", "not valid YAML"}},
		// The line of the offending text, not the one before it.
		{"not YAML: a key dedented", "    type: noop\n", "   type: noop\n", []string{"pipeline.yaml:17: not valid YAML:"}},
		{"not YAML: a tab", "  external: [ephem]\n", "  external: [ephem]\n\tstages: x\n", []string{"pipeline.yaml:12: not valid YAML:"}},
		// One error for a misspelt required key, not a second one saying
		// that the key is missing.
		{"misspelt required key", "pipeline: p\n", "pipline: p\n", []string{`pipeline.yaml:1: pipline: unknown key (did you mean "pipeline"?)`}},
		{"misspelt required setting", "settings: {topic: done, keys: [mean]}", "settings: {topc: done, keys: [mean]}",
			[]string{`pipeline.yaml:30: stages[4].settings.topc: unknown key (did you mean "topic"?)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(goodPolicy, tc.from) {
				t.Fatalf("test case edits %q, which is not in the policy", tc.from)
			}
			err := loadText(t, strings.Replace(goodPolicy, tc.from, tc.to, 1))
			wantOneError(t, err, tc.want...)
		})
	}
}

// Sharing a data ID key is refused with the reason: shared values are
// keyed by data ID already.
func TestSharingADataIDKey(t *testing.T) {
	err := loadText(t, strings.Replace(goodPolicy, "shared: [mean]", "shared: [mean, ccd]", 1))
	want := `pipeline.yaml:24: stages[2].settings.shared: "ccd" is not one of the keys in produces; if it is a data ID key, it needs no sharing: shared values reach the Pipeline keyed by data ID`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error\n  %v\ndoes not contain\n  %s", err, want)
	}
}

// An error a stage's constructor raises about one of its settings is
// placed at that setting's line (the list item, the mapping value), not at
// the stage's.
func TestStageSettingErrorLines(t *testing.T) {
	for _, tc := range []struct {
		name, from, to string
		want           string // the first error line
	}{
		{"list item", `command: [echo, "{ra}", "{raw}"]`, `command: [echo, "{ra}", "{raw"]`,
			`pipeline.yaml:22: stages[2].settings.command[2]: template "{raw": '{' at offset 0 is never closed`},
		{"key on its own line", "      produces: [mean]\n", "      produces: [mean]\n      timeout: 0s\n",
			`pipeline.yaml:24: stages[2].settings.timeout: timeout must be positive`},
		{"list item on its own line", `command: [echo, "{ra}", "{raw}"]`, "command:\n        - echo\n        - \"{ra}\"\n        - \"{raw\"",
			`pipeline.yaml:25: stages[2].settings.command[2]: template "{raw"`},
		{"mapping value", `settings: {files: {mean: "{output}/{ccd}.json"}}`, "settings:\n      files:\n        mean: \"{output}/{ccd.json\"",
			`pipeline.yaml:29: stages[3].settings.files.mean: template`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(goodPolicy, tc.from) {
				t.Fatalf("test case edits %q, which is not in the policy", tc.from)
			}
			err := loadText(t, strings.Replace(goodPolicy, tc.from, tc.to, 1))
			var errs conf.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error = %v, want conf.Errors", err)
			}
			if first := errs[0].Error(); !strings.Contains(first, tc.want) {
				t.Errorf("first error\n  %s\ndoes not contain\n  %s", first, tc.want)
			}
		})
	}
}

func TestPolicyReportsEveryProblem(t *testing.T) {
	bad := strings.NewReplacer("slices: 2", "slices: -1", "type: exec", "type: exce", "name: write", "name: read").Replace(goodPolicy)
	err := loadText(t, bad)
	var errs conf.Errors
	if !errors.As(err, &errs) || len(errs) != 3 {
		t.Fatalf("want 3 errors, got:\n%v", err)
	}
	// In file order.
	for i, w := range []string{"slices", "stages[2].type", "stages[3].name"} {
		if errs[i].Path != w {
			t.Errorf("error %d is at %q, want %q", i, errs[i].Path, w)
		}
	}
}

func TestPerDataIDSlices(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(path, []byte(strings.Replace(goodPolicy, "slices: 2", "slices: per-data-id", 1)), 0o644)
	p, err := Load(path, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := p.SliceCount(); err != nil || n != 4 {
		t.Errorf("SliceCount = %d, %v; want 4", n, err)
	}
	os.WriteFile(path, []byte(strings.NewReplacer("slices: 2", "slices: per-data-id",
		"type: range\n  settings: {key: ccd, from: 1, to: 4}", "type: rank\n  settings: {key: ccd}").Replace(goodPolicy)), 0o644)
	if _, err := Load(path, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "per-data-id needs a mapper with a fixed list of data IDs") {
		t.Errorf("rank mapper with per-data-id: %v", err)
	}
}

// Loading validates: a policy whose sections parse but whose stages do not
// fit together is refused by Load with the validation error, unless asked
// not to validate; the options apply before validating.
func TestLoadValidates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	bad := goodPolicy + "  - {name: late, type: noop, event: {topic: nobody.sends.this, timeout: 5s}}\n"
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(path, LoadOptions{NoValidate: true})
	if err != nil {
		t.Fatalf("Load without validating: %v", err)
	}
	want := p.validate()
	if want == nil {
		t.Fatal("the test policy is valid; it must not be")
	}
	_, err = Load(path, LoadOptions{})
	if !errors.Is(err, ErrInvalid) || err.Error() != want.Error() {
		t.Fatalf("Load = %v; want the validation error %v", err, want)
	}
	checked := ""
	_, err = Load(path, LoadOptions{Name: "renamed", PipelineDir: "/elsewhere", Check: func(p *Policy) error {
		checked = p.Name + " " + p.Dir
		return errors.New("refused")
	}})
	if err == nil || err.Error() != "refused" || checked != "renamed /elsewhere" {
		t.Errorf("Check saw %q and Load returned %v; want the renamed policy refused", checked, err)
	}
}

// Data ID values that a mapper's settings define go into paths and
// command lines like visit IDs: one that could leave the run directory or
// read as an option is refused at its line of the policy.
func TestMapperDataIDValuesRefused(t *testing.T) {
	for _, tc := range []struct {
		name, mapper string
		want         string
	}{
		{"list", "mapper:\n  type: list\n  settings:\n    ids:\n      - {ccd: 1}\n      - {ccd: ../../etc}\n",
			`pipeline.yaml:8: mapper.settings.ids[1].ccd: data ID value "../../etc" contains '/'`},
		{"list, value on its own line", "mapper:\n  type: list\n  settings:\n    ids:\n      - ccd: 1\n      - raft: 2\n        ccd: -rf\n",
			`pipeline.yaml:9: mapper.settings.ids[1].ccd: data ID value "-rf" starts with '-'`},
		{"list, dots", "mapper:\n  type: list\n  settings:\n    ids: [{ccd: ..}]\n",
			`pipeline.yaml:6: mapper.settings.ids[0].ccd: data ID value ".." is ".."`},
		{"host table", "mapper:\n  type: host-table\n  settings:\n    hosts:\n      - host: 'n*'\n        ids: [{ccd: 1}, {ccd: \"a/b\"}]\n",
			`pipeline.yaml:8: mapper.settings.hosts[0].ids[1].ccd: data ID value "a/b" contains '/'`},
		{"cpu-weighted list", "mapper:\n  type: cpu-weighted\n  settings:\n    ids:\n      - {ccd: \"x\\u0000\"}\n",
			`pipeline.yaml:7: mapper.settings.ids[0].ccd: data ID value "x\x00" contains the control character U+0000`},
		{"range format", "mapper:\n  type: range\n  settings:\n    key: ccd\n    from: 1\n    to: 4\n    format: ../%d\n",
			`pipeline.yaml:9: mapper.settings.format: data ID ccd="../1": the value contains '/'`},
		{"negative range", "mapper:\n  type: range\n  settings:\n    key: ccd\n    from: -2\n    to: 4\n",
			`pipeline.yaml:7: mapper.settings.from: data ID ccd="-2": the value starts with '-'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := "pipeline: p\nslices: 2\n" + tc.mapper + "stages:\n  - {name: n, type: noop}\n"
			path := filepath.Join(t.TempDir(), "pipeline.yaml")
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			p, err := Load(path, LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// A run created before the check still validates (and so
			// resumes); new input is refused.
			if err := p.validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			wantOneError(t, p.CheckDataIDValues(), tc.want)
		})
	}
}

// An event stage runs on the Pipeline: a location its templates name
// must not need a key only the slices have (a data ID key), or every
// visit would fail at run time; validate says so, naming the location.
func TestPipelineStageLocationNeeds(t *testing.T) {
	text := strings.Replace(goodPolicy, "  output: \"out/{visit}\"\n", "  output: \"out/{visit}\"\n  work: \"work/{visit}/{ccd}\"\n", 1)
	text = strings.Replace(text, "keys: [mean]}", "keys: [mean], properties: {where: \"{work}/mean.json\"}}", 1)
	err := loadText(t, text)
	want := `stage "tell" runs on the Pipeline and uses location "work" ("work/{visit}/{ccd}"), which needs clipboard key "ccd"`
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "a data ID key is on the slices' clipboards only") {
		t.Fatalf("error %v; want one containing %s", err, want)
	}
	// A location the Pipeline can expand is fine.
	ok := strings.Replace(text, "work/{visit}/{ccd}", "work/{visit}/{filter}", 1)
	if err := loadText(t, ok); err != nil {
		t.Errorf("a location of the visit and a trigger property: %v", err)
	}
}

// A misspelt shared key is told the key it may mean, not about data IDs.
func TestSharingAMisspeltKey(t *testing.T) {
	err := loadText(t, strings.Replace(goodPolicy, "shared: [mean]", "shared: [meen]", 1))
	want := `stages[2].settings.shared: "meen" is not one of the keys in produces (did you mean "mean"?)`
	if err == nil || !strings.Contains(err.Error(), want+"\n") {
		t.Errorf("error\n  %v\nwant a line ending\n  %s", err, want)
	}
}
