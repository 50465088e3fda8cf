package state

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash test re-executes the test binary as a writer (TestMain runs
// runHelper when helperEnv is set) and kills it with SIGKILL.
const (
	helperEnv  = "DPSBATCH_STATE_TEST_HELPER" // the role: "writer" or "adder"
	helperDB   = "DPSBATCH_STATE_TEST_DB"     // the state file
	helperOut  = "DPSBATCH_STATE_TEST_OUT"    // the folder of the visits' outputs
	helperJob  = "DPSBATCH_STATE_TEST_JOB"    // the job ID it records
	crashKills = 30
)

// runHelper is the writer subprocess: it does what a job's Pipeline does
// with the state file. It opens it, interrupts what a dead writer left
// running, and runs every runnable visit: VisitStarted, 2 ms of work, the
// visit's output
// written (temporary file, fsync, rename, fsync of the folder), a stage
// time, VisitEnded(done). It returns the exit code.
func runHelper(role string) int {
	if role == "adder" {
		return runAdder()
	}
	if role != "writer" {
		fmt.Fprintf(os.Stderr, "unknown helper role %q\n", role)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "writer:", err)
		return 1
	}
	s, err := Open(os.Getenv(helperDB))
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	out, job := os.Getenv(helperOut), os.Getenv(helperJob)
	if _, err := s.InterruptRunning("writer killed"); err != nil {
		return fail(err)
	}
	ids, err := s.Runnable()
	if err != nil {
		return fail(err)
	}
	dir, err := os.Open(out)
	if err != nil {
		return fail(err)
	}
	defer dir.Close()
	for _, id := range ids {
		t0 := time.Now()
		if err := s.VisitStarted(id, job, t0); err != nil {
			return fail(err)
		}
		time.Sleep(2 * time.Millisecond) // the visit's work
		if err := writeOutput(dir, filepath.Join(out, id), fmt.Sprintf("%s %s\n", id, job)); err != nil {
			return fail(err)
		}
		if err := s.StageDone(id, "write", time.Since(t0)); err != nil {
			return fail(err)
		}
		if err := s.VisitEnded(id, Done, "", time.Now()); err != nil {
			return fail(err)
		}
	}
	return 0
}

// writeOutput writes a visit's output the way a stage must for a crash
// to leave it whole or absent: a temporary file, fsync, rename, fsync of
// the folder.
func writeOutput(dir *os.File, path, content string) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return dir.Sync()
}

// TestCrashSafety kills the writer at random instants, about thirty times
// per journal mode, and after each kill checks the file: integrity_check
// ok, every visit recorded done has its output, written by the job the file
// says ran it, and stays done with that job (resume never runs it again);
// a writer reopening it (InterruptRunning, Runnable) is handed exactly the
// visits not done. At the end every visit is done.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a writer subprocess about sixty times")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"wal", "delete"} {
		t.Run(mode, func(t *testing.T) {
			t.Setenv(JournalEnv, mode)
			dir := t.TempDir()
			path, out := filepath.Join(dir, "run.db"), filepath.Join(dir, "out")
			must(t, os.Mkdir(out, 0o755))
			const visits = 1000
			ids := make([]string, visits)
			for i := range ids {
				ids[i] = fmt.Sprintf("v%04d", i)
			}
			s, err := Create(path, Run{ID: "crash"})
			must(t, err)
			must(t, s.AddVisits(ids))
			must(t, s.Close())

			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
			doneBy := map[string]Visit{} // visits seen done, as first seen
			kills, rounds, interruptedTotal := 0, 0, 0
			for ; ; rounds++ {
				if rounds > 200 {
					t.Fatalf("no end after %d writers", rounds)
				}
				job := fmt.Sprintf("job%03d", rounds)
				cmd := exec.Command(exe, "-test.run=^$")
				cmd.Env = append(os.Environ(), helperEnv+"=writer", helperDB+"="+path, helperOut+"="+out, helperJob+"="+job)
				var stderr lockedBuffer
				cmd.Stderr = &stderr
				must(t, cmd.Start())
				exited := make(chan error, 1)
				go func() { exited <- cmd.Wait() }()
				killed := false
				if kills < crashKills {
					// Any instant: during start-up and opening, between
					// visits, inside a commit, inside the output's write.
					delay := time.Duration(rng.Int64N(int64(100 * time.Millisecond)))
					select {
					case err := <-exited:
						if err != nil {
							t.Fatalf("writer %s: %v: %s", job, err, stderr.String())
						}
					case <-time.After(delay):
						cmd.Process.Signal(syscall.SIGKILL)
						err := <-exited
						killed = isKilled(err)
						if !killed && err != nil {
							t.Fatalf("writer %s: %v: %s", job, err, stderr.String())
						}
					}
				} else if err := waitOrKill(cmd, exited, 2*time.Minute); err != nil {
					t.Fatalf("writer %s: %v: %s", job, err, stderr.String())
				}
				if killed {
					kills++
				}
				allDone, interrupted := checkAfterCrash(t, path, out, ids, doneBy)
				interruptedTotal += interrupted
				if t.Failed() {
					t.Fatalf("after writer %s (killed: %v)", job, killed)
				}
				if allDone {
					break
				}
			}
			t.Logf("%d writers, %d killed, %d visits found running after a kill", rounds+1, kills, interruptedTotal)
			if kills < 25 {
				t.Errorf("only %d kills before the visits were all done: the test did not test much", kills)
			}
			if len(doneBy) != visits {
				t.Errorf("%d visits done, want %d", len(doneBy), visits)
			}
		})
	}
}

// checkAfterCrash checks the state file after a writer ended or was
// killed, then reopens it as the next writer would, and reports whether
// every visit is done and how many visits were found running.
func checkAfterCrash(t *testing.T, path, out string, ids []string, doneBy map[string]Visit) (allDone bool, interrupted int) {
	t.Helper()
	r, err := OpenReadOnly(path)
	if err != nil {
		t.Errorf("reader after the writer's end: %v", err)
		return false, 0
	}
	defer r.Close()
	var check string
	if err := r.db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check: %q, %v", check, err)
	}
	checkCounts(t, r)
	vs, err := r.Visits("", 0)
	if err != nil {
		t.Errorf("Visits: %v", err)
		return false, 0
	}
	var notDone []string
	for _, v := range vs {
		first, seen := doneBy[v.ID]
		if v.State != Done {
			if seen {
				t.Errorf("visit %s was done (job %s) and is now %s", v.ID, first.Job, v.State)
			}
			notDone = append(notDone, v.ID)
			if v.State == Running {
				interrupted++
			}
			continue
		}
		data, err := os.ReadFile(filepath.Join(out, v.ID))
		if want := fmt.Sprintf("%s %s\n", v.ID, v.Job); err != nil || string(data) != want {
			t.Errorf("visit %s is done by %s but its output is %q (%v), want %q", v.ID, v.Job, data, err, want)
		}
		if !seen {
			doneBy[v.ID] = v
		} else if first.Job != v.Job || first.Attempts != v.Attempts || !first.Ended.Equal(v.Ended) {
			t.Errorf("done visit %s changed: was %+v, now %+v: it ran again", v.ID, first, v)
		}
	}
	r.Close()

	w, err := Open(path)
	if err != nil {
		t.Errorf("writer reopening: %v", err)
		return false, interrupted
	}
	defer w.Close()
	n, err := w.InterruptRunning("writer killed")
	if err != nil || n != interrupted {
		t.Errorf("InterruptRunning = %d, %v; the reader saw %d running", n, err, interrupted)
	}
	runnable, err := w.Runnable()
	if err != nil {
		t.Errorf("Runnable: %v", err)
	}
	if len(runnable) != 0 || len(notDone) != 0 {
		if !reflect.DeepEqual(runnable, notDone) {
			t.Errorf("Runnable() = %d visits, want the %d not done", len(runnable), len(notDone))
		}
	}
	return len(notDone) == 0, interrupted
}

// isKilled reports whether a Wait error is death by SIGKILL.
func isKilled(err error) bool {
	ee, ok := err.(*exec.ExitError)
	if !ok {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// waitOrKill waits for the writer to finish, killing it after timeout.
func waitOrKill(cmd *exec.Cmd, exited <-chan error, timeout time.Duration) error {
	select {
	case err := <-exited:
		return err
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("did not finish in %v", timeout)
	}
}

// lockedBuffer is a bytes.Buffer safe for the writes of exec's copier.
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
