package harness

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// budgetEndings is a Recorder with a time budget of n visits.
type budgetEndings struct {
	*endings
	openGate
	left  int
	asked []string
}

func (b *budgetEndings) TimeForVisit(visit string) string {
	b.asked = append(b.asked, visit)
	if b.left == 0 {
		return "time limit near: no time for " + visit
	}
	b.left--
	return ""
}

// Before each visit the Pipeline asks the recorder's VisitGate; a
// reason stops the run at that visit boundary, as a stop request does.
func TestVisitGateBudgetStopsAtBoundary(t *testing.T) {
	var rec *budgetEndings
	sum, end, err := runYAML(t, testHead+"stages:\n  - {name: r, type: test-record}\n",
		[]string{"1", "2", "3", "4"}, func(lr *RunOptions) {
			rec = &budgetEndings{endings: lr.Recorder.(*endings), left: 2}
			lr.Recorder = rec
		})
	if !errors.Is(err, ErrInterrupted) || !strings.Contains(err.Error(), "after 2 of 4 visits") {
		t.Fatalf("err = %v; want ErrInterrupted after 2 of 4 visits", err)
	}
	if strings.Join(end.order, ",") != "1,2" || strings.Join(rec.asked, ",") != "1,2,3" {
		t.Errorf("visits run %v, asked about %v; want 1,2 run, 1,2,3 asked about", end.order, rec.asked)
	}
	if sum.Stopped != "time limit near: no time for 3" {
		t.Errorf("Stopped = %q; want the budget's reason", sum.Stopped)
	}
}

func TestPolicyGPUsPerSlice(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		value string
		want  int
		err   string
	}{
		{"", 0, ""},
		{"gpus_per_slice: 2\n", 2, ""},
		{"gpus_per_slice: -1\n", 0, "pipeline.yaml:4: gpus_per_slice: must not be negative, got -1"},
		{"gpus_per_slice: a100\n", 0, `pipeline.yaml:4: gpus_per_slice: expected an integer, got "a100"`},
	} {
		if p := loadWithKey(t, dir, tc.value, tc.err); p != nil && p.GPUsPerSlice != tc.want {
			t.Errorf("%q: GPUsPerSlice %d, want %d", tc.value, p.GPUsPerSlice, tc.want)
		}
	}
}

func TestPolicyVisitTime(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		value string
		want  time.Duration
		err   string
	}{
		{"", 0, ""},
		{"visit_time: 90s\n", 90 * time.Second, ""},
		{"visit_time: -5s\n", 0, "pipeline.yaml:4: visit_time: must not be negative"},
		{"visit_time: soon\n", 0, `pipeline.yaml:4: visit_time: expected a duration such as 30s or 5m, got "soon"`},
	} {
		if p := loadWithKey(t, dir, tc.value, tc.err); p != nil && p.VisitTime != tc.want {
			t.Errorf("%q: VisitTime %v; want %v", tc.value, p.VisitTime, tc.want)
		}
	}
}

// loadWithKey loads, from dir, testHead's policy with key (top-level YAML
// lines) added. With wantErr it wants bad input saying that and returns
// nil; else it wants the policy, and returns nil when it did not load.
func loadWithKey(t *testing.T, dir, key, wantErr string) *Policy {
	t.Helper()
	path := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(path, []byte(testHead+key+"stages:\n  - {name: r, type: test-record}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(path, LoadOptions{})
	switch {
	case wantErr != "":
		if err == nil || !strings.Contains(err.Error(), wantErr) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v; want an error containing %q", key, err, wantErr)
		}
		return nil
	case err != nil:
		t.Errorf("%q: %v", key, err)
		return nil
	}
	return p
}
