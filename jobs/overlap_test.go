package jobs

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/injob"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/state"
)

// busyRun is a run whose job 1001 is running visits (started, a fresh
// heartbeat, v001 done and v002 running) when job 1002 starts.
func busyRun(t *testing.T) (*env, string) {
	t.Helper()
	e := newEnv(t, 4)
	dir := e.submit("run1")
	withState(t, dir, func(st *state.Store) {
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(st.JobStarted("1001", "n1", time.Now()))
		runtest.VisitAs(t, st, "1001", "v001", state.Done)
		runtest.VisitAs(t, st, "1001", "v002", state.Running)
		must(st.Heartbeat("1001", time.Now(), "v002"))
		must(st.AddJob(state.Job{ID: "1002", Attempt: 2, Submitted: time.Now(), State: "SUBMITTED"}))
	})
	e.fake.set("1001", "RUNNING")
	return e, dir
}

// hookAsync runs job's Hook on its own goroutine; the channel gets its
// error once it returns.
func hookAsync(t *testing.T, dir string, j *injob.InJob, stop <-chan struct{}) (<-chan error, *harness.RunOptions) {
	t.Helper()
	p := loadRunPolicy(t, dir)
	dr := &harness.RunOptions{RunID: "run1", RunDir: dir, Stop: stop}
	done := make(chan error, 1)
	go func() { done <- j.Hook(p, dr) }()
	return done, dr
}

func returned(done <-chan error, within time.Duration) (error, bool) {
	select {
	case err := <-done:
		return err, true
	case <-time.After(within):
		return nil, false
	}
}

// A job that starts while another job of the run runs visits waits for
// it to end, leaving its running visit alone, then runs what is left.
func TestInJobWaitsForTheJobRunningVisits(t *testing.T) {
	_, dir := busyRun(t)
	serveRun(t, rundir.Layout{Dir: dir}.State(), "1002", 0)
	j := &injob.InJob{StatePath: rundir.Layout{Dir: dir}.State(), JobID: "1002", Every: 50 * time.Millisecond}
	done, _ := hookAsync(t, dir, j, nil)
	if err, ok := returned(done, 700*time.Millisecond); ok {
		j.End(nil, nil)
		t.Fatalf("Hook returned (%v) while job 1001 runs visits; want it to wait", err)
	}
	if vs := visitStates(t, dir); vs[1].State != state.Running {
		t.Errorf("v002 is %s while its job runs; want running", vs[1].State)
	}
	if js := runtest.JobsOf(t, dir); !js[1].Started.IsZero() {
		t.Errorf("job 1002 recorded as started while it waits: %+v", js[1])
	}
	withState(t, dir, func(st *state.Store) {
		if err := st.VisitEnded("v002", state.Done, "", time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := st.JobEnded("1001", "COMPLETED", 0, "", time.Now()); err != nil {
			t.Fatal(err)
		}
	})
	err, ok := returned(done, 10*time.Second)
	if !ok || err != nil {
		t.Fatalf("Hook after job 1001 ended: returned %v, %v; want it to go ahead", ok, err)
	}
	j.End(nil, nil)
	vs := visitStates(t, dir)
	if vs[1].State != state.Done || vs[1].Attempts != 1 {
		t.Errorf("v002 %+v; want done once", vs[1])
	}
	if js := runtest.JobsOf(t, dir); js[1].Started.IsZero() {
		t.Errorf("job 1002 %+v; want started", js[1])
	}
}

// Slurm saying the other job ended settles it at once, whatever its
// heartbeat says (a job killed a moment ago).
func TestInJobGoesAheadWhenSlurmSaysTheOtherEnded(t *testing.T) {
	e, dir := busyRun(t)
	e.fake.forget("1001", "FAILED")
	serveRun(t, rundir.Layout{Dir: dir}.State(), "1002", 0)
	j := &injob.InJob{StatePath: rundir.Layout{Dir: dir}.State(), JobID: "1002", Every: 50 * time.Millisecond, Slurm: e.fake}
	done, _ := hookAsync(t, dir, j, nil)
	err, ok := returned(done, 10*time.Second)
	if !ok || err != nil {
		t.Fatalf("Hook: returned %v, %v; want it to go ahead", ok, err)
	}
	j.End(nil, nil)
	if vs := visitStates(t, dir); vs[1].State != state.Interrupted {
		t.Errorf("v002 %+v; want interrupted (its job died)", vs[1])
	}
}

// Asked to stop while it waits, the job ends having run no visit, and
// its record says why.
func TestInJobStoppedWhileWaiting(t *testing.T) {
	_, dir := busyRun(t)
	serveRun(t, rundir.Layout{Dir: dir}.State(), "1002", 0)
	j := &injob.InJob{StatePath: rundir.Layout{Dir: dir}.State(), JobID: "1002", Every: 50 * time.Millisecond}
	stop := make(chan struct{})
	done, _ := hookAsync(t, dir, j, stop)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	err, ok := returned(done, 10*time.Second)
	if !ok || !errors.Is(err, harness.ErrInterrupted) || !strings.Contains(err.Error(), "job 1001") {
		t.Fatalf("Hook stopped while waiting: %v, %v; want ErrInterrupted naming job 1001", ok, err)
	}
	if err := j.End(nil, err); err != nil {
		t.Fatal(err)
	}
	js := runtest.JobsOf(t, dir)
	if js[1].State != "STOPPED" || !strings.Contains(js[1].Reason, "waiting for job 1001") || js[1].Ended.IsZero() {
		t.Errorf("job 1002 recorded %+v; want stopped, naming job 1001", js[1])
	}
	if vs := visitStates(t, dir); vs[1].State != state.Running {
		t.Errorf("v002 is %s; want still running (its job runs)", vs[1].State)
	}
}

// Two jobs of a run starting together: one claims the run, the other
// waits until it has ended.
func TestInJobTwoStartingTogether(t *testing.T) {
	e := newEnv(t, 4)
	dir := e.submit("run1")
	withState(t, dir, func(st *state.Store) {
		if err := st.AddJob(state.Job{ID: "1002", Attempt: 2, Submitted: time.Now(), State: "SUBMITTED"}); err != nil {
			t.Fatal(err)
		}
	})
	var wg sync.WaitGroup
	jobs := []*injob.InJob{
		{StatePath: rundir.Layout{Dir: dir}.State(), JobID: "1001", Every: 50 * time.Millisecond},
		{StatePath: rundir.Layout{Dir: dir}.State(), JobID: "1002", Every: 50 * time.Millisecond},
	}
	dones := make([]<-chan error, 2)
	stops := make([]func(), 2)
	for i, j := range jobs {
		stops[i] = serveRun(t, j.StatePath, j.JobID, 0)
		wg.Add(1)
		go func() { defer wg.Done(); dones[i], _ = hookAsync(t, dir, j, nil) }()
	}
	wg.Wait()
	first := -1
	deadline := time.After(10 * time.Second)
	for first < 0 {
		select {
		case err := <-dones[0]:
			first = 0
			if err != nil {
				t.Fatal(err)
			}
		case err := <-dones[1]:
			first = 1
			if err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatal("neither job went ahead")
		}
	}
	second := 1 - first
	if err, ok := returned(dones[second], 700*time.Millisecond); ok {
		jobs[second].End(nil, nil)
		t.Fatalf("both jobs went ahead (the second: %v)", err)
	}
	// The second has not claimed the run (the embedded broker's store,
	// which the first holds, would also hold it back: an external
	// broker would not).
	if js := runtest.JobsOf(t, dir); !js[second].Started.IsZero() || js[first].Started.IsZero() {
		t.Errorf("jobs %+v; want job %s started, %s waiting", js, jobs[first].JobID, jobs[second].JobID)
	}
	jobs[first].End(nil, nil)
	stops[first]() // the end of its job: its script stops its broker
	if err, ok := returned(dones[second], 10*time.Second); !ok || err != nil {
		t.Fatalf("the second job once the first ended: %v, %v", ok, err)
	}
	jobs[second].End(nil, nil)
}
