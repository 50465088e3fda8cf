//go:build mpi

// Command mpistages times the harness's stage loop on the MPI
// communicator: a pipeline of no-op stages over many visits, every rank
// running harness.Run on comm.NewMPI (RunOptions.Comm). Its C counterpart, bench/mpiloop,
// moves the same messages with bare MPI calls; bench/run-mpi.sh runs both
// and compares them.
//
// Usage: mpirun -np R mpistages [-visits V] [-stages S] [-warmup W] [-raw] [-log] [-cpuprofile F]
//
// Rank 0 (the Pipeline) feeds W+V visits through an in-memory broker and
// prints one line:
//
//	mpistages ranks=R visits=V stages=S ns/stage=X block-ns/stage=Y
//
// where X is the time from the start of the first timed visit (the one
// after the W warm-up visits) to the end of the last, divided by V*S. The
// visit's own broadcast is thereby amortised over its S stages, as in
// mpiloop's ns/stage. Y is the median, over 20 equal blocks of the timed
// visits, of each block's ns/stage, as mpiloop's block-ns/stage: the
// run's typical rate, which a burst of other work on a shared machine in
// a few blocks does not move. The harness gets a logger disabled at every level
// (-log restores its default, which formats every line to io.Discard), so
// the figure is the loop's synchronisation cost, not logging's. With -raw
// the harness is skipped and the same communicator calls are timed alone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/harness/comm"
)

// blocks is the number of blocks the timed visits are cut into for the
// median figure.
const blocks = 20

// clock is the Recorder: it notes when visit warm+1 starts and when each
// block of the timed visits ends (marks, the last at the last visit's
// end). Only the Pipeline's loop goroutine calls it.
type clock struct {
	warm, total int
	started     int
	ended       int
	marks       []time.Time // the start, then the end of each block
}

func (c *clock) VisitStarted(string, time.Time) error {
	c.started++
	if c.started == c.warm+1 {
		c.marks = append(c.marks, time.Now())
	}
	return nil
}

func (c *clock) StageDone(string, string, time.Duration) error { return nil }
func (c *clock) SliceFailed(f harness.SliceFailure) error {
	return fmt.Errorf("mpistages: slice %d failed: %s", f.Slice, f.Err)
}

func (c *clock) VisitEnded(v string, r harness.VisitResult) error {
	if r.Outcome != harness.VisitDone {
		return fmt.Errorf("mpistages: visit %s: %s", v, r.Err)
	}
	c.ended++
	if timed := c.ended - c.warm; timed > 0 && (timed%blockLen(c.total-c.warm) == 0 && len(c.marks) < blocks || c.ended == c.total) {
		c.marks = append(c.marks, time.Now())
	}
	return nil
}

// blockLen is the number of visits in each block but the last, which
// takes the rest.
func blockLen(visits int) int { return max(visits/blocks, 1) }

// report prints the run's line from the block marks: the mean over all
// timed visits and the median block.
func report(name string, ranks, visits, stages int, marks []time.Time) {
	per := blockLen(visits)
	ns := make([]float64, 0, len(marks)-1)
	for i := 1; i < len(marks); i++ {
		n := per
		if i == len(marks)-1 {
			n = visits - per*(len(marks)-2)
		}
		ns = append(ns, float64(marks[i].Sub(marks[i-1]).Nanoseconds())/float64(n*stages))
	}
	sort.Float64s(ns)
	median := (ns[(len(ns)-1)/2] + ns[len(ns)/2]) / 2
	took := marks[len(marks)-1].Sub(marks[0])
	fmt.Printf("%s ranks=%d visits=%d stages=%d ns/stage=%.0f block-ns/stage=%.0f\n",
		name, ranks, visits, stages, float64(took.Nanoseconds())/float64(visits*stages), median)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	visits := flag.Int("visits", 20000, "timed visits")
	stages := flag.Int("stages", 10, "no-op stages per visit")
	warm := flag.Int("warmup", -1, "untimed visits first (default: visits/100)")
	cpuprof := flag.String("cpuprofile", "", "write a CPU profile of each rank to this file (.rank<N> appended)")
	raw := flag.Bool("raw", false, "skip the harness: time the same Bcast and Gather calls on the communicator alone")
	textLog := flag.Bool("log", false, "let the harness log as it does without a Logger (text formatted to io.Discard); default: a logger disabled at every level, so only the loop is timed")
	flag.Parse()
	if *warm < 0 {
		*warm = *visits / 100
	}
	if *visits < 1 || *stages < 1 {
		return errors.New("mpistages: -visits and -stages must be at least 1")
	}

	// The main goroutine owns the communicator (NewMPI locks it to its
	// OS thread) and runs the rank's loop.
	c, err := comm.NewMPI()
	if err != nil {
		return err
	}
	defer c.Close()

	dir, err := os.MkdirTemp("", "mpistages-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var b strings.Builder
	fmt.Fprintf(&b, "pipeline: noop\nslices: %d\nmapper: {type: rank}\nstages:\n", max(c.Size()-1, 1))
	for i := range *stages {
		fmt.Fprintf(&b, "  - {name: s%d, type: noop}\n", i)
	}
	path := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return err
	}
	p, err := harness.Load(path, harness.LoadOptions{})
	if err != nil {
		return err
	}

	if *cpuprof != "" {
		f, err := os.Create(*cpuprof + ".rank" + strconv.Itoa(c.Rank()))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	if *raw {
		return rawLoop(c, *warm, *visits, *stages)
	}
	o := harness.RunOptions{Comm: c, Policy: p, RunID: "bench", RunDir: dir}
	if !*textLog {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var clk *clock
	if c.Rank() == 0 {
		o.Visits = make([]harness.Visit, *warm+*visits)
		for i := range o.Visits {
			o.Visits[i] = harness.Visit{ID: strconv.Itoa(i + 1)}
		}
		clk = &clock{warm: *warm, total: len(o.Visits)}
		o.Recorder = clk
	}
	if _, err := harness.Run(context.Background(), o); err != nil {
		return err
	}
	if clk != nil {
		report("mpistages", c.Size(), *visits, *stages, clk.marks)
	}
	return nil
}

// rawLoop makes the communicator calls a no-op pipeline makes, with empty
// messages and nothing else: per stage one Bcast (for a visit's first
// stage, the visit's message, which begins it) and one Gather. It prints
// the same line as the harness run, marked raw.
func rawLoop(c comm.Comm, warm, visits, stages int) error {
	loop := func(n int) error {
		for range n {
			for range stages {
				if _, err := c.Bcast(0, nil); err != nil {
					return err
				}
				if _, err := c.Gather(0, nil); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := loop(warm); err != nil {
		return err
	}
	if err := c.Barrier(); err != nil {
		return err
	}
	per := blockLen(visits)
	marks := []time.Time{time.Now()}
	for done := 0; done < visits; {
		n := per
		if len(marks) == blocks || done+n > visits {
			n = visits - done
		}
		if err := loop(n); err != nil {
			return err
		}
		done += n
		marks = append(marks, time.Now())
	}
	if c.Rank() == 0 {
		report("mpistages-raw", c.Size(), visits, stages, marks)
	}
	return nil
}
