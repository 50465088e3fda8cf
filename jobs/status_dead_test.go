package jobs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/input/inputtest"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/state"
)

// A visit recorded running whose own job no longer runs it (Slurm has
// the job ended, forgotten, or pending again after a requeue; or its rank
// 0 is gone) is shown and counted as interrupted; the state file still
// says running (readers never write it). A time left is shown only while
// a job runs.
func TestStatusDeadJobsVisitsInterrupted(t *testing.T) {
	for _, tc := range []struct {
		name        string
		slurm       func(f *fakeBackend)
		noSlurm     bool         // Status without a backend
		recorded    state.JobEnd // rank 0's recorded end, "" for none
		lock        string       // rank-0 lock: "held", "free", "" (no file)
		running     int
		interrupted int
		eta         bool
	}{
		{name: "running, rank 0 alive", slurm: func(f *fakeBackend) { f.set("1001", "RUNNING") }, lock: "held", running: 1, eta: true},
		{name: "running, no lock file (an older rank 0)", slurm: func(f *fakeBackend) { f.set("1001", "RUNNING") }, running: 1, eta: true},
		{name: "running, rank 0 gone", slurm: func(f *fakeBackend) { f.set("1001", "RUNNING") }, lock: "free", interrupted: 1, eta: true},
		{name: "ended, still in squeue", slurm: func(f *fakeBackend) { f.set("1001", "FAILED") }, interrupted: 1},
		{name: "completing", slurm: func(f *fakeBackend) { f.set("1001", "COMPLETING") }, interrupted: 1},
		{name: "ended, in accounting", slurm: func(f *fakeBackend) { f.forget("1001", "FAILED") }, interrupted: 1},
		{name: "pending again after a requeue", slurm: func(f *fakeBackend) { f.set("1001", "PENDING") }, lock: "free", interrupted: 1},
		{name: "unknown to Slurm and accounting", slurm: func(f *fakeBackend) { f.forget("1001", "") }, interrupted: 1},
		{name: "Slurm not asked, no end recorded", noSlurm: true, running: 1},
		{name: "Slurm not asked, end recorded", noSlurm: true, recorded: "FAILED", interrupted: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 4)
			dir := e.submit("run1")
			withState(t, dir, func(st *state.Store) {
				runtest.VisitAs(t, st, "1001", "v001", state.Done)
				runtest.VisitAs(t, st, "1001", "v002", state.Done)
				runtest.VisitAs(t, st, "1001", "v003", state.Running)
				if tc.recorded != "" {
					if err := st.JobEnded("1001", tc.recorded, 1, "", runtest.FixedNow()); err != nil {
						t.Fatal(err)
					}
				}
			})
			l := rundir.Layout{Dir: dir}
			switch tc.lock {
			case "held":
				release, err := rundir.HoldRank0(l, "1001", time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer release()
			case "free":
				release, err := rundir.HoldRank0(l, "1001", time.Second)
				if err != nil {
					t.Fatal(err)
				}
				release()
			}
			var rs RunStatus
			if tc.noSlurm {
				all, err := Status(context.Background(), nil, []string{dir})
				if err != nil {
					t.Fatal(err)
				}
				rs = all[0]
			} else {
				tc.slurm(e.fake)
				rs = status(t, e, dir)
			}
			if rs.Counts["running"] != tc.running || rs.Counts["interrupted"] != tc.interrupted || rs.Counts["done"] != 2 || rs.Counts["pending"] != 1 {
				t.Errorf("counts %v; want %d running, %d interrupted, 2 done, 1 pending", rs.Counts, tc.running, tc.interrupted)
			}
			if rs.Rate <= 0 {
				t.Errorf("rate %v; want the run's average kept", rs.Rate)
			}
			if (rs.ETA > 0) != tc.eta {
				t.Errorf("time left %s; want one only while the job runs", rs.ETA)
			}
			if c := counts(t, dir); c[state.Running] != 1 {
				t.Errorf("the state file records %v; a reader must not change it", c)
			}
		})
	}
}

// The first job died while its --auto-resume follow-on waits in the
// queue: its running visit reads interrupted, the run pending, with no
// time left; wait's message says interrupted too.
func TestStatusDeadJobWithQueuedFollowOn(t *testing.T) {
	e := newEnv(t, 4)
	o := e.opts("run1")
	o.AutoResume = 1
	sub, err := Submit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	dir := sub.Dir
	withState(t, dir, func(st *state.Store) {
		runtest.VisitAs(t, st, "1001", "v001", state.Done)
		runtest.VisitAs(t, st, "1001", "v002", state.Done)
		runtest.VisitAs(t, st, "1001", "v003", state.Running)
	})
	e.fake.forget("1001", "FAILED")
	e.fake.set("1002", "PENDING")
	rs := status(t, e, dir)
	if rs.Counts["running"] != 0 || rs.Counts["interrupted"] != 1 || rs.Outcome != "pending" || !rs.Live || rs.ETA != 0 {
		t.Errorf("status: counts %v, outcome %s, live %v, time left %s; want 1 interrupted, pending, no time left",
			rs.Counts, rs.Outcome, rs.Live, rs.ETA)
	}
	// The follow-on is cancelled: wait's message counts the visit as
	// interrupted.
	e.fake.forget("1002", "CANCELLED")
	_, err = Wait(context.Background(), e.fake, dir, WaitOptions{Every: time.Millisecond, SlurmEvery: time.Millisecond})
	if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "2 done, 1 interrupted, 1 pending") {
		t.Errorf("Wait: %v; want unfinished with 2 done, 1 interrupted, 1 pending", err)
	}
}

// One pipeline of a production lost its rank 0 while the job runs the
// others: its running visit reads interrupted, the others' running.
func TestProductionStatusPipelineRank0Gone(t *testing.T) {
	e, file := prodEnv(t, inputtest.ChainProduction)
	sub := e.submitProd(file, "night3")
	dir, job := sub.Dir, sub.Jobs[0]
	l := rundir.Layout{Dir: dir}
	for _, name := range []string{"detect", "association"} {
		pl := l.Pipeline(name)
		withState(t, pl.Dir, func(st *state.Store) {
			if _, err := st.AddVisit("x1"); err != nil {
				t.Fatal(err)
			}
			runtest.VisitAs(t, st, job, "x1", state.Running)
		})
	}
	held, err := rundir.HoldRank0(l.Pipeline("association"), job, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held()
	gone, err := rundir.HoldRank0(l.Pipeline("detect"), job, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	gone() // detect's rank 0 died
	e.fake.set(job, "RUNNING")
	rs := status(t, e, dir)
	det, assoc := rs.Pipelines[0], rs.Pipelines[1]
	if det.Counts["running"] != 0 || det.Counts["interrupted"] != 1 {
		t.Errorf("detect: %v; want its running visit interrupted", det.Counts)
	}
	if assoc.Counts["running"] != 1 || assoc.Counts["interrupted"] != 0 {
		t.Errorf("association: %v; want its visit still running", assoc.Counts)
	}
	if rs.Counts["running"] != 1 || rs.Counts["interrupted"] != 1 {
		t.Errorf("production: %v; want 1 running, 1 interrupted", rs.Counts)
	}
}

// A job that died without recording why on a (nearly) full file system:
// status says how much space is left.
func TestStatusDiedOnFullDisk(t *testing.T) {
	e := newEnv(t, 4)
	e.site.Broker.StreamSizeMB = 1 // the run's events fit in the tmpfs
	mountTmpfs(t, e.root, 32<<20)
	dir := e.submit("run1")
	withState(t, dir, func(st *state.Store) {
		runtest.VisitAs(t, st, "1001", "v001", state.Running)
	})
	e.fake.forget("1001", "FAILED")
	if rs := status(t, e, dir); rs.DiskFull != nil || !rs.Jobs[0].Died {
		t.Fatalf("died with space left: job %+v, disk %+v; want died, no full disk", rs.Jobs[0], rs.DiskFull)
	}
	f, err := os.Create(filepath.Join(e.root, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	// Nearly full: what a reader needs to open the file (its WAL index)
	// is left.
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(fi.Size() - 1<<20); err != nil {
		t.Fatal(err)
	}
	rs := status(t, e, dir)
	if rs.DiskFull == nil || rs.DiskFull.Free > 2<<20 || rs.DiskFull.Size == 0 || rs.DiskFull.Dir != dir {
		t.Errorf("died on a full disk: %+v; want the run directory's space", rs.DiskFull)
	}
}
