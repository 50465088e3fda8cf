package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/injob"
	"github.com/dpsbatch/dpsbatch/input/inputtest"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

// Resumes of one run started at once submit one job: the others find
// the run locked, or live once they hold the lock. Slurm answering
// slowly widens the window in which each would see the run idle.
func TestResumeConcurrentSubmitsOnce(t *testing.T) {
	e := newEnv(t, 6)
	dir := deadRun(t, e)
	e.fake.onJobs = func(int, *fakeBackend) { time.Sleep(100 * time.Millisecond) }
	const n = 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := e.resumeOpts(dir)
			o.WaitLock = 10 * time.Second
			_, errs[i] = Resume(context.Background(), o)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrRunLive):
			t.Errorf("Resume: %v; want success or ErrRunLive", err)
		}
	}
	if _, _, subs := e.fake.calls(); ok != 1 || subs != 2 {
		t.Errorf("%d resumes succeeded, %d submissions in all; want 1, and 2 (the first job and one resume)", ok, subs)
	}
	if js := runtest.JobsOf(t, dir); len(js) != 2 || js[1].Attempt != 2 {
		t.Errorf("jobs %+v; want 1001 and one attempt 2", js)
	}
}

// A resume that finds the run locked waits, then fails naming the
// holder; nothing is submitted or changed. Once the holder is done, or
// within a longer --wait-lock, it goes ahead.
func TestResumeWaitsForTheLock(t *testing.T) {
	for _, mode := range []string{"flock", "state row"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "state row" {
				flock = func(int, int) error { return unix.ENOLCK }
				t.Cleanup(func() { flock = unix.Flock })
			}
			e := newEnv(t, 6)
			dir := deadRun(t, e)
			lk, err := lockRun(context.Background(), rundir.Layout{Dir: dir}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if (mode == "flock") != (lk.f != nil) {
				t.Fatalf("lock %+v; want a %s lock", lk, mode)
			}
			before := visitStates(t, dir)
			o := e.resumeOpts(dir)
			o.WaitLock = 300 * time.Millisecond
			start := time.Now()
			_, err = Resume(context.Background(), o)
			host, _ := os.Hostname()
			if !errors.Is(err, ErrRunLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d on %s", os.Getpid(), host)) ||
				!strings.Contains(err.Error(), filepath.Base(os.Args[0])) || !strings.Contains(err.Error(), "--wait-lock") {
				t.Fatalf("Resume of a locked run: %v; want ErrRunLocked naming this process, its host and command", err)
			}
			if took := time.Since(start); took < 250*time.Millisecond {
				t.Errorf("gave up after %s; want it to wait --wait-lock", took)
			}
			if _, _, subs := e.fake.calls(); subs != 1 {
				t.Errorf("%d submissions; want the first job's only", subs)
			}
			if after := visitStates(t, dir); !slices.Equal(before, after) {
				t.Errorf("visits changed under another's lock")
			}
			go func() { time.Sleep(300 * time.Millisecond); lk.unlock() }()
			o.WaitLock = 20 * time.Second
			if res, err := Resume(context.Background(), o); err != nil || res.Attempt != 2 {
				t.Fatalf("Resume once the lock is free: %+v, %v", res, err)
			}
		})
	}
}

// A state-file lock row whose holder died on this host is taken over.
func TestStateLockOfADeadHolder(t *testing.T) {
	flock = func(int, int) error { return unix.EOPNOTSUPP }
	t.Cleanup(func() { flock = unix.Flock })
	e := newEnv(t, 2)
	dir := e.submit("run1")
	host, _ := os.Hostname()
	withState(t, dir, func(st *state.Store) {
		now := time.Now()
		dead := state.LockHolder{Token: "x", Host: host, PID: 1 << 22, Command: "dpsbatch resume run1", Taken: now, Expires: now.Add(time.Hour)}
		if _, ok, err := st.TakeLock(dead, nil); err != nil || !ok {
			t.Fatalf("TakeLock: %v %v", ok, err)
		}
	})
	lk, err := lockRun(context.Background(), rundir.Layout{Dir: dir}, 200*time.Millisecond)
	if err != nil {
		t.Fatalf("lock held by a dead process: %v", err)
	}
	lk.unlock()
}

// A resume killed after sbatch accepted its job, before recording it,
// leaves a submission whose job the next resume finds by name and
// adopts: one job for the attempt, whether it is still queued (the run
// is then live) or has ended already (the next attempt follows).
func TestResumeAdoptsAJobItsSubmitterLost(t *testing.T) {
	for _, ended := range []bool{false, true} {
		t.Run(fmt.Sprintf("ended=%v", ended), func(t *testing.T) {
			e := newEnv(t, 6)
			dir := deadRun(t, e)
			e.fake.afterSubmit = func(id string) { panic("killed after sbatch accepted " + id) }
			func() {
				defer func() {
					if r := recover(); r == nil {
						t.Fatal("the resume was not killed")
					}
				}()
				Resume(context.Background(), e.resumeOpts(dir))
			}()
			e.fake.afterSubmit = nil
			if js := runtest.JobsOf(t, dir); len(js) != 1 {
				t.Fatalf("jobs %+v; want the lost job unrecorded", js)
			}
			name := e.fake.submits[1].Name
			if !strings.HasPrefix(name, "run1:a2-") {
				t.Errorf("job name %q; want run1:a2-TOKEN", name)
			}
			if ended {
				e.fake.forget("1002", "COMPLETED")
			}
			res, err := Resume(context.Background(), e.resumeOpts(dir))
			js := runtest.JobsOf(t, dir)
			var attempt2 []string
			for _, j := range js {
				if j.Attempt == 2 {
					attempt2 = append(attempt2, j.ID)
				}
			}
			if !slices.Equal(attempt2, []string{"1002"}) {
				t.Errorf("attempt 2 has jobs %v; want 1002 alone (jobs %+v)", attempt2, js)
			}
			if !ended {
				if !errors.Is(err, ErrRunLive) || !strings.Contains(err.Error(), "1002 pending") {
					t.Errorf("second resume: %v; want ErrRunLive naming the adopted job", err)
				}
				if _, _, subs := e.fake.calls(); subs != 2 {
					t.Errorf("%d submissions; want 2", subs)
				}
				return
			}
			if err != nil || res.Attempt != 3 || !slices.Equal(res.Jobs, []string{"1003"}) {
				t.Errorf("second resume: %+v, %v; want job 1003 as attempt 3", res, err)
			}
			rs, err := Status(context.Background(), e.fake, []string{dir})
			if err != nil || len(rs[0].Jobs) != 3 || rs[0].Jobs[1].ID != "1002" || rs[0].Jobs[1].State != "COMPLETED" {
				t.Errorf("status: %+v, %v; want 1002 listed as attempt 2, completed", rs, err)
			}
		})
	}
}

// A submission that never reached Slurm is voided by the next resume,
// which takes the attempt number again.
func TestResumeVoidsASubmissionSlurmNeverHad(t *testing.T) {
	e := newEnv(t, 6)
	dir := deadRun(t, e)
	withState(t, dir, func(st *state.Store) {
		if err := st.RecordSubmission(rundir.NewSubmission("run1", 2, runtest.FixedNow())); err != nil {
			t.Fatal(err)
		}
	})
	res, err := Resume(context.Background(), e.resumeOpts(dir))
	if err != nil || res.Attempt != 2 || !slices.Equal(res.Jobs, []string{"1002"}) {
		t.Fatalf("resume: %+v, %v; want 1002 as attempt 2", res, err)
	}
	st, err := state.OpenReadOnly(rundir.Layout{Dir: dir}.State())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	subs, _ := st.Submissions()
	if len(subs) != 3 || subs[1].Void == "" || subs[2].Job != "1002" || subs[2].Attempt != 2 {
		t.Errorf("submissions %+v; want the first's job, the lost one void, 1002's", subs)
	}
}

// A job that finds no row for its own ID records itself, under the
// submission its Slurm name carries.
func TestInJobRecordsItself(t *testing.T) {
	e := newEnv(t, 6)
	dir := deadRun(t, e)
	sub := rundir.NewSubmission("run1", 2, runtest.FixedNow())
	withState(t, dir, func(st *state.Store) {
		if err := st.RecordSubmission(sub); err != nil {
			t.Fatal(err)
		}
	})
	t.Setenv("SLURM_JOB_NAME", sub.Name)
	t.Setenv("DPSBATCH_ATTEMPT", "")
	l := rundir.Layout{Dir: dir}
	serveRun(t, l.State(), "2002", 0)
	j := &injob.InJob{StatePath: l.State(), JobID: "2002", Now: func() time.Time { return runtest.FixedNow().Add(time.Hour) }}
	dr := &harness.RunOptions{RunID: "run1", RunDir: dir}
	if err := j.Hook(loadRunPolicy(t, dir), dr); err != nil {
		t.Fatal(err)
	}
	j.End(nil, nil)
	js := runtest.JobsOf(t, dir)
	if len(js) != 2 || js[1].ID != "2002" || js[1].Attempt != 2 || js[1].Started.IsZero() || js[1].Ended.IsZero() {
		t.Errorf("jobs %+v; want 2002 recorded as attempt 2, started and ended", js)
	}
	// The next resume finds the submission settled: nothing to adopt.
	e.fake.forget("2002", "COMPLETED")
	res, err := Resume(context.Background(), e.resumeOpts(dir))
	if err != nil || res.Attempt != 3 {
		t.Errorf("resume: %+v, %v; want attempt 3", res, err)
	}
	if slices.Contains(e.fake.named, sub.Name) {
		t.Errorf("asked Slurm about %s, which the job recorded", sub.Name)
	}
}

// A program started while the lock is shared (sbatch) holds it on after
// this process lets go, as it would after this process was killed; the
// lock is free once the program ends.
func TestLockSharedWithSbatch(t *testing.T) {
	e := newEnv(t, 2)
	dir := e.submit("run1")
	l := rundir.Layout{Dir: dir}
	lk, err := lockRun(context.Background(), l, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = lk.sharing(func() error {
		return exec.Command("sh", "-c", "sleep 2 </dev/null >/dev/null 2>&1 &").Run()
	})
	if err != nil {
		t.Fatal(err)
	}
	lk.f.Close() // as if killed: no unlock
	if _, err := lockRun(context.Background(), l, 300*time.Millisecond); !errors.Is(err, ErrRunLocked) ||
		!strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("lock while the program holds it: %v; want ErrRunLocked naming this process", err)
	}
	lk2, err := lockRun(context.Background(), l, 20*time.Second)
	if err != nil {
		t.Fatalf("lock once the program ended: %v", err)
	}
	lk2.unlock()
	// Programs started outside sharing do not hold it.
	lk3, err := lockRun(context.Background(), l, 0)
	if err != nil {
		t.Fatal(err)
	}
	exec.Command("sh", "-c", "sleep 2 </dev/null >/dev/null 2>&1 &").Run()
	lk3.unlock()
	if lk4, err := lockRun(context.Background(), l, 300*time.Millisecond); err != nil {
		t.Errorf("lock after an unshared program: %v", err)
	} else {
		lk4.unlock()
	}
}

// A production's broker, started by a job its submitter never recorded,
// records the job (its pipelines find the broker through the job's row).
func TestServeBrokerRecordsItsUnrecordedJob(t *testing.T) {
	e, file := prodEnv(t, inputtest.ChainProduction)
	dir := e.submitProd(file, "prod1").Dir
	sub := rundir.NewSubmission("prod1", 2, runtest.FixedNow())
	withState(t, dir, func(st *state.Store) {
		if err := st.RecordSubmission(sub); err != nil {
			t.Fatal(err)
		}
	})
	t.Setenv("SLURM_JOB_NAME", sub.Name)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	urls := make(chan string, 1)
	served := make(chan error, 1)
	go func() { served <- injob.ServeBroker(ctx, dir, "3003", 0, nil, func(u string) { urls <- u }) }()
	select {
	case url := <-urls:
		js := runtest.JobsOf(t, dir)
		if len(js) != 2 || js[1].ID != "3003" || js[1].Attempt != 2 || js[1].Broker != url || js[1].Started.IsZero() {
			t.Errorf("jobs %+v; want 3003 as attempt 2, started, at %s", js, url)
		}
	case err := <-served:
		t.Fatalf("ServeBroker: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the broker did not serve within 30s")
	}
	cancel()
	<-served
}

// cancel also cancels a job its submitter died before recording.
func TestCancelFindsAnUnrecordedJob(t *testing.T) {
	e := newEnv(t, 6)
	dir := deadRun(t, e)
	e.fake.afterSubmit = func(id string) { panic("killed after sbatch accepted " + id) }
	func() {
		defer func() { recover() }()
		Resume(context.Background(), e.resumeOpts(dir))
	}()
	e.fake.afterSubmit = nil
	got, err := Cancel(context.Background(), e.fake, dir)
	if err != nil || !slices.Equal(got, []string{"1002"}) || !slices.Equal(e.fake.cancels, []string{"1002"}) {
		t.Errorf("Cancel = %v, %v (cancels %v); want the unrecorded 1002", got, err, e.fake.cancels)
	}
}

// Of several jobs found under a submission's name, the one adopted is the
// earliest: job IDs compare as numbers, so 99 comes before 100.
func TestEarliestJob(t *testing.T) {
	for _, ids := range [][]string{{"100", "99"}, {"99", "100"}, {"1000", "998", "999"}} {
		var found []scheduler.Job
		for _, id := range ids {
			found = append(found, scheduler.Job{ID: id})
		}
		want := slices.MinFunc(ids, func(a, b string) int { return cmp.Compare(atoi(t, a), atoi(t, b)) })
		if got := earliest(found).ID; got != want {
			t.Errorf("earliest of %v: %s; want %s", ids, got, want)
		}
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
