package jobs

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/injob"
	"github.com/dpsbatch/dpsbatch/internal/testenv"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/state"
)

// A state file in rollback-journal mode (a network file system's) with a
// reader that keeps a shared lock on it for twice the writer's busy
// timeout, again and again, while the job runs: rank 0 waits the reader
// out, with a warning in the job's log, and the run finishes with every
// visit done once.
func TestInJobOutlastsBusyReader(t *testing.T) {
	t.Setenv(state.JournalEnv, "delete")
	const busy = 150 * time.Millisecond
	e := newEnv(t, 6)
	dir := e.submit("run1")
	l := rundir.Layout{Dir: dir}
	var log testenv.SyncBuffer
	serveRun(t, l.State(), "1001", 0)
	j := &injob.InJob{StatePath: l.State(), JobID: "1001", BusyTimeout: busy, Logger: slog.New(slog.NewTextHandler(&log, nil))}

	// The reader: a status that holds its read transaction far too long.
	// Its first hold, taken before the job starts, lasts until the job
	// has found the file busy (or 30 s), so that the job meets the lock
	// whatever the machine's load does to the timing; then it holds for
	// twice the busy timeout, again and again.
	db, err := sql.Open("sqlite3", "file:"+l.State()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	quit, readerDone, holding := make(chan struct{}), make(chan int), make(chan struct{})
	go func() {
		holds := 0
		defer func() { readerDone <- holds }()
		for {
			select {
			case <-quit:
				return
			default:
			}
			tx, err := db.BeginTx(context.Background(), &sql.TxOptions{ReadOnly: true})
			if err != nil {
				t.Error(err)
				close(holding)
				return
			}
			if err := tx.QueryRow(`SELECT count(*) FROM visits`).Scan(new(int)); err == nil {
				holds++
				if holds == 1 {
					close(holding)
					for end := time.Now().Add(30 * time.Second); !strings.Contains(log.String(), "state file busy") && time.Now().Before(end); {
						time.Sleep(10 * time.Millisecond)
					}
				}
				time.Sleep(2 * busy)
			}
			tx.Rollback()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	<-holding

	dr := harness.RunOptions{PolicyPath: l.Policy(), VisitsPath: l.Visits(".csv"), RunID: "run1", RunDir: dir, Rank0: j.Hook}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dr.Ranks, dr.Size = harness.CommLocal, 3
	sum, err := harness.Run(ctx, dr)
	close(quit)
	holds := <-readerDone
	j.Summarize(sum)
	if endErr := j.End(sum, err); endErr != nil {
		t.Fatal(endErr)
	}
	if err != nil {
		t.Fatalf("run: %v\nlog:\n%s", err, log.String())
	}
	if holds < 2 {
		t.Fatalf("the reader held the file %d times; the test wants it held throughout the run", holds)
	}
	vs := visitStates(t, dir)
	for _, v := range vs {
		if v.State != state.Done || v.Attempts != 1 {
			t.Errorf("%s: %s after %d attempts; want done once", v.ID, v.State, v.Attempts)
		}
	}
	if sum.Visits != 6 || sum.Done != 6 {
		t.Errorf("summary: %d run, %d done; want 6, 6", sum.Visits, sum.Done)
	}
	if !strings.Contains(log.String(), "state file busy") {
		t.Errorf("the job's log has no warning of the busy state file:\n%s", log.String())
	}
	if got := runtest.JobsOf(t, dir)[0]; got.State != "COMPLETED" {
		t.Errorf("job recorded %+v; want COMPLETED", got)
	}
}

// mountTmpfs mounts a tmpfs of size bytes at dir until the test ends.
func mountTmpfs(t *testing.T, dir string, size int) {
	t.Helper()
	testenv.MountTmpfs(t, dir, fmt.Sprintf("size=%d", size))
}

// The runs root fills up during visit v004 (its stage fills it): the job
// cannot record v004's end and stops, and its summary says what the state
// file holds, 4 run and 3 done, not what the job meant to record.
func TestInJobSummaryFromStateDiskFull(t *testing.T) {
	e := newEnv(t, 6)
	e.site.Broker.StreamSizeMB = 1 // the run's events fit in the tmpfs
	mountTmpfs(t, e.root, 4<<20)
	filler := filepath.Join(e.root, "filler")
	e.policy = e.write("pipeline.yaml", fmt.Sprintf(`pipeline: tiny
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
events: {trigger: {topic: visits}}
stages:
  - name: work
    type: exec
    settings:
      command: [sh, -c, 'if [ "$1" = v004 ]; then head -c 64M /dev/zero >> "$2" 2>/dev/null; fi; exit 0', sh, "{visit}", %q]
`, filler))
	dir := e.submit("run1")
	l := rundir.Layout{Dir: dir}
	// The broker's store gets a file system of its own, so that only the
	// state file meets the full disk.
	mountTmpfs(t, l.BrokerDir(), 64<<20)
	var log testenv.SyncBuffer
	serveRun(t, l.State(), "1001", 0)
	j := &injob.InJob{StatePath: l.State(), JobID: "1001", Logger: slog.New(slog.NewTextHandler(&log, nil))}
	dr := harness.RunOptions{PolicyPath: l.Policy(), VisitsPath: l.Visits(".csv"), RunID: "run1", RunDir: dir, Rank0: j.Hook}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dr.Ranks, dr.Size = harness.CommLocal, 3
	sum, err := harness.Run(ctx, dr)
	if err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("run: %v; want the full disk's error\nlog:\n%s", err, log.String())
	}
	j.Summarize(sum)
	var out bytes.Buffer
	sum.Print(&out)
	if !strings.HasPrefix(out.String(), "visits: 4 run, 3 done, 0 failed") {
		t.Errorf("summary:\n%s\nwant 4 run, 3 done (v004's end is not in the state file)", out.String())
	}
	if !strings.Contains(log.String(), "no recorded end") {
		t.Errorf("the log does not warn of the visit without a recorded end:\n%s", log.String())
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if endErr := j.End(sum, err); endErr != nil {
		t.Fatal(endErr)
	}
	vs := visitStates(t, dir)
	for i, want := range []state.VisitState{state.Done, state.Done, state.Done, state.Running, state.Pending, state.Pending} {
		if vs[i].State != want {
			t.Errorf("%s is %s; want %s", vs[i].ID, vs[i].State, want)
		}
	}
}

// A starting job interrupts only the running visits of jobs that no
// longer run: its own earlier start (a requeue) and those Slurm has ended
// or queued again; a visit of a job Slurm still runs stays running and is
// not fed again.
func TestInJobHookInterruptsDeadJobsOnly(t *testing.T) {
	e := newEnv(t, 6)
	dir := e.submit("run1") // job 1001
	withState(t, dir, func(st *state.Store) {
		for _, id := range []string{"1002", "1003", "1004"} {
			if err := st.AddJob(state.Job{ID: id, Attempt: 2, Submitted: runtest.FixedNow(), State: "SUBMITTED"}); err != nil {
				t.Fatal(err)
			}
		}
		runtest.VisitAs(t, st, "1001", "v001", state.Running) // 1001 ended
		runtest.VisitAs(t, st, "1002", "v002", state.Running) // 1002 still runs
		runtest.VisitAs(t, st, "1003", "v003", state.Running) // 1003 requeued: pending again
		runtest.VisitAs(t, st, "1004", "v004", state.Running) // 1004 is the starting job, requeued
	})
	e.fake.forget("1001", "FAILED")
	e.fake.set("1002", "RUNNING")
	e.fake.set("1003", "PENDING")
	e.fake.set("1004", "RUNNING")
	l := rundir.Layout{Dir: dir}
	p := loadRunPolicy(t, dir)
	serveRun(t, l.State(), "1004", 0)
	j := &injob.InJob{StatePath: l.State(), JobID: "1004", Slurm: e.fake, Now: runtest.FixedNow}
	dr := &harness.RunOptions{RunID: "run1", RunDir: dir}
	if err := j.Hook(p, dr); err != nil {
		t.Fatal(err)
	}
	defer j.End(nil, nil)
	if got, want := fed(t, dr.Broker, p.Trigger.Topic, "run1"), []string{"v001", "v003", "v004", "v005", "v006"}; !slices.Equal(got, want) {
		t.Errorf("fed %v; want %v (v002 is job 1002's, still running)", got, want)
	}
	vs := visitStates(t, dir)
	for i, want := range []state.VisitState{state.Interrupted, state.Running, state.Interrupted, state.Interrupted} {
		if vs[i].State != want {
			t.Errorf("%s (job %s) is %s; want %s", vs[i].ID, vs[i].Job, vs[i].State, want)
		}
	}
}
