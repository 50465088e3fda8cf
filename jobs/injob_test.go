package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/injob"
	"github.com/dpsbatch/dpsbatch/input/inputtest"
	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/state"
)

// inJobRun is a submitted run of six visits whose first job (1001) died
// having done v001, failed v003 and left v002 running, and a second job
// (1002) about to start: its rank 0 is what these tests play.
func inJobRun(t *testing.T) (*env, string) {
	t.Helper()
	e := newEnv(t, 6)
	dir := e.submit("run1")
	withState(t, dir, func(st *state.Store) {
		runtest.VisitAs(t, st, "1001", "v001", state.Done)
		runtest.VisitAs(t, st, "1001", "v002", state.Running)
		runtest.VisitAs(t, st, "1001", "v003", state.Failed)
		if err := st.AddJob(state.Job{ID: "1002", Attempt: 2, Submitted: runtest.FixedNow(), State: "SUBMITTED"}); err != nil {
			t.Fatal(err)
		}
	})
	return e, dir
}

// loadRunPolicy loads the run's copy of the policy, as every rank does.
func loadRunPolicy(t *testing.T, dir string) *harness.Policy {
	t.Helper()
	p, err := harness.Load(rundir.Layout{Dir: dir}.Policy(), harness.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fed reads the visit IDs the hook published, up to no-more-data.
func fed(t *testing.T, b events.Broker, topic, runID string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sub, err := b.Subscribe(ctx, topic, runID)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var ids []string
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("after %v: %v", ids, err)
		}
		if ev.Kind == events.KindNoMoreData {
			return ids
		}
		id, _ := ev.Visit()
		ids = append(ids, id)
	}
}

func TestInJobHook(t *testing.T) {
	_, dir := inJobRun(t)
	l := rundir.Layout{Dir: dir}
	p := loadRunPolicy(t, dir)
	serveRun(t, l.State(), "1002", 0)
	j := &injob.InJob{StatePath: l.State(), JobID: "1002", Now: func() time.Time { return runtest.FixedNow().Add(time.Hour) }}
	dr := &harness.RunOptions{RunID: "run1", RunDir: dir, VisitsPath: filepath.Join(dir, "elsewhere.csv")}
	if err := j.Hook(p, dr); err != nil {
		t.Fatal(err)
	}
	defer j.End(nil, nil)
	if !dr.Feed || dr.Broker == nil || dr.Recorder == nil {
		t.Fatalf("RunOptions after Hook: Feed %v Broker %v Recorder %v", dr.Feed, dr.Broker, dr.Recorder)
	}
	if dr.Stop != nil {
		t.Error("Stop set without a stop file")
	}
	// The stale running visit is interrupted and runs again; the failed
	// one waits for a resume; pending ones run, in order. The visit list
	// is the run's copy, not dr.VisitsPath.
	if got, want := fed(t, dr.Broker, p.Trigger.Topic, "run1"), []string{"v002", "v004", "v005", "v006"}; !slices.Equal(got, want) {
		t.Errorf("fed %v; want %v", got, want)
	}
	vs := visitStates(t, dir)
	if vs[1].State != state.Interrupted || !strings.Contains(vs[1].Err, "ended before it finished") {
		t.Errorf("v002 %+v; want interrupted", vs[1])
	}
	if vs[2].State != state.Failed {
		t.Errorf("v003 %+v; want still failed", vs[2])
	}
	js := runtest.JobsOf(t, dir)
	if host, _ := os.Hostname(); js[1].ID != "1002" || !js[1].Started.Equal(runtest.FixedNow().Add(time.Hour)) || js[1].Host != host {
		t.Errorf("job 1002 recorded as %+v; want started now on %s", js[1], host)
	}

	// The recorder writes what the harness reports.
	r := dr.Recorder
	at := runtest.FixedNow().Add(2 * time.Hour)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.VisitStarted("v002", at))
	must(r.StageDone("v002", "work", 3*time.Second))
	must(r.VisitEnded("v002", harness.VisitResult{Outcome: harness.VisitDone}))
	must(r.VisitStarted("v004", at))
	must(r.SliceFailed(harness.SliceFailure{Visit: "v004", Stage: "work", Slice: 2, DataID: "ccd=2", Err: "exit 1", Capture: "captures/visit-v004/work.slice2-ccd=2.failed.json"}))
	must(r.VisitEnded("v004", harness.VisitResult{Outcome: harness.VisitFailed, Err: "1 of 2 data IDs failed", Capture: "captures/visit-v004/work.pipeline.failed.json"}))
	must(r.VisitStarted("v005", at))
	must(r.VisitEnded("v005", harness.VisitResult{Outcome: harness.VisitInterrupted, Err: "interrupted"}))
	if err := r.VisitEnded("v006", harness.VisitResult{}); err == nil || !strings.Contains(err.Error(), "unknown outcome") {
		t.Errorf("a visit without an outcome: %v; want it refused", err)
	}
	if err := r.VisitStarted("v001", at); !errors.Is(err, state.ErrAlreadyDone) {
		t.Errorf("starting a done visit: %v; want ErrAlreadyDone", err)
	}
	vs = visitStates(t, dir)
	for i, want := range []state.VisitState{state.Done, state.Done, state.Failed, state.Failed, state.Interrupted, state.Pending} {
		if vs[i].State != want {
			t.Errorf("%s is %s; want %s", vs[i].ID, vs[i].State, want)
		}
	}
	if vs[1].Job != "1002" || vs[1].Attempts != 2 || vs[3].Err != "1 of 2 data IDs failed" {
		t.Errorf("visits %+v", vs)
	}
	st, err := state.OpenReadOnly(l.State())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fs, err := st.Failures(0)
	if err != nil || len(fs) != 1 || fs[0].Visit != "v004" || fs[0].Slice != 2 || fs[0].DataID != "ccd=2" {
		t.Errorf("slice failures %+v, %v", fs, err)
	}
	times, err := st.StageTimes()
	if err != nil || times["work"] != 3*time.Second {
		t.Errorf("stage times %v, %v; want work 3s", times, err)
	}
	// Each failure points at its capture, in the run directory.
	all, err := Failures(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	captures := map[string]string{}
	for _, f := range all {
		captures[fmt.Sprintf("%s/%d", f.Visit, f.Slice)] = f.Capture
	}
	if captures["v004/2"] != filepath.Join(dir, "captures/visit-v004/work.slice2-ccd=2.failed.json") ||
		captures["v004/0"] != filepath.Join(dir, "captures/visit-v004/work.pipeline.failed.json") {
		t.Errorf("failures' captures %v, want both in the run directory", captures)
	}
	if s := all[len(all)-1].String(); !strings.Contains(s, "dpsbatch replay "+filepath.Join(dir, "captures/visit-v004/work.slice2-ccd=2.failed.json")) {
		t.Errorf("the failure as status --failures prints it:\n%s\nwant the replay command", s)
	}
}

// A policy that is not the one the run was submitted with is refused.
func TestInJobPolicyChanged(t *testing.T) {
	_, dir := inJobRun(t)
	before := visitStates(t, dir)
	edited := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(edited, []byte(inputtest.TinyPolicy+"# edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := harness.Load(edited, harness.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	serveRun(t, rundir.Layout{Dir: dir}.State(), "1002", 0)
	j := &injob.InJob{StatePath: rundir.Layout{Dir: dir}.State(), JobID: "1002"}
	dr := &harness.RunOptions{RunID: "run1", RunDir: dir}
	err = j.Hook(p, dr)
	if !errors.Is(err, conf.ErrInvalid) || !strings.Contains(err.Error(), "changed since the run was submitted") {
		t.Fatalf("Hook: %v; want an invalid-input error saying the policy changed", err)
	}
	if dr.Broker != nil || dr.Feed || dr.Recorder != nil {
		t.Errorf("Hook set the run up anyway: %+v", dr)
	}
	j.End(nil, err)
	if after := visitStates(t, dir); !slices.Equal(before, after) {
		t.Errorf("visits changed:\n%+v\n%+v", before, after)
	}
}

// End records how the job ended.
func TestInJobEnd(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sum    *harness.Summary
		err    error
		state  string
		code   int
		reason string
	}{
		{"completed", &harness.Summary{Done: 4}, nil, "COMPLETED", 0, ""},
		{"visits failed", &harness.Summary{Done: 2, Failed: 2}, fmt.Errorf("run: %w", harness.ErrVisitsFailed), "VISITS_FAILED", 3, "2 visits failed"},
		{"interrupted", &harness.Summary{}, fmt.Errorf("%w: SIGTERM", harness.ErrInterrupted), "STOPPED", 130, "harness: interrupted: SIGTERM"},
		{"failed", nil, errors.New("comm: rank 2 lost"), "FAILED", 1, "comm: rank 2 lost"},
		// The exit code recorded is the one the program exits with.
		{"bad input", nil, fmt.Errorf("%w: policy.yaml changed", harness.ErrInvalid), "FAILED", 2, "invalid input: policy.yaml changed"},
		{"cancelled", &harness.Summary{}, fmt.Errorf("feed: %w", context.Canceled), "STOPPED", 130, "feed: context canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, dir := inJobRun(t)
			serveRun(t, rundir.Layout{Dir: dir}.State(), "1002", 0)
			j := &injob.InJob{StatePath: rundir.Layout{Dir: dir}.State(), JobID: "1002", Now: runtest.FixedNow}
			dr := &harness.RunOptions{RunID: "run1", RunDir: dir}
			if err := j.Hook(loadRunPolicy(t, dir), dr); err != nil {
				t.Fatal(err)
			}
			if err := j.End(tc.sum, tc.err); err != nil {
				t.Fatal(err)
			}
			js := runtest.JobsOf(t, dir)
			got := js[1]
			if got.State != tc.state || got.ExitCode != tc.code || got.Reason != tc.reason || !got.Ended.Equal(runtest.FixedNow()) {
				t.Errorf("job recorded %+v; want %s, exit %d, reason %q", got, tc.state, tc.code, tc.reason)
			}
			if js[0].State != "SUBMITTED" {
				t.Errorf("job 1001 recorded %+v; want it left alone", js[0])
			}
			// End is done once: a second call does nothing.
			if err := j.End(nil, errors.New("again")); err != nil {
				t.Errorf("second End: %v", err)
			}
		})
	}
	// On a rank where Hook did not run, End does nothing.
	if err := (&injob.InJob{StatePath: "/nonexistent/state.db"}).End(nil, errors.New("x")); err != nil {
		t.Errorf("End without Hook: %v", err)
	}
}

// The stop file, once it appears, stops the run; its first line is the
// reason recorded, as STOPPED while visits remain.
func TestInJobStopFile(t *testing.T) {
	for _, tc := range []struct {
		name     string
		finish   bool // every fed visit done before End
		runErr   error
		state    string
		exitCode int
	}{
		{"visits left, run returned nil", false, nil, "STOPPED", 0},
		{"visits left, run interrupted", false, harness.ErrInterrupted, "STOPPED", 130},
		{"nothing left", true, nil, "COMPLETED", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, dir := inJobRun(t)
			l := rundir.Layout{Dir: dir}
			serveRun(t, l.State(), "1002", 0)
			j := &injob.InJob{StatePath: l.State(), JobID: "1002", StopFile: l.StopFile(2), Every: 2 * time.Millisecond, Now: runtest.FixedNow}
			parent := make(chan struct{})
			dr := &harness.RunOptions{RunID: "run1", RunDir: dir, Stop: parent}
			if err := j.Hook(loadRunPolicy(t, dir), dr); err != nil {
				t.Fatal(err)
			}
			if dr.Stop == nil || dr.Stop == (<-chan struct{})(parent) {
				t.Fatal("Hook did not wrap Stop")
			}
			select {
			case <-dr.Stop:
				t.Fatal("Stop closed before the stop file appeared")
			case <-time.After(20 * time.Millisecond):
			}
			if tc.finish {
				for _, id := range []string{"v002", "v004", "v005", "v006"} {
					dr.Recorder.VisitStarted(id, runtest.FixedNow())
					if err := dr.Recorder.VisitEnded(id, harness.VisitResult{Outcome: harness.VisitDone}); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Written whole, then moved in place: the watcher may look
			// between the creation of a file and its first write.
			if err := os.WriteFile(l.StopFile(2)+".new", []byte("time limit near: SIGUSR1 from Slurm\nsecond line\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(l.StopFile(2)+".new", l.StopFile(2)); err != nil {
				t.Fatal(err)
			}
			select {
			case <-dr.Stop:
			case <-time.After(5 * time.Second):
				t.Fatal("Stop not closed 5s after the stop file appeared")
			}
			if err := j.End(&harness.Summary{}, tc.runErr); err != nil {
				t.Fatal(err)
			}
			got := runtest.JobsOf(t, dir)[1]
			if got.State != tc.state || got.ExitCode != tc.exitCode || got.Reason != "time limit near: SIGUSR1 from Slurm" {
				t.Errorf("job recorded %+v; want %s exit %d with the stop file's first line", got, tc.state, tc.exitCode)
			}
		})
	}
}

// The parent's stop reaches the run through the watcher; End stops the
// watcher however the run ended.
func TestInJobStopParent(t *testing.T) {
	_, dir := inJobRun(t)
	l := rundir.Layout{Dir: dir}
	serveRun(t, l.State(), "1002", 0)
	j := &injob.InJob{StatePath: l.State(), JobID: "1002", StopFile: l.StopFile(2), Every: time.Hour}
	parent := make(chan struct{})
	dr := &harness.RunOptions{RunID: "run1", RunDir: dir, Stop: parent}
	if err := j.Hook(loadRunPolicy(t, dir), dr); err != nil {
		t.Fatal(err)
	}
	close(parent)
	select {
	case <-dr.Stop:
	case <-time.After(5 * time.Second):
		t.Fatal("the parent's stop did not reach the run")
	}
	if err := j.End(&harness.Summary{}, harness.ErrInterrupted); err != nil {
		t.Fatal(err)
	}
	if got := runtest.JobsOf(t, dir)[1]; got.State != "STOPPED" || got.Reason != harness.ErrInterrupted.Error() {
		t.Errorf("job recorded %+v; want STOPPED with the harness's reason", got)
	}
}

// A whole run in this process: the harness's ranks as goroutines, rank 0
// hooked to the state file, as `dpsbatch run --state` does it.
func TestInJobRunRanks(t *testing.T) {
	_, dir := inJobRun(t)
	l := rundir.Layout{Dir: dir}
	serveRun(t, l.State(), "1002", 0)
	j := &injob.InJob{StatePath: l.State(), JobID: "1002"}
	dr := harness.RunOptions{PolicyPath: l.Policy(), VisitsPath: l.Visits(".csv"), RunID: "run1", RunDir: dir, Rank0: j.Hook}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dr.Ranks, dr.Size = harness.CommLocal, 3
	sum, err := harness.Run(ctx, dr)
	if endErr := j.End(sum, err); endErr != nil {
		t.Fatal(endErr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if sum.Done != 4 || sum.Failed != 0 {
		t.Errorf("summary: %d done, %d failed; want 4 done (v002, v004..v006)", sum.Done, sum.Failed)
	}
	c := counts(t, dir)
	if c[state.Done] != 5 || c[state.Failed] != 1 || c[state.Pending]+c[state.Running]+c[state.Interrupted] != 0 {
		t.Errorf("counts %v; want 5 done, v003 still failed", c)
	}
	if got := runtest.JobsOf(t, dir)[1]; got.State != "COMPLETED" || got.Started.IsZero() || got.Ended.IsZero() {
		t.Errorf("job 1002 recorded %+v; want COMPLETED with start and end", got)
	}
	// Status of the run now: Slurm says 1002 completed.
	e := &env{t: t, fake: newFake()}
	e.fake.forget("1001", "NODE_FAIL")
	e.fake.forget("1002", "COMPLETED")
	rs := status(t, e, dir)
	if rs.Outcome != "failed" || rs.Jobs[0].Died != true || rs.Jobs[1].Died {
		t.Errorf("status %+v; want failed, 1001 died, 1002 did not", rs)
	}
}
