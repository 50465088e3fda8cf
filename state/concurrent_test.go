package state

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadersAndWriter runs the writer's visit loop and several status
// readers, each with its own connection, at once, in both journal modes:
// no reader and no writer call may fail (a busy file is waited for, never
// an error), readers always see consistent counts, and no writer call is
// held up for long. It counts work, not time: the writer records a fixed
// number of visits while the readers read (the machine may be busy).
func TestReadersAndWriter(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds")
	}
	for _, mode := range []string{"wal", "delete"} {
		t.Run(mode, func(t *testing.T) {
			t.Setenv(JournalEnv, mode)
			const visits, readers = 3000, 3
			ids := make([]string, visits)
			for i := range ids {
				ids[i] = fmt.Sprintf("visit-%05d", i)
			}
			w, path := newRun(t, ids...)
			must(t, w.AddJob(Job{ID: "1", Attempt: 1, Submitted: time.Now()}))

			var stop atomic.Bool
			var wg sync.WaitGroup
			reads := make([]atomic.Int64, readers)
			var slowestRead atomic.Int64
			for r := 0; r < readers; r++ {
				s, err := OpenReadOnly(path)
				must(t, err)
				defer s.Close()
				wg.Add(1)
				go func() {
					defer wg.Done()
					for !stop.Load() {
						t0 := time.Now()
						c, err := s.Counts()
						if err != nil {
							t.Errorf("reader %d: Counts: %v", r, err)
							return
						}
						sum := 0
						for _, n := range c {
							sum += n
						}
						if sum != visits {
							t.Errorf("reader %d: counts %v add up to %d, want %d", r, c, sum, visits)
							return
						}
						done, first, last, err := s.Progress()
						if err != nil || done < c[Done] || (done > 0 && (first.IsZero() || last.Before(first))) {
							t.Errorf("reader %d: Progress() = %d, %v, %v, %v after %d done", r, done, first, last, err, c[Done])
							return
						}
						if _, err := s.Visits(Failed, 20); err != nil {
							t.Errorf("reader %d: Visits: %v", r, err)
							return
						}
						if _, err := s.Stages(); err != nil {
							t.Errorf("reader %d: Stages: %v", r, err)
							return
						}
						if d := int64(time.Since(t0)); d > slowestRead.Load() {
							slowestRead.Store(d)
						}
						reads[r].Add(1)
					}
				}()
			}

			const toWrite = 100
			var slowestWrite time.Duration
			written := 0
			for i, id := range ids[:toWrite] {
				t0 := time.Now()
				if err := w.VisitStarted(id, "1", time.Now()); err != nil {
					t.Fatalf("writer: %v", err)
				}
				w.StageDone(id, "isr", time.Millisecond)
				st := Done
				if i%10 == 9 {
					st = Failed
					w.SliceFailed(id, "isr", 1, "ccd=1", "boom", "")
				}
				if err := w.VisitEnded(id, st, "", time.Now()); err != nil {
					t.Fatalf("writer: %v", err)
				}
				slowestWrite = max(slowestWrite, time.Since(t0))
				written++
			}
			// Each reader reads a few times more, seeing the writer's end.
			for r := range reads {
				for n := reads[r].Load(); reads[r].Load() < n+3 && !t.Failed(); {
					time.Sleep(time.Millisecond)
				}
			}
			stop.Store(true)
			wg.Wait()
			checkCounts(t, w)
			t.Logf("%s: %d visits written (slowest start+end %v), reads %v (slowest %v)",
				w.JournalMode(), written, slowestWrite, []int64{reads[0].Load(), reads[1].Load(), reads[2].Load()}, time.Duration(slowestRead.Load()))
			if slowestWrite > 10*time.Second {
				t.Errorf("a visit's start and end took %v: readers held the writer up", slowestWrite)
			}
		})
	}
}
