package harness

import (
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// Kind is the type of a stage setting's value.
type Kind string

// The kinds a setting may have, with the Go type each decodes to.
const (
	String    = Kind(conf.String)    // string
	Int       = Kind(conf.Int)       // int
	Float     = Kind(conf.Float)     // float64
	Bool      = Kind(conf.Bool)      // bool
	Duration  = Kind(conf.Duration)  // time.Duration
	Strings   = Kind(conf.Strings)   // []string
	StringMap = Kind(conf.StringMap) // []Pair, in the file's order
	Any       = Kind(conf.Any)       // plain YAML values
)

// Setting declares one key of a stage type's settings section. Default is
// used when the key is absent and must be of the kind's Go type (see Kind).
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

func confSettings(ss []Setting) []conf.Setting {
	out := make([]conf.Setting, len(ss))
	for i, s := range ss {
		out[i] = s.conf()
	}
	return out
}

// Pair is one entry of a StringMap setting.
type Pair struct{ Key, Value string }

// Settings are a stage's decoded settings, defaults filled in. A getter
// returns the zero value for a key the stage type did not declare.
type Settings struct{ v conf.Values }

// The getters return a setting's value as its kind's Go type.

func (s Settings) String(k string) string          { return s.v.String(k) }
func (s Settings) Int(k string) int                { return s.v.Int(k) }
func (s Settings) Float(k string) float64          { return s.v.Float(k) }
func (s Settings) Bool(k string) bool              { return s.v.Bool(k) }
func (s Settings) Duration(k string) time.Duration { return s.v.Duration(k) }
func (s Settings) Strings(k string) []string       { return s.v.Strings(k) }
func (s Settings) Raw(k string) any                { return s.v.Raw(k) }

// Has reports whether the key was given (not defaulted).
func (s Settings) Has(k string) bool { return s.v.Has(k) }

// Pairs returns a StringMap setting's entries in the file's order.
func (s Settings) Pairs(k string) []Pair {
	var out []Pair
	for _, p := range s.v.Pairs(k) {
		out = append(out, Pair(p))
	}
	return out
}
