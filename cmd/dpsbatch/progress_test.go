package main

import (
	"bytes"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/dpsbatch/dpsbatch/internal/testenv"
)

// TestLocalProgressPlain: written to a file or a pipe (not a terminal),
// local's progress is plain lines, status --watch's bar, ending with every
// visit done, and no terminal control.
func TestLocalProgressPlain(t *testing.T) {
	out, err := run(t, "local", "--run-dir", filepath.Join(t.TempDir(), "p"))
	if err != nil {
		t.Fatalf("local: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^\S+ \[#{40}\] 3/3 done, [0-9.e+]+/s \(done\)$`).MatchString(out) {
		t.Errorf("no plain progress line with every visit done and the rate:\n%s", out)
	}
	if strings.ContainsAny(out, "\r\x1b") {
		t.Errorf("terminal control in plain output: %q", out)
	}
}

// TestLocalProgressTerminal: on a terminal (a pseudo-terminal here),
// local's progress line is redrawn in place, ending with every visit
// done, before the summary.
func TestLocalProgressTerminal(t *testing.T) {
	bin := buildBinary(t, "")
	cmd := exec.Command(bin, "--log-level", "error", "local", "--run-dir", filepath.Join(t.TempDir(), "tty"))
	f, err := pty.Start(cmd)
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	defer f.Close()
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() { io.Copy(&out, f); close(copied) }() // EIO once the program has gone
	if err := cmd.Wait(); err != nil {
		t.Fatalf("local on a terminal: %v\n%s", err, out.String())
	}
	select {
	case <-copied:
	case <-time.After(10 * time.Second):
	}
	text := out.String()
	if !regexp.MustCompile(`\r\S+ \[#{40}\] 3/3 done, [0-9.e+]+/s \(done\)\x1b\[K\r?\n`).MatchString(text) {
		t.Errorf("no progress line redrawn in place ending with every visit done:\n%q", text)
	}
	if i, j := strings.LastIndex(text, "3/3 done"), strings.Index(text, "visits: 3 run, 3 done"); i < 0 || j < i {
		t.Errorf("the summary does not follow the progress line:\n%q", text)
	}
	if n := strings.Count(text, "\r"); n > 20 {
		t.Errorf("the line was drawn %d times for 3 visits: only a changed line is redrawn\n%q", n, text)
	}
}

// TestProgressShowsFailedDataIDs: a data ID that failed while its visit
// carried on (failure: {visit: never}) shows in the progress line, as it
// does in status: the bar alone would read every visit done.
func TestProgressShowsFailedDataIDs(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		testenv.SkipOrFail(t, "jq is not installed (scripts/cluster.sh install installs it)")
	}
	ex := filepath.Join("..", "..", "examples", "ccdstats")
	out, _ := run(t, "local", filepath.Join(ex, "pipeline.yaml"), "--visits", filepath.Join(ex, "visits.csv"), "--run-dir", filepath.Join(t.TempDir(), "p"))
	if !regexp.MustCompile(`(?m)^\S+ \[#{40}\] 3/3 done, 1 data IDs failed, [0-9.e+]+/s \(failed\)$`).MatchString(out) {
		t.Errorf("no progress line with every visit done and the failed data ID:\n%s", out)
	}
}
