package conf_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"gopkg.in/yaml.v3"
)

// specs is the declared settings most tests decode against.
var specs = []conf.Setting{
	{Key: "name", Kind: conf.String, Required: true, Doc: "a name"},
	{Key: "count", Kind: conf.Int, Default: 3, Doc: "how many"},
	{Key: "ratio", Kind: conf.Float, Default: 0.5, Doc: "a fraction"},
	{Key: "verbose", Kind: conf.Bool, Default: false, Doc: "talk more"},
	{Key: "timeout", Kind: conf.Duration, Default: time.Minute, Doc: "how long"},
	{Key: "files", Kind: conf.Strings, Doc: "file names"},
	{Key: "env", Kind: conf.StringMap, Doc: "environment"},
	{Key: "extra", Kind: conf.Any, Doc: "anything"},
}

// decodeSettings parses src as the file p.yaml and decodes its root mapping
// against specs at path "settings".
func decodeSettings(t *testing.T, src string) (conf.Values, conf.Errors) {
	t.Helper()
	d := &conf.Decoder{File: "p.yaml"}
	n, err := d.Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	v := d.Settings(n, "settings", specs)
	return v, d.Errs
}

func TestSettingsErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // every error, in order, exactly
	}{
		{
			name: "unknown key with suggestion",
			src:  "name: a\ntmeout: 5s\n",
			want: []string{`p.yaml:2: settings.tmeout: unknown key (did you mean "timeout"?); expected one of: count, env, extra, files, name, ratio, timeout, verbose`},
		},
		{
			name: "unknown key without suggestion",
			src:  "name: a\nzzzzzzzz: 1\n",
			want: []string{`p.yaml:2: settings.zzzzzzzz: unknown key; expected one of: count, env, extra, files, name, ratio, timeout, verbose`},
		},
		{
			name: "duplicate key",
			src:  "name: a\ncount: 1\nname: b\n",
			want: []string{`p.yaml:3: settings.name: duplicate key`},
		},
		{
			// The misspelling is the one error: the key it stands for
			// is not reported missing as well.
			name: "misspelt required key",
			src:  "nmae: a\n",
			want: []string{`p.yaml:1: settings.nmae: unknown key (did you mean "name"?); expected one of: count, env, extra, files, name, ratio, timeout, verbose`},
		},
		{
			name: "missing required key",
			src:  "count: 1\n",
			want: []string{`p.yaml:1: settings.name: required key is missing`},
		},
		{
			name: "int given a quoted string",
			src:  "name: a\ncount: \"3\"\n",
			want: []string{`p.yaml:2: settings.count: expected an integer, got "3"`},
		},
		{
			name: "int given a float",
			src:  "name: a\ncount: 3.5\n",
			want: []string{`p.yaml:2: settings.count: expected an integer, got "3.5"`},
		},
		{
			name: "int given a list",
			src:  "name: a\ncount: [1, 2]\n",
			want: []string{`p.yaml:2: settings.count: expected an integer, got a list`},
		},
		{
			name: "float given a word",
			src:  "name: a\nratio: half\n",
			want: []string{`p.yaml:2: settings.ratio: expected a number, got "half"`},
		},
		{
			name: "bool given yes",
			src:  "name: a\nverbose: yes\n",
			want: []string{`p.yaml:2: settings.verbose: expected true or false, got "yes"`},
		},
		{
			name: "bool given a number",
			src:  "name: a\nverbose: 1\n",
			want: []string{`p.yaml:2: settings.verbose: expected true or false, got "1"`},
		},
		{
			name: "duration without unit",
			src:  "name: a\ntimeout: 5\n",
			want: []string{`p.yaml:2: settings.timeout: expected a duration such as 30s or 5m, got "5"`},
		},
		{
			name: "negative duration",
			src:  "name: a\ntimeout: -5s\n",
			want: []string{`p.yaml:2: settings.timeout: must not be negative`},
		},
		{
			name: "duration given a mapping",
			src:  "name: a\ntimeout: {s: 5}\n",
			want: []string{`p.yaml:2: settings.timeout: expected a duration such as 30s or 5m, got a mapping`},
		},
		{
			name: "list of strings given a mapping",
			src:  "name: a\nfiles: {a: b}\n",
			want: []string{`p.yaml:2: settings.files: expected a list, got a mapping`},
		},
		{
			name: "list of strings with a nested item",
			src:  "name: a\nfiles:\n  - a.fits\n  - [b, c]\n",
			want: []string{`p.yaml:4: settings.files[1]: expected a string, got a list`},
		},
		{
			name: "map of strings given a list",
			src:  "name: a\nenv: [A, B]\n",
			want: []string{`p.yaml:2: settings.env: expected a mapping of keys to values, got a list`},
		},
		{
			name: "map of strings with a nested value",
			src:  "name: a\nenv:\n  A: x\n  B: {c: d}\n",
			want: []string{`p.yaml:4: settings.env.B: expected a string, got a mapping`},
		},
		{
			name: "map of strings with a duplicate key",
			src:  "name: a\nenv:\n  A: x\n  A: y\n",
			want: []string{`p.yaml:4: settings.env.A: duplicate key`},
		},
		{
			name: "string given nothing",
			src:  "name:\n",
			want: []string{`p.yaml:1: settings.name: expected a string, got nothing`},
		},
		{
			name: "root is not a mapping",
			src:  "- a\n- b\n",
			want: []string{`p.yaml:1: settings: expected a mapping of keys to values, got a list`},
		},
		{
			name: "every problem reported, in file order",
			src:  "count: x\nverbose: maybe\nbogus: 1\ntimeout: 1y\nfiles: {}\n",
			want: []string{
				`p.yaml:1: settings.count: expected an integer, got "x"`,
				`p.yaml:2: settings.verbose: expected true or false, got "maybe"`,
				`p.yaml:3: settings.bogus: unknown key; expected one of: count, env, extra, files, name, ratio, timeout, verbose`,
				`p.yaml:4: settings.timeout: expected a duration such as 30s or 5m, got "1y"`,
				`p.yaml:5: settings.files: expected a list, got a mapping`,
				`p.yaml:1: settings.name: required key is missing`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := decodeSettings(t, tt.src)
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tt.want)
			}
			err := errs.Err()
			if err == nil {
				t.Fatal("Err() = nil, want an error")
			}
			if !errors.Is(err, conf.ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
			}
			if want := strings.Join(tt.want, "\n"); err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
		})
	}
}

func TestSettingsValues(t *testing.T) {
	src := `name: ccd
count: 7
ratio: 2
verbose: true
timeout: 1h30m
files: [a.fits, b.fits]
env:
  ZED: last-alphabetically
  ALPHA: "1"
  MID: 2
extra: {x: [1, 2]}
`
	v, errs := decodeSettings(t, src)
	if len(errs) > 0 {
		t.Fatalf("unexpected errors: %v", errs)
	}
	if got := v.String("name"); got != "ccd" {
		t.Errorf("name = %q", got)
	}
	if got := v.Int("count"); got != 7 {
		t.Errorf("count = %d", got)
	}
	if got := v.Float("ratio"); got != 2 {
		t.Errorf("ratio = %v", got)
	}
	if got := v.Bool("verbose"); !got {
		t.Errorf("verbose = %v", got)
	}
	if got := v.Duration("timeout"); got != 90*time.Minute {
		t.Errorf("timeout = %v", got)
	}
	if got := v.Strings("files"); !reflect.DeepEqual(got, []string{"a.fits", "b.fits"}) {
		t.Errorf("files = %q", got)
	}
	wantEnv := []conf.Pair{{"ZED", "last-alphabetically"}, {"ALPHA", "1"}, {"MID", "2"}}
	if got := v.Pairs("env"); !reflect.DeepEqual(got, wantEnv) {
		t.Errorf("env = %q, want file order %q", got, wantEnv)
	}
	wantExtra := map[string]any{"x": []any{1, 2}}
	if got := v.Raw("extra"); !reflect.DeepEqual(got, wantExtra) {
		t.Errorf("extra = %#v, want %#v", got, wantExtra)
	}
	for _, k := range []string{"name", "count", "ratio", "verbose", "timeout", "files", "env", "extra"} {
		if !v.Has(k) {
			t.Errorf("Has(%q) = false for a given key", k)
		}
	}
}

func TestSettingsDefaults(t *testing.T) {
	v, errs := decodeSettings(t, "name: x\n")
	if len(errs) > 0 {
		t.Fatalf("unexpected errors: %v", errs)
	}
	if got := v.Int("count"); got != 3 {
		t.Errorf("count = %d, want default 3", got)
	}
	if got := v.Float("ratio"); got != 0.5 {
		t.Errorf("ratio = %v, want default 0.5", got)
	}
	if got := v.Duration("timeout"); got != time.Minute {
		t.Errorf("timeout = %v, want default 1m", got)
	}
	if v.Has("count") || v.Has("timeout") {
		t.Error("Has reports a defaulted key as given")
	}
	if !v.Has("name") {
		t.Error("Has(name) = false for a given key")
	}
	if got := v.Strings("files"); got != nil {
		t.Errorf("files = %q, want nil (no default)", got)
	}
	if got := v.Int("undeclared"); got != 0 {
		t.Errorf("Int(undeclared) = %d, want 0", got)
	}
	// A key given with a wrong type keeps its default.
	v, errs = decodeSettings(t, "name: x\ncount: many\n")
	if len(errs) != 1 {
		t.Fatalf("errors = %v, want one", errs)
	}
	if got := v.Int("count"); got != 3 {
		t.Errorf("count after a bad value = %d, want the default 3", got)
	}
}

func TestSettingsNilAndNull(t *testing.T) {
	specs := []conf.Setting{
		{Key: "key", Kind: conf.String, Required: true},
		{Key: "step", Kind: conf.Int, Default: 1},
	}
	// No settings section at all.
	d := &conf.Decoder{File: "p.yaml"}
	v := d.Settings(nil, "mapper.settings", specs)
	if got, want := d.Errs.Error(), "p.yaml: mapper.settings.key: required key is missing"; got != want {
		t.Errorf("nil node: got %q, want %q", got, want)
	}
	if v.Int("step") != 1 {
		t.Errorf("nil node: step = %d, want default 1", v.Int("step"))
	}
	// A settings key with nothing after it.
	d = &conf.Decoder{File: "p.yaml"}
	root, err := d.Parse([]byte("mapper:\n  settings:\n"))
	if err != nil {
		t.Fatal(err)
	}
	null := root.Content[1].Content[1]
	d.Settings(null, "mapper.settings", specs)
	if got, want := d.Errs.Error(), "p.yaml:2: mapper.settings.key: required key is missing"; got != want {
		t.Errorf("null node: got %q, want %q", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"empty", "", "p.yaml: the file is empty"},
		{"only comments", "# nothing here\n\n", "p.yaml: the file is empty"},
		{"bad indentation", "a: 1\nb: c: d\n", "p.yaml:2: not valid YAML: mapping values are not allowed in this context"},
		{"tab", "a: 1\nb:\n\t- x\n", "p.yaml:3: not valid YAML: found character that cannot start any token"},
		// yaml.v3 itself names the line before the offending one (or
		// none for the first line) in each of these.
		{"list item among keys", "a: 1\nb: 2\n- c\nd: 4\n", "p.yaml:3: not valid YAML: did not find expected key"},
		{"item dedented out of its list", "a: 1\nb:\n  - x\n - y\nd: 4\n", "p.yaml:4: not valid YAML: did not find expected key"},
		{"tab after a scalar", "a: 1\nb: 2\nc: 3\n\td: 4\n", "p.yaml:4: not valid YAML: found a tab character that violates indentation"},
		{"error on the first line", "- a\nb: 2\n", "p.yaml:2: not valid YAML: did not find expected '-' indicator"},
		{"first line", "a: [\n", "p.yaml:1: not valid YAML: did not find expected node content"},
		{"deep in a stage list", "pipeline: p\nstages:\n  - name: a\n    type: b\n  - name: c\n   type: d\n", "p.yaml:6: not valid YAML: did not find expected '-' indicator"},
		{"unclosed flow list", "a: 1\nb: 2\nc: [1, 2\nd: 4\n", "p.yaml:3: not valid YAML: did not find expected ',' or ']'"},
		{"unknown alias", "a: 1\nb: 2\nc: *nope\n", "p.yaml:3: not valid YAML: unknown anchor 'nope' referenced"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &conf.Decoder{File: "p.yaml"}
			n, err := d.Parse([]byte(tt.src))
			if err == nil {
				t.Fatalf("Parse = %v, nil; want an error", n)
			}
			if err.Error() != tt.want {
				t.Errorf("error = %q, want %q", err.Error(), tt.want)
			}
			if !errors.Is(err, conf.ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			var es conf.Errors
			if !errors.As(err, &es) || len(es) != 1 {
				t.Errorf("error %T is not a conf.Errors of one", err)
			}
		})
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(path, []byte("partitions:\n  cpu: {nodes: 4}\n  cpu: {nodes: 5}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, n, err := conf.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n.Kind != yaml.MappingNode {
		t.Fatalf("root kind = %v, want a mapping (not the document node)", n.Kind)
	}
	d.Map(n, "", map[string]conf.Field{
		"partitions": {Required: true, Decode: func(n *yaml.Node, path string) { d.Pairs(n, path) }},
		"accounts":   {Required: true},
	})
	want := path + ":3: partitions.cpu: duplicate key\n" + path + ":1: accounts: required key is missing"
	if got := d.Errs.Error(); got != want {
		t.Errorf("errors:\n got %q\nwant %q", got, want)
	}
	d.Errs.Sort()
	want = path + ":1: accounts: required key is missing\n" + path + ":3: partitions.cpu: duplicate key"
	if got := d.Errs.Error(); got != want {
		t.Errorf("sorted errors:\n got %q\nwant %q", got, want)
	}

	if _, _, err := conf.ReadFile(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadFile(missing) = %v, want ErrNotExist", err)
	}
	empty := filepath.Join(dir, "empty.yaml")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := conf.ReadFile(empty); err == nil || err.Error() != empty+": the file is empty" {
		t.Errorf("ReadFile(empty) = %v", err)
	}
}

// A mapping given through a YAML alias is decoded like the mapping itself.
func TestSettingsThroughAlias(t *testing.T) {
	src := "defaults: &d\n  name: shared\n  count: 9\nsettings: *d\n"
	d := &conf.Decoder{File: "p.yaml"}
	root, err := d.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var v conf.Values
	d.Map(root, "", map[string]conf.Field{
		"defaults": {},
		"settings": {Decode: func(n *yaml.Node, path string) { v = d.Settings(n, path, specs) }},
	})
	if len(d.Errs) > 0 {
		t.Errorf("unexpected errors: %v", d.Errs)
	}
	if v.String("name") != "shared" || v.Int("count") != 9 {
		t.Errorf("name, count = %q, %d; want shared, 9", v.String("name"), v.Int("count"))
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    conf.Error
		want string
	}{
		{conf.Error{File: "f.yaml", Line: 12, Path: "stages[2].event.topic", Msg: "bad"}, "f.yaml:12: stages[2].event.topic: bad"},
		{conf.Error{File: "f.yaml", Path: "a", Msg: "bad"}, "f.yaml: a: bad"},
		{conf.Error{Line: 3, Path: "a", Msg: "bad"}, "a: bad"},
		{conf.Error{Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	if err := (conf.Errors{}).Err(); err != nil {
		t.Errorf("empty Errors.Err() = %v, want nil", err)
	}
	if err := conf.Errors(nil).Err(); err != nil {
		t.Errorf("nil Errors.Err() = %v, want nil", err)
	}
	if got, want := conf.Join("", "a"), "a"; got != want {
		t.Errorf("Join = %q, want %q", got, want)
	}
	if got, want := conf.Join("stages[2]", "event"), "stages[2].event"; got != want {
		t.Errorf("Join = %q, want %q", got, want)
	}
	if got, want := conf.Index("stages", 2), "stages[2]"; got != want {
		t.Errorf("Index = %q, want %q", got, want)
	}
}

func TestSuggest(t *testing.T) {
	have := []string{"range", "rank", "list", "timeout"}
	tests := []struct{ got, want string }{
		{"rnage", ` (did you mean "range"?)`},
		{"tmeout", ` (did you mean "timeout"?)`},
		{"RANK", ` (did you mean "rank"?)`},
		{"lst", ` (did you mean "list"?)`},
		{"ragne", ` (did you mean "range"?)`},
		{"rnak", ` (did you mean "rank"?)`},
		{"ran", ` (did you mean "rank"?)`},
		{"tract", ""},
		{"zzzzzz", ""},
	}
	for _, tt := range tests {
		if got := conf.Suggest(tt.got, have); got != tt.want {
			t.Errorf("Suggest(%q) = %q, want %q", tt.got, got, tt.want)
		}
	}
	if got := conf.Suggest("x", nil); got != "" {
		t.Errorf("Suggest with nothing to suggest = %q", got)
	}
}

func TestHave(t *testing.T) {
	in := []string{"rank", "list", "range"}
	if got, want := conf.Have(in), "(have: list, range, rank)"; got != want {
		t.Errorf("Have = %q, want %q", got, want)
	}
	if !reflect.DeepEqual(in, []string{"rank", "list", "range"}) {
		t.Errorf("Have changed its argument: %q", in)
	}
	if got, want := conf.Have(nil), "(have: none)"; got != want {
		t.Errorf("Have(nil) = %q, want %q", got, want)
	}
}

func TestSettingDescribe(t *testing.T) {
	tests := []struct {
		s    conf.Setting
		want string
	}{
		{conf.Setting{Key: "step", Kind: conf.Int, Default: 1, Doc: "increment"}, "step (int, default 1): increment"},
		{conf.Setting{Key: "key", Kind: conf.String, Required: true, Doc: "name"}, "key (string, required): name"},
		{conf.Setting{Key: "env", Kind: conf.StringMap, Doc: "vars"}, "env (map of strings): vars"},
	}
	for _, tt := range tests {
		if got := tt.s.Describe(); got != tt.want {
			t.Errorf("Describe = %q, want %q", got, tt.want)
		}
	}
}

// A scalar given through a YAML alias is decoded like the scalar itself.
func TestScalarThroughAlias(t *testing.T) {
	_, errs := decodeSettings(t, "name: &n ccd\nfiles: [*n]\n")
	if len(errs) > 0 {
		t.Errorf("unexpected errors: %v", errs)
	}
}

// Locate finds the setting a constructor's message starts with, and the
// line of the deepest value of the file the path reaches.
func TestValuesLocate(t *testing.T) {
	src := "name: a\nfiles:\n  - x\n  - y\nenv:\n  HOME: /h\n  PATH: /p\nextra: {ids: [{ccd: 1}, {ccd: 2}]}\n"
	v, errs := decodeSettings(t, src)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, tt := range []struct {
		msg, path string
		line      int
		rest      string
		ok        bool
	}{
		{"files[1]: bad file", "files[1]", 4, "bad file", true},
		{"files must list something", "files", 3, "files must list something", true},
		{"env.PATH: not absolute", "env.PATH", 7, "not absolute", true},
		{"extra.ids[1].ccd: bad", "extra.ids[1].ccd", 8, "bad", true},
		{"files[9]: past the end", "files[9]", 3, "past the end", true},
		{"env.NOPE: not given", "env.NOPE", 6, "not given", true},
		{"count must be positive", "", 0, "count must be positive", false}, // defaulted, not in the file
		{"something else went wrong", "", 0, "something else went wrong", false},
	} {
		path, line, rest, ok := v.Locate(tt.msg)
		if path != tt.path || line != tt.line || rest != tt.rest || ok != tt.ok {
			t.Errorf("Locate(%q) = %q, %d, %q, %v; want %q, %d, %q, %v", tt.msg, path, line, rest, ok, tt.path, tt.line, tt.rest, tt.ok)
		}
	}
}

// CheckElement refuses what could leave a folder or read as an option.
func TestCheckElement(t *testing.T) {
	for _, ok := range []string{"v1", "704", "a.b", "..12", "a b", "é", "x-1", strings.Repeat("a", 255)} {
		if err := conf.CheckElement(ok); err != nil {
			t.Errorf("CheckElement(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "/", "-x", "a\x00b", "a\nb", "\x7f", "\xe9", strings.Repeat("a", 256)} {
		if err := conf.CheckElement(bad); err == nil {
			t.Errorf("CheckElement(%q) accepts it", bad)
		}
	}
}
