package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/dpsbatch/dpsbatch/jobs"
	"github.com/dpsbatch/dpsbatch/state"
)

// progress shows a run's progress while it runs in this process (dpsbatch
// local), read from its state file as each visit ends: the line of
// `status --watch` (progressBar: done and failed visits, the rate, the
// time left). On a terminal the line is redrawn in place; elsewhere (a
// pipe, a file, a log) a plain line is written when visits have ended
// since the last, at most every plainEvery, and the last one at the end.
type progress struct {
	w     io.Writer
	dir   string
	tty   bool
	every time.Duration // the least time between two plain lines

	last  time.Time // when the last plain line was written
	ended int       // visits done or failed in the last plain line
	shown string    // the line a terminal shows
}

// plainEvery is the least time between two plain progress lines.
const plainEvery = time.Second

// showProgress shows the progress of the run in dir on w until the
// returned function is called, which draws the last line and returns
// once nothing more is written.
func showProgress(w io.Writer, dir string) (stop func()) {
	p := &progress{w: w, dir: dir, tty: isTerminal(w), every: plainEvery}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.follow(ctx)
	}()
	return func() {
		cancel()
		<-done
		p.draw(true)
	}
}

// follow draws the progress at each change of the run's state file, and
// every second besides (the time left moves on), until ctx ends.
func (p *progress) follow(ctx context.Context) {
	changed, err := jobs.Changes(ctx, p.dir)
	if err != nil {
		changed = nil // no notices here: once a second
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(time.Second):
		}
		p.draw(false)
	}
}

// draw writes the run's progress line; last ends it (a terminal's line
// gets its newline, a plain line is written whatever the time).
func (p *progress) draw(last bool) {
	all, err := jobs.Status(context.Background(), nil, []string{p.dir})
	if err != nil || len(all) == 0 {
		return
	}
	rs := all[0]
	line := progressBar(rs, 40)
	if p.tty {
		p.redraw(line, last)
		return
	}
	ended := rs.Counts[state.Done] + rs.Counts[state.Failed]
	if ended == p.ended || !last && time.Since(p.last) < p.every {
		return
	}
	p.last, p.ended = time.Now(), ended
	fmt.Fprintln(p.w, line)
}

// redraw shows line on the terminal in place of the one it shows, if it
// differs; last ends it with a newline.
func (p *progress) redraw(line string, last bool) {
	if line != p.shown {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		p.shown = line
	}
	if last {
		fmt.Fprintln(p.w)
	}
}

// isTerminal reports whether w writes to a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
