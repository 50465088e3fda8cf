package jobs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/input/inputtest"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/state"
)

// A production's run through the fake Slurm: submit lays it out and
// renders one job of concurrent steps; status, resume, finish and the
// event sources take it as a whole.

// prodEnv is a test env whose "policy" is the chain production.
func prodEnv(t *testing.T, prod string) (*env, string) {
	t.Helper()
	e := newEnv(t, 1)
	for name, text := range inputtest.ChainFiles(prod) {
		e.write(name, text)
	}
	return e, filepath.Join(e.dir, "prod.yaml")
}

func (e *env) submitProd(file, name string) *Submitted {
	e.t.Helper()
	o := e.opts(name)
	o.Policy, o.Visits = file, ""
	sub, err := Submit(context.Background(), o)
	if err != nil {
		e.t.Fatalf("Submit production: %v", err)
	}
	return sub
}

func TestSubmitProduction(t *testing.T) {
	e, file := prodEnv(t, inputtest.ChainProduction)
	sub := e.submitProd(file, "night1")
	l := rundir.Layout{Dir: sub.Dir}
	if sub.Run != "night1" || sub.Visits != 3 || len(sub.Jobs) != 1 {
		t.Fatalf("submitted %+v; want run night1, 3 visits, 1 job", sub)
	}
	// detect 2 slices, association 1, moving 4 (the file's): 3+2+5 tasks.
	wantSteps := []StepPlan{{"detect", 2, 3}, {"association", 1, 2}, {"moving", 4, 5}}
	if !slices.Equal(sub.Steps, wantSteps) || sub.Plan.Tasks != 10 {
		t.Errorf("steps %+v, %d tasks; want %+v, 10", sub.Steps, sub.Plan.Tasks, wantSteps)
	}
	if got := string(readAll(t, l.ProductionCopy())); got != inputtest.ChainProduction {
		t.Errorf("production copy = %q", got)
	}
	for _, name := range []string{"detect", "association", "moving"} {
		pl := l.Pipeline(name)
		if _, err := os.Stat(pl.Policy()); err != nil {
			t.Errorf("pipeline %s: %v", name, err)
		}
		run, set, err := rundir.ReadSettings(pl)
		if err != nil {
			t.Fatal(err)
		}
		if run.ID != "night1" || set.PartOf != l.Dir || set.Listen != (name != "detect") {
			t.Errorf("pipeline %s: run %q, settings %+v", name, run.ID, set)
		}
		if js := runtest.JobsOf(t, pl.Dir); len(js) != 1 || js[0].ID != sub.Jobs[0] {
			t.Errorf("pipeline %s records jobs %+v; want %s", name, js, sub.Jobs[0])
		}
	}
	if c := counts(t, l.Pipeline("detect").Dir); c[state.Pending] != 3 {
		t.Errorf("detect's visits %v; want 3 pending", c)
	}
	if _, err := os.Stat(filepath.Join(l.Pipeline("detect").Dir, "visits.csv")); err != nil {
		t.Errorf("detect's visit list: %v", err)
	}
	if js := runtest.JobsOf(t, l.Dir); len(js) != 1 || js[0].ID != sub.Jobs[0] {
		t.Errorf("the production records jobs %+v", js)
	}
	_, set, err := rundir.ReadSettings(l)
	if err != nil {
		t.Fatal(err)
	}
	if want := []rundir.StepEntry{{Name: "detect", Slices: 0}, {Name: "association", Slices: 0}, {Name: "moving", Slices: 4}}; !slices.Equal(set.Pipelines, want) {
		t.Errorf("production settings pipelines %+v; want %+v", set.Pipelines, want)
	}

	// One script: the broker, then one exact srun step per pipeline,
	// every one under the run's ID.
	script := string(e.fake.submits[0].Script)
	if !strings.Contains(script, e.bin+" broker --run-dir "+l.Dir+" &") {
		t.Errorf("script starts no broker:\n%s", script)
	}
	steps := regexp.MustCompile(`srun '--mpi=none' --exact '--ntasks=(\d+)' '--nodes=1-3' '--kill-on-bad-exit=1' \S+ run --run-dir (\S+) .* --run-id night1 `).FindAllStringSubmatch(script, -1)
	if len(steps) != 3 {
		t.Fatalf("%d steps in the script; want 3:\n%s", len(steps), script)
	}
	for i, w := range wantSteps {
		if steps[i][1] != strconv.Itoa(w.Tasks) || steps[i][2] != l.Pipeline(w.Pipeline).Dir {
			t.Errorf("step %d: %q tasks in %q; want %d in %s", i, steps[i][1], steps[i][2], w.Tasks, l.Pipeline(w.Pipeline).Dir)
		}
	}
	if !strings.Contains(script, "#SBATCH --ntasks=10") {
		t.Errorf("script does not ask for 10 tasks:\n%s", script)
	}
}

// Options a production sets per pipeline, and a launcher that cannot run
// concurrent steps, are refused with nothing created or submitted.
func TestSubmitProductionRefuses(t *testing.T) {
	e, file := prodEnv(t, inputtest.ChainProduction)
	for _, tc := range []struct {
		name, want string
		edit       func(*SubmitOptions)
	}{
		{"visits", "--visits", func(o *SubmitOptions) { o.Visits = e.visits }},
		{"listen", "--listen", func(o *SubmitOptions) { o.Listen = true }},
		{"slices", "--slices", func(o *SubmitOptions) { o.Request.Slices = 3 }},
		{"mpirun", "launcher is mpirun", func(o *SubmitOptions) {
			s := *o.Site
			s.Launcher.Kind = "mpirun"
			o.Site = &s
		}},
		{"bad file", "no pipeline \"nobody\"", func(o *SubmitOptions) {
			o.Policy = e.write("bad.yaml", strings.Replace(inputtest.ChainProduction, "after: [detect]", "after: [nobody]", 1))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := e.opts("refused")
			o.Policy, o.Visits = file, ""
			tc.edit(&o)
			_, err := Submit(context.Background(), o)
			inputtest.WantInvalid(t, tc.name, err, tc.want)
			if n := len(e.fake.submits); n != 0 || len(e.rootEntries()) != 0 {
				t.Errorf("%d submitted, runs root %v; want nothing", n, e.rootEntries())
			}
		})
	}
}

// endIn records that job ended in pipeline name of the production in
// dir, as its rank 0 does.
func endIn(t *testing.T, dir, name, job string, how state.JobEnd, why string) {
	t.Helper()
	withState(t, rundir.Layout{Dir: dir}.Pipeline(name).Dir, func(st *state.Store) {
		if err := st.JobStarted(job, "n1", runtest.FixedNow()); err != nil {
			t.Fatal(err)
		}
		if err := st.JobEnded(job, how, 0, why, runtest.FixedNow().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestProductionStatus(t *testing.T) {
	e, file := prodEnv(t, inputtest.ChainProduction)
	sub := e.submitProd(file, "night2")
	dir, job := sub.Dir, sub.Jobs[0]
	l := rundir.Layout{Dir: dir}
	withState(t, l.Pipeline("detect").Dir, func(st *state.Store) {
		runtest.VisitAs(t, st, job, "v1", state.Done)
		runtest.VisitAs(t, st, job, "v2", state.Failed)
	})
	withState(t, l.Pipeline("association").Dir, func(st *state.Store) {
		if _, err := st.AddVisit("v1"); err != nil {
			t.Fatal(err)
		}
		runtest.VisitAs(t, st, job, "v1", state.Done)
	})
	e.fake.set(job, "RUNNING")
	endIn(t, dir, "detect", job, "VISITS_FAILED", "1 visits failed")
	rs := status(t, e, dir)
	if len(rs.Pipelines) != 3 || rs.Visits != 4 || rs.Counts["done"] != 2 || rs.Counts["failed"] != 1 || rs.Counts["pending"] != 1 {
		t.Fatalf("status: %d pipelines, %d visits %v; want 3, 4 (2 done, 1 failed, 1 pending)", len(rs.Pipelines), rs.Visits, rs.Counts)
	}
	if p := rs.Pipelines[1]; p.Pipeline != "association" || p.Visits != 1 || !p.Listen {
		t.Errorf("pipelines[1] = %s, %d visits, listen %v", p.Pipeline, p.Visits, p.Listen)
	}
	if j := rs.Jobs[0]; recordedEnd(j.Recorded) || !strings.Contains(j.Reason, "detect") || rs.Outcome != "running" {
		t.Errorf("one pipeline ended: job %+v, outcome %s; want no end recorded yet, the reason naming detect", j, rs.Outcome)
	}

	// Slurm says the job ended, but moving never recorded its end: died.
	endIn(t, dir, "association", job, "COMPLETED", "")
	e.fake.forget(job, "COMPLETED")
	rs = status(t, e, dir)
	if j := rs.Jobs[0]; !j.Died || rs.Outcome != "unfinished" || rs.Pipelines[2].Jobs[0].Died != true {
		t.Errorf("moving did not record its end: job %+v (moving's %+v), outcome %s; want died, unfinished", j, rs.Pipelines[2].Jobs[0], rs.Outcome)
	}
	// Once every pipeline recorded an end, the job's is the worst, and
	// says which pipeline.
	endIn(t, dir, "moving", job, "STOPPED", "shutdown event")
	rs = status(t, e, dir)
	j := rs.Jobs[0]
	if j.Died || j.Recorded != "STOPPED" || !strings.Contains(j.Reason, "moving stopped: shutdown event") ||
		!strings.Contains(j.Reason, "detect visits_failed") {
		t.Errorf("every pipeline ended: job %+v; want STOPPED naming moving and detect", j)
	}
}

func TestResumeProduction(t *testing.T) {
	e, file := prodEnv(t, inputtest.ChainProduction)
	sub := e.submitProd(file, "night3")
	dir, job := sub.Dir, sub.Jobs[0]
	l := rundir.Layout{Dir: dir}
	ro := ResumeOptions{Site: e.site, Backend: e.fake, Dir: dir, Now: runtest.FixedNow}
	if _, err := Resume(context.Background(), ro); !errors.Is(err, ErrRunLive) {
		t.Fatalf("resume of a pending production: %v; want ErrRunLive", err)
	}
	// The job died with detect's v2 running and association's input open.
	withState(t, l.Pipeline("detect").Dir, func(st *state.Store) {
		runtest.VisitAs(t, st, job, "v1", state.Done)
		runtest.VisitAs(t, st, job, "v2", state.Running)
	})
	e.fake.forget(job, "NODE_FAIL")
	res, err := Resume(context.Background(), ro)
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempt != 2 || res.Visits != 2 || len(res.Jobs) != 1 || len(res.Steps) != 3 {
		t.Fatalf("resume: %+v; want attempt 2, 2 visits, 1 job, 3 steps", res)
	}
	for _, d := range []string{dir, l.Pipeline("detect").Dir, l.Pipeline("association").Dir, l.Pipeline("moving").Dir} {
		if js := runtest.JobsOf(t, d); len(js) != 2 || js[1].ID != res.Jobs[0] || js[1].Attempt != 2 {
			t.Errorf("%s records %+v; want the new job as attempt 2", d, js)
		}
	}
	if c := counts(t, l.Pipeline("detect").Dir); c[state.Pending] != 2 || c[state.Done] != 1 || res.Retried != 1 {
		t.Errorf("detect: %v, %d retried; want v2 (left running) retried, pending with v3", c, res.Retried)
	}
	if script := string(e.fake.submits[1].Script); strings.Count(script, " --exact ") != 3 ||
		!strings.Contains(script, ".stop-attempt-2") {
		t.Errorf("attempt 2's script:\n%s", script)
	}

	// Every visit done, but the listening pipelines' input open: they
	// still run (their input closes once detect has ended).
	second := res.Jobs[0]
	withState(t, l.Pipeline("detect").Dir, func(st *state.Store) {
		runtest.VisitAs(t, st, second, "v2", state.Done)
		runtest.VisitAs(t, st, second, "v3", state.Done)
	})
	e.fake.forget(second, "COMPLETED")
	res, err = Resume(context.Background(), ro)
	if err != nil || res.Complete || len(res.Jobs) != 1 {
		t.Fatalf("resume with open input: %+v, %v; want a job", res, err)
	}
	// Their input closed: complete, nothing submitted.
	e.fake.forget(res.Jobs[0], "COMPLETED")
	for _, name := range []string{"association", "moving"} {
		withState(t, l.Pipeline(name).Dir, func(st *state.Store) {
			if err := st.CloseInput(runtest.FixedNow(), "no-more-data"); err != nil {
				t.Fatal(err)
			}
		})
	}
	n := len(e.fake.submits)
	res, err = Resume(context.Background(), ro)
	if err != nil || !res.Complete || len(e.fake.submits) != n {
		t.Fatalf("resume of a complete production: %+v, %v, %d submits; want complete, none", res, err, len(e.fake.submits)-n)
	}

	// One pipeline's directory is not a run to resume on its own.
	if _, err := Resume(context.Background(), ResumeOptions{Site: e.site, Backend: e.fake, Dir: l.Pipeline("moving").Dir}); err == nil ||
		!strings.Contains(err.Error(), "one pipeline of the production run night3") {
		t.Errorf("resume of one pipeline: %v; want it refused, naming the production's run", err)
	}
	_, err = Relay(context.Background(), RelayOptions{Backend: e.fake, Dir: l.Pipeline("moving").Dir, When: WhenAny,
		Event: events.Event{Topic: events.TopicControl, Kind: events.KindShutdown}})
	inputtest.WantInvalid(t, "relay to one pipeline", err, "one pipeline of the production run night3")

	// A policy changed since submit is refused.
	os.WriteFile(l.Pipeline("moving").Policy(), []byte(strings.Replace(inputtest.MovingPolicy, "slices: 3", "slices: 2", 1)), 0o644)
	if _, err := Resume(context.Background(), ro); err == nil || !strings.Contains(err.Error(), "changed since the run was submitted") {
		t.Errorf("resume with a changed policy: %v", err)
	}
}

func TestProductionFinishAndEvents(t *testing.T) {
	// moving listens on association's topic and runs after nobody:
	// finish closes it, with what it selects; the others close by
	// themselves.
	prod := strings.Replace(inputtest.ChainProduction, "    slices: 4\n    after: association\n", "    slices: 4\n", 1)
	e, file := prodEnv(t, prod)
	e.write("moving/pipeline.yaml", strings.Replace(inputtest.MovingPolicy, "trigger: {topic: associated}", "trigger: {topic: associated, select: {band: r}}", 1))
	sub := e.submitProd(file, "night4")
	es, err := FinishEvents(sub.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Topic != "associated" || es[0].Kind != events.KindNoMoreData || es[0].Properties["band"] != "r" {
		t.Errorf("finish events %+v; want one no-more-data on associated selecting band r", es)
	}
	// The chain closes itself: nothing to send.
	e2, file2 := prodEnv(t, inputtest.ChainProduction)
	sub2 := e2.submitProd(file2, "night5")
	if es, err := FinishEvents(sub2.Dir); err != nil || len(es) != 0 {
		t.Errorf("finish events of the chain %+v, %v; want none", es, err)
	}
	srcs, err := EventSources(sub2.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 3 || srcs[1].Pipeline != "association" || srcs[1].Dir != (rundir.Layout{Dir: sub2.Dir}).Pipeline("association").Dir {
		t.Errorf("event sources %+v", srcs)
	}

	// A topic no pipeline reads is refused, naming what they read.
	e2.fake.set(sub2.Jobs[0], "RUNNING")
	_, err = Relay(context.Background(), RelayOptions{Backend: e2.fake, Dir: sub2.Dir, When: WhenLive,
		Event: events.Event{Topic: "calibs", Properties: map[string]any{"visitId": "v1"}}})
	inputtest.WantInvalid(t, "relay on an unread topic", err, `no pipeline of the production reads topic "calibs"`)
	if !strings.Contains(err.Error(), `(did you mean "calib"?)`) || !regexp.MustCompile(`they read: .*\bcalib\b`).MatchString(err.Error()) {
		t.Errorf("the refusal does not suggest calib and list it among the topics read: %v", err)
	}
	// A trigger for detect, which reads its visit list only, is refused
	// with detect's reason.
	_, err = Relay(context.Background(), RelayOptions{Backend: e2.fake, Dir: sub2.Dir, When: WhenLive,
		Event: events.Event{Topic: "visits", Properties: map[string]any{"visitId": "v9"}}})
	inputtest.WantInvalid(t, "a trigger to a pipeline that does not listen", err, "pipeline detect: the run reads no trigger events")
}
