package harness

import (
	"encoding/gob"
	"fmt"
	"sort"
	"sync"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// Type is a registered stage type: its name in policies, its settings and
// the clipboard keys it needs and produces, and how to build an instance.
type Type struct {
	Name string
	Doc  string
	// Settings declares the keys of the stage's settings section.
	Settings []Setting
	// Needs and Produces are the clipboard keys every instance needs and
	// produces. A stage whose keys depend on its settings implements
	// KeyDeclarer instead.
	Needs, Produces []string
	// Concurrent declares that an instance may be called for several
	// visits at once (from several goroutines), as it is when the policy
	// lets visits be in flight together (in_flight above 1). Without it,
	// the calls of different visits to one instance take turns on each
	// rank; with one visit in flight it makes no difference.
	Concurrent bool
	// New builds an instance from checked settings (defaults filled in).
	// It must not have side effects: validate calls it too. Work that
	// touches the world belongs in Initialize. An error that starts with
	// the settings key it is about ("timeout must be positive",
	// "command[1]: ...", "env.HOME: ...") is reported at that key's line
	// of the policy; any other at the stage's.
	New func(s Settings) (Stage, error)
}

var (
	regMu  sync.RWMutex
	stages = map[string]Type{}
)

// RegisterStage makes a stage type available to policies by name. It
// panics on an empty or duplicate name or a nil New: these are programming
// errors, found the first time the binary runs.
func RegisterStage(t Type) {
	regMu.Lock()
	defer regMu.Unlock()
	if t.Name == "" {
		panic("harness: RegisterStage with an empty name")
	}
	if t.New == nil {
		panic("harness: RegisterStage " + t.Name + " with a nil New")
	}
	if _, dup := stages[t.Name]; dup {
		panic("harness: RegisterStage called twice for " + t.Name)
	}
	stages[t.Name] = t
}

// LookupStage returns the stage type registered under name.
func LookupStage(name string) (Type, error) {
	regMu.RLock()
	defer regMu.RUnlock()
	t, ok := stages[name]
	if !ok {
		names := stageNamesLocked()
		return Type{}, fmt.Errorf("harness: unknown stage type %q%s %s", name, conf.Suggest(name, names), conf.Have(names))
	}
	return t, nil
}

// StageTypes lists the registered stage types sorted by name.
func StageTypes() []Type {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]Type, 0, len(stages))
	for _, n := range stageNamesLocked() {
		out = append(out, stages[n])
	}
	return out
}

func stageNamesLocked() []string {
	ns := make([]string, 0, len(stages))
	for n := range stages {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

// RegisterType makes a Go type usable as a shared clipboard value (values
// cross between ranks encoded with encoding/gob). Plain values, []any,
// map[string]any, []string and map[string]string are registered already.
func RegisterType(v any) { gob.Register(v) }

func init() {
	gob.Register([]any(nil))
	gob.Register(map[string]any(nil))
	gob.Register([]string(nil))
	gob.Register(map[string]string(nil))
}
