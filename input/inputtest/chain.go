// Package inputtest holds a production's test files for the tests of the
// packages that read, plan and run productions: the classic chain of three
// pipelines and a helper that writes files into a test's folder. Only
// _test.go files import it; it never reads what it writes.
package inputtest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// The classic chain: detect (visits) publishes detected; assoc listens on
// detected and publishes associated; moving listens on associated, and
// its second stage waits for calib, which no pipeline publishes.
const (
	DetectPolicy = `pipeline: detect
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: 4}}
events: {trigger: {topic: visits, properties: [filter]}}
stages:
  - {name: work, type: noop}
  - {name: announce, type: event, settings: {topic: detected}}
`
	AssocPolicy = `pipeline: assoc
slices: 1
mapper: {type: range, settings: {key: ccd, from: 1, to: 1}}
events: {trigger: {topic: detected}}
stages:
  - {name: work, type: noop}
  - {name: announce, type: event, settings: {topic: associated}}
`
	MovingPolicy = `pipeline: moving
slices: 3
mapper: {type: range, settings: {key: ccd, from: 1, to: 3}}
events:
  trigger: {topic: associated}
  external: [calib]
stages:
  - {name: prep, type: noop}
  - name: fit
    type: noop
    event: {topic: calib}
`
	ChainProduction = `production: nightly
pipelines:
  - policy: detect/pipeline.yaml
    visits: detect/visits.csv
  - policy: assoc/pipeline.yaml
    name: association
    after: [detect]
  - policy: moving/pipeline.yaml
    slices: 4
    after: association
`
)

// Dir writes files (name -> text) into a new folder and returns it.
func Dir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// ChainFiles is the chain's policies and visit list, and prod as the
// production file prod.yaml.
func ChainFiles(prod string) map[string]string {
	return map[string]string{
		"prod.yaml":            prod,
		"detect/pipeline.yaml": DetectPolicy,
		"detect/visits.csv":    "visitId,filter\nv1,r\nv2,g\nv3,i\n",
		"assoc/pipeline.yaml":  AssocPolicy,
		"moving/pipeline.yaml": MovingPolicy,
	}
}

// WantInvalid fails t unless err is bad input (conf.ErrInvalid) whose
// message says contains ("" for anything).
func WantInvalid(t testing.TB, what string, err error, contains string) {
	t.Helper()
	if err == nil || !errors.Is(err, conf.ErrInvalid) {
		t.Fatalf("%s: err = %v; want one matching conf.ErrInvalid", what, err)
	}
	if contains != "" && !strings.Contains(err.Error(), contains) {
		t.Fatalf("%s: err = %v; want it to say %q", what, err, contains)
	}
}

// TinyPolicy is a pipeline of two slices and one stage that does
// nothing.
const TinyPolicy = `pipeline: tiny
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
events: {trigger: {topic: visits}}
stages:
  - {name: work, type: noop}
`
