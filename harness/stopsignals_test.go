package harness

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness/comm"
	"github.com/dpsbatch/dpsbatch/mapper"
)

// The exec stage's error says how its program ended, and matches
// ErrKilled when a stop signal ended it (or it exited 128 plus one).
func TestExecProgramKilledBySignal(t *testing.T) {
	cx := stContext(t, t.TempDir(), nil, "v1", mapper.DataID{"ccd": "1"})
	for _, tc := range []struct {
		name    string
		command []string
		killed  bool
		text    string
	}{
		{"SIGTERM, default action restored", []string{"python3", "-c", "import os, signal; signal.signal(signal.SIGTERM, signal.SIG_DFL); os.kill(os.getpid(), signal.SIGTERM)"},
			true, "exec: python3 was killed by signal terminated"},
		{"SIGKILL", []string{"sh", "-c", "kill -KILL $$"}, true, "exec: sh was killed by signal killed"},
		{"a shell's 128+SIGTERM", []string{"sh", "-c", "exit 143"}, true, "exec: sh exited with status 143"},
		{"SIGSEGV is the program's own", []string{"sh", "-c", "kill -SEGV $$"}, false, "exec: sh was killed by signal segmentation fault"},
		{"exit 1", []string{"sh", "-c", "exit 1"}, false, "exec: sh exited with status 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStage(t, "exec", map[string]any{"command": tc.command, "timeout": 10 * time.Second})
			err := st.(Processor).Process(cx, newClipboard())
			if err == nil || errors.Is(err, ErrKilled) != tc.killed || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %v (ErrKilled: %v); want %q, ErrKilled %v", err, errors.Is(err, ErrKilled), tc.text, tc.killed)
			}
		})
	}
}

// killedStage's Process fails data ID ccd=1 of visit 2 as a program
// killed by a signal would (or, with plain, with an ordinary error); with
// noteAfter >= 0 it first arranges for killNotes to hear a stop signal
// that long after (0: before it returns).
type killedStage struct{}

var (
	killNotes *StopSignals
	noteAfter time.Duration
	plain     bool
)

func (killedStage) Process(cx *Context, cb *Clipboard) error {
	if cx.Visit() != "2" || cx.DataID().String() != "ccd=1" {
		return nil
	}
	switch {
	case noteAfter == 0:
		killNotes.Note()
	case noteAfter > 0:
		time.AfterFunc(noteAfter, killNotes.Note)
	}
	if plain {
		return errors.New("exec: prog exited with status 1")
	}
	return fmt.Errorf("exec: prog was killed by signal terminated: %w", ErrKilled)
}

func init() {
	RegisterStage(Type{Name: "test-killed", New: func(Settings) (Stage, error) { return killedStage{}, nil }})
}

// A slice whose program a stop signal ended reports its data ID as
// stopped, and the visit is interrupted, not failed: when the slice heard
// the signal first, or within stopGrace after. Without a stop signal, or
// for an ordinary error, the data ID fails as before.
func TestStopSignalInterruptsVisit(t *testing.T) {
	for _, tc := range []struct {
		name        string
		after       time.Duration // -1: no stop signal
		plain       bool
		interrupted bool
	}{
		{"signal first", 0, false, true},
		{"signal just after the program died", 300 * time.Millisecond, false, true},
		{"no stop signal", -1, false, false},
		{"an ordinary failure during a stop", 0, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			killNotes, noteAfter, plain = new(StopSignals), tc.after, tc.plain
			sum, end, err := runYAML(t, testHead+"stages:\n  - {name: work, type: test-killed}\n  - {name: r, type: test-record}\n",
				[]string{"1", "2", "3"}, func(lr *RunOptions) { lr.StopSignals = killNotes })
			r := end.results["2"]
			if !tc.interrupted {
				if r.Outcome != VisitFailed || sum.SliceFailureCount != 1 || !errors.Is(err, ErrVisitsFailed) {
					t.Errorf("visit 2 %+v, %d slice failures, err %v; want it failed", r, sum.SliceFailureCount, err)
				}
				return
			}
			if r.Outcome != VisitInterrupted || !strings.Contains(r.Err, `interrupted by a stop signal: stage "work", slice 1, data ID ccd=1: exec: prog was killed`) {
				t.Errorf("visit 2 %+v; want interrupted by the stop signal, naming the data ID", r)
			}
			if err != nil || sum.Failed != 0 || sum.SliceFailureCount != 0 || sum.Interrupted != 1 || sum.Done != 2 {
				t.Errorf("err %v, summary %d done %d failed %d interrupted %d slice failures; want 2 done, 1 interrupted, no failure",
					err, sum.Done, sum.Failed, sum.Interrupted, sum.SliceFailureCount)
			}
		})
	}
}

// dyingComm is a slice's endpoint that dies (aborts the communicator)
// at its nth Gather, as a slice process killed mid-visit does.
type dyingComm struct {
	comm.Comm
	n int
}

func (d *dyingComm) Gather(root int, data []byte) ([][]byte, error) {
	if d.n--; d.n == 0 {
		err := errors.New("slice 1 killed")
		d.Abort(err)
		return nil, err
	}
	return d.Comm.Gather(root, data)
}

// A slice that dies during a visit ends the run, and the Pipeline records
// the visit it cut short as interrupted (to be run again), not running.
func TestSliceDeathInterruptsVisit(t *testing.T) {
	resetSink()
	dir := t.TempDir()
	p, err := parse(filepath.Join(dir, "pipeline.yaml"), []byte(testHead+"stages:\n  - {name: r, type: test-record}\n"))
	if err != nil {
		t.Fatal(err)
	}
	end := newEndings()
	b := events.NewMemory()
	defer b.Close()
	if err := publishVisits(context.Background(), b, p.Trigger.Topic, "test-run", []Visit{{ID: "1"}, {ID: "2"}, {ID: "3"}}); err != nil {
		t.Fatal(err)
	}
	eps := comm.NewLocal(4)
	errs := make([]error, len(eps))
	var wg sync.WaitGroup
	for r, c := range eps {
		o := RunOptions{Comm: c, Policy: p, RunID: "test-run", RunDir: dir, Host: thisMachine()}
		if r == 0 {
			o.Broker, o.Feed, o.Recorder = b, true, end
		}
		if r == 1 {
			o.Comm = &dyingComm{Comm: c, n: 3} // assign, visit 1, then visit 2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[r] = Run(context.Background(), o)
			c.Close()
		}()
	}
	wg.Wait()
	if !errors.Is(errs[0], comm.ErrAborted) {
		t.Errorf("rank 0: %v; want the communicator aborted", errs[0])
	}
	if r := end.results["1"]; r.Outcome != VisitDone {
		t.Errorf("visit 1 %+v; want done", r)
	}
	if r := end.results["2"]; r.Outcome != VisitInterrupted || !strings.Contains(r.Err, "slice 1 killed") {
		t.Errorf("visit 2 %+v; want interrupted, saying why", r)
	}
	if _, ok := end.results["3"]; ok {
		t.Error("visit 3 ran")
	}
}
