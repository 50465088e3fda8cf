package state

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// adderVisits is how many visits the adder adds in all.
const adderVisits = 3000 // enough work for the kills on a fast, idle machine (1000 gave 23 of 25 there)

// adderID is the ID of the adder's i-th visit.
func adderID(i int) string { return fmt.Sprintf("e%05d", i) }

// runAdder is the adder subprocess: it does what a job's Pipeline does for
// visits that arrive by event. It opens the file and, from the last visit
// recorded (added again: a redelivered event), records each visit's event
// and adds the visit, with 1 ms of waiting between visits, until there are
// adderVisits. It returns the exit code.
func runAdder() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "adder:", err)
		return 1
	}
	s, err := Open(os.Getenv(helperDB))
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	c, err := s.Counts()
	if err != nil {
		return fail(err)
	}
	job := os.Getenv(helperJob)
	for i := max(c[Pending]-1, 0); i < adderVisits; i++ {
		id := adderID(i)
		if err := s.RecordEvent(EventRecord{Dir: DirIn, Topic: "visits", Job: job, Props: map[string]any{"visit": id}}); err != nil {
			return fail(err)
		}
		added, err := s.AddVisit(id)
		if err != nil {
			return fail(err)
		}
		if added != (i >= c[Pending]) {
			return fail(fmt.Errorf("AddVisit(%s) = %v with %d visits recorded", id, added, c[Pending]))
		}
		if err := s.Heartbeat(job, time.Now(), id); err != nil {
			return fail(err)
		}
		time.Sleep(time.Millisecond)
	}
	return 0
}

// TestCrashSafetyAddVisit kills the adder at random instants, about
// thirty times per journal mode, and after each kill checks the file:
// integrity_check ok, the counts agree with the visits, the visits are the
// adder's first n in order at seq 1..n (none lost, none twice, no gap),
// and every visit has its event recorded before it, in order. At the end
// there are adderVisits.
func TestCrashSafetyAddVisit(t *testing.T) {
	if testing.Short() {
		t.Skip("kills an adder subprocess about sixty times")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	inModes(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "run.db")
		s, err := Create(path, Run{ID: "crash"})
		must(t, err)
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
		kills := 0
		for round := 0; ; round++ {
			if round > 200 {
				t.Fatalf("no end after %d adders", round)
			}
			job := fmt.Sprintf("job%03d", round)
			must(t, s.AddJob(Job{ID: job, Attempt: round + 1, Submitted: time.Now()}))
			must(t, s.Close())
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"=adder", helperDB+"="+path, helperJob+"="+job)
			var stderr lockedBuffer
			cmd.Stderr = &stderr
			must(t, cmd.Start())
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			if kills < crashKills {
				select {
				case err := <-exited:
					if err != nil {
						t.Fatalf("adder %s: %v: %s", job, err, stderr.String())
					}
				case <-time.After(time.Duration(rng.Int64N(int64(100 * time.Millisecond)))):
					cmd.Process.Signal(syscall.SIGKILL)
					if err := <-exited; isKilled(err) {
						kills++
					} else if err != nil {
						t.Fatalf("adder %s: %v: %s", job, err, stderr.String())
					}
				}
			} else if err := waitOrKill(cmd, exited, 2*time.Minute); err != nil {
				t.Fatalf("adder %s: %v: %s", job, err, stderr.String())
			}
			n := checkAdded(t, path)
			if t.Failed() {
				t.Fatalf("after adder %s", job)
			}
			s, err = Open(path)
			must(t, err)
			if n == adderVisits {
				break
			}
		}
		must(t, s.Close())
		t.Logf("%d adders killed", kills)
		if kills < 25 {
			t.Errorf("only %d kills before the visits were all added: the test did not test much", kills)
		}
	})
}

// checkAdded checks the file after an adder ended or was killed and
// returns how many visits it has.
func checkAdded(t *testing.T, path string) int {
	t.Helper()
	r, err := OpenReadOnly(path)
	if err != nil {
		t.Errorf("reader after the adder's end: %v", err)
		return 0
	}
	defer r.Close()
	var check string
	if err := r.db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check: %q, %v", check, err)
	}
	checkCounts(t, r)
	vs, err := r.Visits("", 0)
	must(t, err)
	for i, v := range vs {
		if v.ID != adderID(i) || v.Seq != i+1 || v.State != Pending {
			t.Errorf("visit %d is %+v, want %s at seq %d, pending", i, v, adderID(i), i+1)
			break
		}
	}
	es, err := r.Events(EventQuery{})
	must(t, err)
	// Each visit's event is recorded before the visit is added, and again
	// by each adder that starts after it (a redelivery): the events go up
	// one visit at a time, never skip one, and at most one is for a visit
	// not added (its adder was killed between the two).
	last := -1
	for _, e := range es {
		var j int
		id, _ := e.Props["visit"].(string)
		if _, err := fmt.Sscanf(id, "e%05d", &j); err != nil || j > last+1 || j > len(vs) {
			t.Errorf("event %d is for visit %q, after events up to %s (%d visits)", e.ID, id, adderID(last), len(vs))
			return len(vs)
		}
		last = max(last, j)
	}
	if last < len(vs)-1 {
		t.Errorf("%d visits but events up to %s only", len(vs), adderID(last))
	}
	return len(vs)
}
