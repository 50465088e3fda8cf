package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// BenchmarkStageKinds compares, per visit of 4 data IDs on 2 slices, the
// stages a pipeline author can put work in: the harness alone (noop), the
// output stage writing each data ID's file, the worker stage asking a
// Python function through python/dpsworker.py, and the exec stage running
// a shell and a Python program per data ID. Rounds interleave the kinds;
// each reports the median over rounds of the time per visit after the
// first warm visits (a worker's start is once per run, not per visit).
//
//	go test ./harness -run '^$' -bench StageKinds -benchtime 1x
func BenchmarkStageKinds(b *testing.B) {
	lib, err := filepath.Abs("../python")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	script := filepath.Join(dir, "work.py")
	os.WriteFile(script, []byte("import dpsworker\n"+
		"def process(inputs, data_id, visit, params):\n    return {'v': int(data_id['ccd']) + 1}\n"+
		"dpsworker.serve(process)\n"), 0o644)
	const head = "pipeline: kinds\nslices: 2\nmapper: {type: range, settings: {key: ccd, from: 1, to: 4}}\n" +
		"locations: {output: \"out/{visit}\"}\nstages:\n"
	kinds := []struct {
		name   string
		visits int
		stage  string
	}{
		{"noop", 200, "  - {name: s, type: noop}\n"},
		{"output", 200, "  - {name: s, type: output, settings: {files: {ccd: \"{output}/ccd{ccd}.json\"}}}\n"},
		{"worker-python", 200, fmt.Sprintf("  - {name: s, type: worker, settings: {command: [python3, %q], env: {PYTHONPATH: %q}, produces: [v]}}\n", script, lib)},
		{"exec-sh", 50, "  - {name: s, type: exec, settings: {command: [sh, -c, 'echo \"{{\\\"v\\\": $1}}\"', sh, \"{ccd}\"], produces: [v]}}\n"},
		{"exec-python", 20, "  - {name: s, type: exec, settings: {command: [python3, -c, \"print('{{\\\"v\\\": {ccd}}}')\"], produces: [v]}}\n"},
	}
	const rounds, warm = 3, 5
	per := make([][]float64, len(kinds))
	for i := 0; i < b.N; i++ {
		for r := 0; r < rounds; r++ {
			for k, kind := range kinds {
				f, _ := runBench(b, head+kind.stage, kind.visits)
				t := f.endTimes
				per[k] = append(per[k], float64(t[len(t)-1].Sub(t[warm-1]).Microseconds())/float64(len(t)-warm))
			}
		}
	}
	var lines []string
	for k, kind := range kinds {
		slices.Sort(per[k])
		med := per[k][len(per[k])/2]
		b.ReportMetric(med, "µs/visit-"+kind.name)
		lines = append(lines, fmt.Sprintf("%-14s median %8.0f µs/visit  (rounds: %.0f)", kind.name, med, per[k]))
	}
	b.Logf("per visit of 4 data IDs, 2 slices, %d rounds:\n%s", rounds, strings.Join(lines, "\n"))
	b.ReportMetric(0, "ns/op")
}
