package harness

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Rank 0 warns about the number of slices only when the communicator's
// differs from what was asked: RunOptions.Slices (naming SlicesFrom), else
// the policy's count.
func TestWarnSlicesAsked(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "p.yaml")
	os.WriteFile(policy, []byte("pipeline: p\nslices: 2\nmapper: {type: rank}\nevents: {trigger: {topic: v}}\nstages:\n  - {name: r, type: noop}\n"), 0o644)
	entry := `the slices of production entry "detect"`
	for _, tc := range []struct {
		name    string
		asked   int
		from    string
		size    int
		askedBy string // "" for no warning
	}{
		{"the policy's, as asked", 0, "", 3, ""},
		{"the policy's, not as asked", 0, "", 4, "the policy's slices"},
		{"a production entry's, as asked", 3, entry, 4, ""},
		{"a production entry's, not as asked", 3, entry, 3, entry},
		{"--slices, as asked", 1, "submit --slices", 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs lockedBuffer
			feed := func(p *Policy, dr *RunOptions) error { dr.Slices, dr.SlicesFrom = tc.asked, tc.from; return nil }
			dr := RunOptions{PolicyPath: policy, VisitsPath: filepath.Join(dir, "v.csv"), RunID: "r", RunDir: dir, Rank0: feed,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			os.WriteFile(dr.VisitsPath, []byte("visitId\na\n"), 0o644)
			dr.Ranks, dr.Size = CommLocal, tc.size
			if _, err := Run(context.Background(), dr); err != nil {
				t.Fatal(err)
			}
			warned := strings.Contains(logs.String(), "number of slices")
			if warned != (tc.askedBy != "") || tc.askedBy != "" && !strings.Contains(logs.String(), "askedBy="+strconvQuote(tc.askedBy)) {
				t.Errorf("%d slices, %d asked by %q: log\n%s\nwant a warning naming %q: %v", tc.size-1, tc.asked, tc.from, logs.String(), tc.askedBy, tc.askedBy != "")
			}
		})
	}
}

// strconvQuote quotes s as slog's text handler does a value with spaces.
func strconvQuote(s string) string {
	if strings.ContainsAny(s, " \"") {
		return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
	}
	return s
}

// Rank 0 warns once when the mapper leaves slices without a data ID (more
// slices than data IDs): they would sit idle for the whole run. Every
// slice busy: no warning.
func TestWarnIdleSlices(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "p.yaml")
	os.WriteFile(policy, []byte("pipeline: p\nslices: 2\nmapper: {type: range, settings: {key: ccd, from: 1, to: 2}}\nevents: {trigger: {topic: v}}\nstages:\n  - {name: r, type: noop}\n"), 0o644)
	for _, tc := range []struct {
		slices int
		warn   string
	}{
		{2, ""},
		{4, "idle=2 slices=4 dataIds=2"},
	} {
		var logs lockedBuffer
		o := RunOptions{PolicyPath: policy, VisitsPath: filepath.Join(dir, "v.csv"), RunID: "r", RunDir: dir,
			Logger: slog.New(slog.NewTextHandler(&logs, nil)), Ranks: CommLocal, Size: tc.slices + 1}
		os.WriteFile(o.VisitsPath, []byte("visitId\na\n"), 0o644)
		if _, err := Run(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		n := strings.Count(logs.String(), "have no data ID")
		if tc.warn == "" && n != 0 || tc.warn != "" && (n != 1 || !strings.Contains(logs.String(), tc.warn)) {
			t.Errorf("%d slices over 2 data IDs: log\n%s\nwant one warning with %q: %v", tc.slices, logs.String(), tc.warn, tc.warn != "")
		}
	}
}
