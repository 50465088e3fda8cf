package mapper

import "github.com/dpsbatch/dpsbatch/internal/conf"

// Kind is the type of a mapper setting's value.
type Kind string

// The kinds a mapper setting may have, with the Go type each decodes to.
const (
	String Kind = Kind(conf.String) // string
	Int    Kind = Kind(conf.Int)    // int
	Bool   Kind = Kind(conf.Bool)   // bool
	Any    Kind = Kind(conf.Any)    // plain YAML values
)

// Setting declares one key of a mapper's settings section (the policy's
// mapper.settings). Default is used when the key is absent and must be of
// the kind's Go type.
type Setting struct {
	Key      string
	Kind     Kind
	Default  any
	Required bool
	Doc      string
}

// Describe formats a setting for help listings: "key (kind, default x): doc".
func (s Setting) Describe() string { return s.conf().Describe() }

func (s Setting) conf() conf.Setting {
	return conf.Setting{Key: s.Key, Kind: conf.Kind(s.Kind), Default: s.Default, Required: s.Required, Doc: s.Doc}
}

// Values are a mapper's decoded settings, defaults filled in. A getter
// returns the zero value for a key the mapper did not declare.
type Values struct{ v conf.Values }

// The getters return a setting's value as its kind's Go type.

func (v Values) String(k string) string { return v.v.String(k) }
func (v Values) Int(k string) int       { return v.v.Int(k) }
func (v Values) Bool(k string) bool     { return v.v.Bool(k) }
func (v Values) Raw(k string) any       { return v.v.Raw(k) }

// Has reports whether the key was given (not defaulted).
func (v Values) Has(k string) bool { return v.v.Has(k) }

// Declared is f's settings in the policy reader's terms: the policy
// (harness) decodes mapper.settings against them.
func (f Factory) Declared() []conf.Setting {
	out := make([]conf.Setting, len(f.Settings))
	for i, s := range f.Settings {
		out[i] = s.conf()
	}
	return out
}

// Build makes the mapper from settings decoded against Declared.
func (f Factory) Build(v conf.Values) (DataMapper, error) { return f.New(Values{v}) }
