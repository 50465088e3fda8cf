package main

import (
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/jobs"
	"github.com/dpsbatch/dpsbatch/monitor"
	"github.com/dpsbatch/dpsbatch/replay"
)

// jsonOutputs is one value of each type a command prints with --json.
// A command that gains --json adds its type here.
func jsonOutputs() map[string]any {
	return map[string]any{
		"status, wait, runs":       jobs.RunStatus{},
		"submit":                   jobs.Submitted{},
		"resume":                   jobs.ResumeResult{},
		"event send, stop, finish": jobs.Relayed{},
		"events":                   received{},
		"validate":                 validated{},
		"local":                    localRun{},
		"local (production)":       localProduction{},
		"site check":               siteChecked{},
		"cancel":                   cancelled{},
		"stages":                   registry{},
		"monitor":                  monitor.Alert{},
		"replay":                   replay.Outcome{},
	}
}

// Every command with --json has its output type in jsonOutputs.
func TestJSONOutputsListed(t *testing.T) {
	listed := map[string]bool{}
	for names := range jsonOutputs() {
		for _, n := range strings.Split(names, ", ") {
			listed[n] = true
		}
	}
	var walk func(prefix string, cmds []*cli.Command)
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			name := strings.TrimPrefix(prefix+" "+c.Name, " ")
			for _, f := range c.Flags {
				if slices.Contains(f.Names(), "json") && !listed[name] {
					t.Errorf("%s has --json but its output type is not in jsonOutputs", name)
				}
			}
			walk(name, c.Subcommands)
		}
	}
	walk("", newApp().Commands)
}

var camelCase = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)

// Every key of every --json output is camelCase: each output type is
// filled in completely (so omitempty hides nothing), marshalled and
// walked.
func TestJSONKeysCamelCase(t *testing.T) {
	for cmd, v := range jsonOutputs() {
		p := reflect.New(reflect.TypeOf(v))
		fill(p.Elem(), 0)
		data, err := json.Marshal(p.Interface())
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		var tree any
		if err := json.Unmarshal(data, &tree); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		for _, k := range badKeys(tree, "") {
			t.Errorf("%s --json: key %s is not camelCase", cmd, k)
		}
	}
}

// fill sets every exported field of v, recursively, to a value that is
// not the zero one: one element in slices and maps.
func fill(v reflect.Value, depth int) {
	if depth > 6 || !v.CanSet() {
		return
	}
	switch v.Interface().(type) {
	case time.Time:
		v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), depth+1)
			}
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), depth+1)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0), depth+1)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, depth+1)
		fill(e, depth+1)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1)
	case reflect.Interface:
		v.Set(reflect.ValueOf("x"))
	}
}

// badKeys lists the keys of a decoded JSON value that are not camelCase,
// with their paths.
func badKeys(v any, path string) []string {
	var bad []string
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if !camelCase.MatchString(k) {
				bad = append(bad, path+"."+k)
			}
			bad = append(bad, badKeys(e, path+"."+k)...)
		}
	case []any:
		for _, e := range v {
			bad = append(bad, badKeys(e, path+"[]")...)
		}
	}
	return bad
}
