package site_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/site"
)

// FuzzSite reads arbitrary site files: nothing panics, and every error is
// bad input naming the file, and a line or a key unless it is about the
// whole file. scripts/fuzz.sh runs it for a few seconds; inputs worth
// keeping are in testdata/fuzz/FuzzSite/.
func FuzzSite(f *testing.F) {
	for _, s := range []string{
		goodSite,
		"runs_root: runs\npartitions: [{name: p, cpus_per_node: 2, nodes: 1}]\n",
		"runs_root: runs\npartitions:\n  - {name: a, cpus_per_node: 2, nodes: 2, node_list: 'n[1-2]', max_nodes: 3, max_time: '1-00:00'}\n",
		"runs_root: /r%\nlauncher: {kind: mpirun, flags: [-x, --outp=/tmp/x]}\nsbatch_options: [--output=x]\n",
		"runs_root: r\nbroker: {kind: external, urls: ['nats://h:1'], token: x}\n",
		"runs_root: r\npartitions: &p [{name: a, cpus_per_node: 1}]\nx: *p\n",
		"runs_root: [r\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sbatch.tmpl"), []byte("#!/bin/bash\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	name := filepath.Join(dir, "site.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := site.Parse(name, data)
		if err == nil {
			return
		}
		if !errors.Is(err, conf.ErrInvalid) {
			t.Fatalf("error is not bad input (conf.ErrInvalid): %v", err)
		}
		var es conf.Errors
		if !errors.As(err, &es) || len(es) == 0 {
			t.Fatalf("error is not a conf.Errors: %T %v", err, err)
		}
		for _, e := range es {
			if e.File != name {
				t.Errorf("error does not name the file: %q", e)
			}
			if e.Line == 0 && e.Path == "" && !strings.HasPrefix(e.Msg, "the file is empty") {
				t.Errorf("error names neither a line nor a key: %q", e)
			}
		}
	})
}
