package jobs

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

// usageFake adds accounting's usage to the scripted Slurm: usage answers
// Usage, err fails it.
type usageFake struct {
	*fakeBackend
	usage map[string]scheduler.Usage
	err   error
	asked [][]string
}

func (f *usageFake) Usage(ctx context.Context, ids []string) (map[string]scheduler.Usage, error) {
	f.asked = append(f.asked, slices.Clone(ids))
	out := map[string]scheduler.Usage{}
	for _, id := range ids {
		if u, ok := f.usage[id]; ok {
			out[id] = u
		}
	}
	return out, f.err
}

var _ scheduler.UsageReader = (*usageFake)(nil)

// lookedAt is Status then RecordUsage of one run, as the status command
// does.
func lookedAt(t *testing.T, b scheduler.Backend, dir string) RunStatus {
	t.Helper()
	all, err := Status(context.Background(), b, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	RecordUsage(context.Background(), b, all)
	return all[0]
}

// A job's usage is asked for once Slurm says it ended; an answer that is
// not final is not stored and asked for again; a final one is stored in
// the state file, shown by every status after, and never asked for again.
// Status alone writes nothing.
func TestRecordUsage(t *testing.T) {
	e := newEnv(t, 2)
	o := e.opts("run1")
	o.Request.MemPerSliceMB = 200
	sub, err := Submit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	f := &usageFake{fakeBackend: e.fake, usage: map[string]scheduler.Usage{}}
	e.fake.set("1001", "RUNNING")
	if rs := lookedAt(t, f, sub.Dir); len(f.asked) != 0 || rs.Usage != nil {
		t.Fatalf("a running job's usage was asked for (%v) or shown (%+v)", f.asked, rs.Usage)
	}

	e.fake.set("1001", "COMPLETED")
	used := scheduler.Usage{Job: "1001", State: "COMPLETED", Elapsed: 7 * time.Second, CPUs: 3, ReqMemMB: 600,
		Steps: []scheduler.StepUsage{
			{Step: "batch", Name: "batch", State: "COMPLETED", Elapsed: 7 * time.Second, CPU: 500 * time.Millisecond, Tasks: 1},
			{Step: "0", Name: "dpsbatch", State: "RUNNING", Elapsed: 5 * time.Second, CPU: 2 * time.Second, Tasks: 3,
				MaxRSS: 100 << 20, MaxRSSNode: "n1"},
		}}
	f.usage["1001"] = used
	if rs := lookedAt(t, f, sub.Dir); len(f.asked) != 1 || rs.Usage != nil || rs.Jobs[0].Usage != nil {
		t.Fatalf("a usage not final: asked %v, shown %+v", f.asked, rs.Usage)
	}

	used.Final, used.Steps[1].State = true, "COMPLETED"
	f.usage["1001"] = used
	rs := lookedAt(t, f, sub.Dir)
	want := RunUsage{Jobs: 1, ElapsedSeconds: 7, CPUSeconds: 2.5, MaxRSSBytes: 100 << 20, MaxRSSJob: "1001", MemPerSliceMB: 200}
	if len(f.asked) != 2 || rs.Usage == nil || *rs.Usage != want {
		t.Fatalf("a final usage: asked %v, shown %+v; want %+v", f.asked, rs.Usage, want)
	}
	if ju := rs.Jobs[0].Usage; ju == nil || ju.MaxRSSStep != "0" || ju.MaxRSSNode != "n1" || ju.CPUs != 3 || ju.ReqMemMB != 600 || len(ju.Steps) != 2 {
		t.Errorf("job 1001's usage %+v", ju)
	}

	again, err := Status(context.Background(), e.fake, []string{sub.Dir})
	if err != nil {
		t.Fatal(err)
	}
	if again[0].Usage == nil || *again[0].Usage != want {
		t.Errorf("status after: usage %+v, want %+v from the state file", again[0].Usage, want)
	}
	if lookedAt(t, f, sub.Dir); len(f.asked) != 2 {
		t.Errorf("a stored usage was asked for again: %v", f.asked)
	}
}

// Status reads usage and writes nothing; accounting that fails leaves a
// note and the status as it was.
func TestStatusWritesNoUsage(t *testing.T) {
	e := newEnv(t, 2)
	dir := e.submit("run1")
	e.fake.set("1001", "COMPLETED")
	f := &usageFake{fakeBackend: e.fake, err: errors.New("sacct: slurmdbd down"),
		usage: map[string]scheduler.Usage{"1001": {Job: "1001", State: "COMPLETED", Final: true}}}
	if _, err := Status(context.Background(), f, []string{dir}); err != nil {
		t.Fatal(err)
	}
	withState(t, dir, func(st *state.Store) {
		if us, err := st.Usage(); err != nil || len(us) != 0 {
			t.Errorf("Status stored usage %+v, %v", us, err)
		}
	})
	if rs := lookedAt(t, f, dir); rs.Usage != nil || rs.UsageNote != "usage not asked: sacct: slurmdbd down" {
		t.Errorf("accounting failed: usage %+v, note %q", rs.Usage, rs.UsageNote)
	}
}

// Wait stores the usage of the run's ended job before it returns, and
// Resume does before it submits again.
func TestWaitAndResumeRecordUsage(t *testing.T) {
	e := newEnv(t, 2)
	dir := e.submit("run1")
	withState(t, dir, func(st *state.Store) { runtest.VisitAs(t, st, "1001", visitIDs(2)[0], state.Done) })
	e.fake.set("1001", "COMPLETED")
	f := &usageFake{fakeBackend: e.fake, usage: map[string]scheduler.Usage{
		"1001": {Job: "1001", State: "COMPLETED", Final: true, Elapsed: time.Minute},
		"1002": {Job: "1002", State: "CANCELLED", Final: true, Elapsed: time.Second}}}
	rs, err := Wait(context.Background(), f, dir, waitOpts)
	if !errors.Is(err, ErrIncomplete) || rs.Usage == nil || rs.Usage.ElapsedSeconds != 60 || len(f.asked) != 1 {
		t.Fatalf("Wait: %v, usage %+v, asked %v; want the unfinished run with job 1001's minute", err, rs.Usage, f.asked)
	}

	if _, err := Resume(context.Background(), ResumeOptions{Site: e.site, Backend: f, Dir: dir, Now: runtest.FixedNow}); err != nil {
		t.Fatal(err)
	}
	e.fake.set("1002", "CANCELLED")
	if _, err := Resume(context.Background(), ResumeOptions{Site: e.site, Backend: f, Dir: dir, Now: runtest.FixedNow}); err != nil {
		t.Fatal(err)
	}
	withState(t, dir, func(st *state.Store) {
		if us, err := st.Usage(); err != nil || len(us) != 2 || us[1].Job != "1002" {
			t.Errorf("after two resumes the state file holds usage %+v, %v; want jobs 1001 and 1002", us, err)
		}
	})
	if len(f.asked) != 2 || !slices.Equal(f.asked[1], []string{"1002"}) {
		t.Errorf("resume asked about %v, want 1002 alone", f.asked)
	}
}
