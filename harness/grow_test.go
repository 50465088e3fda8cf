package harness

import (
	"testing"
)

// A policy's grow section gives a batch run's growth factors, checked as
// the site file's are.
func TestPolicyGrow(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		value        string
		time, memory float64
		err          string
	}{
		{"", 0, 0, ""},
		{"grow: {time: 2, memory: 1.5}\n", 2, 1.5, ""},
		{"grow: {memory: 1}\n", 0, 0, "pipeline.yaml:4: grow.memory: expected a factor above 1"},
		{"grow: {ram: 2}\n", 0, 0, "pipeline.yaml:4: grow.ram: unknown key"},
	} {
		if p := loadWithKey(t, dir, tc.value, tc.err); p != nil && (p.GrowTime != tc.time || p.GrowMemory != tc.memory) {
			t.Errorf("%q: grow %v, %v; want %v, %v", tc.value, p.GrowTime, p.GrowMemory, tc.time, tc.memory)
		}
	}
}
