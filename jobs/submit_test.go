package jobs

import (
	"bytes"
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

	"github.com/dpsbatch/dpsbatch/capture"
	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/input/inputtest"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

// Bad input is reported before anything is created or submitted.
func TestSubmitBadInput(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(e *env, o *SubmitOptions)
		says   string
	}{
		{"bad policy", func(e *env, o *SubmitOptions) {
			o.Policy = e.write("bad.yaml", "pipeline: tiny\nslices: 2\nmapper: {type: range}\nstages:\n  - {name: w, type: nope}\n")
		}, "bad.yaml"},
		{"missing policy", func(e *env, o *SubmitOptions) { o.Policy = filepath.Join(e.dir, "none.yaml") }, "none.yaml"},
		{"no visit list", func(e *env, o *SubmitOptions) { o.Visits = "" }, "--visits"},
		{"missing visit list", func(e *env, o *SubmitOptions) { o.Visits = filepath.Join(e.dir, "none.csv") }, "none.csv"},
		{"empty visit list", func(e *env, o *SubmitOptions) { o.Visits = e.write("empty.csv", "visitId\n") }, "no visits"},
		{"visit list without visitId", func(e *env, o *SubmitOptions) { o.Visits = e.write("bad.csv", "id\nv1\n") }, "bad.csv"},
		{"visit ID leaving the run directory", func(e *env, o *SubmitOptions) {
			o.Visits = e.write("up.csv", "visitId\nv1\n../../..\n")
		}, `up.csv:3: visitId: visit ID "../../.." contains '/'`},
		{"visit ID read as an option", func(e *env, o *SubmitOptions) {
			o.Visits = e.write("opt.jsonl", "{\"visitId\": \"-rf\"}\n")
		}, `opt.jsonl:1: visitId: visit ID "-rf" starts with '-'`},
		{"data ID value leaving the run directory", func(e *env, o *SubmitOptions) {
			o.Policy = e.write("ids.yaml", "pipeline: tiny\nslices: 2\nmapper:\n  type: list\n  settings: {ids: [{ccd: 1}, {ccd: ../x}]}\nstages:\n  - {name: w, type: noop}\n")
		}, `ids.yaml:5: mapper.settings.ids[1].ccd: data ID value "../x" contains '/'`},
		{"latin-1 visit list", func(e *env, o *SubmitOptions) {
			o.Visits = e.write("latin1.csv", "visitId,target\nv1,caf\xe9\n")
		}, `latin1.csv:2: not valid UTF-8`},
		{"unknown partition", func(e *env, o *SubmitOptions) { o.Request.Partition = "debgu" }, `did you mean "debug"`},
		{"run name with a quote", func(e *env, o *SubmitOptions) { o.Name = "it's" }, "run name"},
		{"run name with a slash", func(e *env, o *SubmitOptions) { o.Name = "../up" }, "run name"},
		{"does not fit", func(e *env, o *SubmitOptions) { o.Request.Slices = 100 }, "does not fit"},
		{"time over max_time", func(e *env, o *SubmitOptions) { o.Request.Time = 2 * time.Hour }, "max_time"},
		{"negative slices", func(e *env, o *SubmitOptions) { o.Request.Slices = -1 }, "--slices"},
		{"unknown strategy", func(e *env, o *SubmitOptions) { o.Request.Strategy = "spred" }, "spread"},
		{"negative auto-resume", func(e *env, o *SubmitOptions) { o.AutoResume = -1 }, "--auto-resume"},
		{"binary not executable", func(e *env, o *SubmitOptions) { o.Binary = e.policy }, "--binary"},
		{"freeze-dry of no stage", func(e *env, o *SubmitOptions) { o.FreezeDry = []string{"wrok"} }, `--freeze-dry: no stage "wrok"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 3)
			o := e.opts("run1")
			tc.change(e, &o)
			sub, err := Submit(context.Background(), o)
			if sub != nil {
				t.Errorf("Submitted = %+v; want nil", sub)
			}
			inputtest.WantInvalid(t, tc.name, err, tc.says)
			t.Log(err)
			if got := e.rootEntries(); len(got) != 0 {
				t.Errorf("runs root holds %v; want it empty", got)
			}
			if _, _, n := e.fake.calls(); n != 0 {
				t.Errorf("%d submissions; want none", n)
			}
		})
	}
}

// A name in use is refused, and the run that has it is left alone.
func TestSubmitExistingName(t *testing.T) {
	e := newEnv(t, 3)
	dir := e.submit("run1")
	before := counts(t, dir)
	withState(t, dir, func(st *state.Store) { runtest.VisitAs(t, st, "1001", "v001", state.Done) })
	_, err := Submit(context.Background(), e.opts("run1"))
	inputtest.WantInvalid(t, "existing name", err, "exists already")
	if got := e.rootEntries(); !slices.Equal(got, []string{"run1"}) {
		t.Errorf("runs root holds %v; want only run1", got)
	}
	if _, _, n := e.fake.calls(); n != 1 {
		t.Errorf("%d submissions; want the first run's one", n)
	}
	after := counts(t, dir)
	if after[state.Done] != 1 || after[state.Pending] != before[state.Pending]-1 {
		t.Errorf("the existing run's counts changed: %v, then %v", before, after)
	}
}

// submit --freeze-dry leaves the stages in the run directory, where the
// job's ranks read them.
func TestSubmitFreezeDry(t *testing.T) {
	e := newEnv(t, 2)
	o := e.opts("run1")
	o.FreezeDry = []string{"work"}
	if _, err := Submit(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	got, err := capture.ReadStages(filepath.Join(e.root, "run1"))
	if err != nil || !slices.Equal(got, []string{"work"}) {
		t.Errorf("stages to capture at entry: %v, %v; want work", got, err)
	}
}

func TestSubmit(t *testing.T) {
	e := newEnv(t, 5)
	o := e.opts("run1")
	sub, err := Submit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.root, "run1")
	if sub.Run != "run1" || sub.Dir != dir || sub.Attempt != 1 || sub.Visits != 5 || sub.DryRun {
		t.Errorf("Submitted = %+v", sub)
	}
	if !slices.Equal(sub.Jobs, []string{"1001"}) {
		t.Errorf("Jobs = %v; want [1001]", sub.Jobs)
	}
	if want := filepath.Join(dir, "logs", "slurm-1001.out"); sub.Log != want {
		t.Errorf("Log = %q; want %q", sub.Log, want)
	}
	if sub.Plan.Tasks != 3 || sub.Plan.Partition != "debug" || sub.Plan.Time != time.Hour {
		t.Errorf("Plan = %+v; want 3 tasks on debug for the partition's hour", sub.Plan)
	}
	if got := e.rootEntries(); !slices.Equal(got, []string{"run1"}) {
		t.Errorf("runs root holds %v; want run1 only (no leftover temporary folder)", got)
	}
	// The run directory.
	l := rundir.Layout{Dir: dir}
	if !bytes.Equal(readAll(t, l.Policy()), readAll(t, e.policy)) {
		t.Error("pipeline.yaml is not a copy of the policy")
	}
	if !bytes.Equal(readAll(t, l.Visits(".csv")), readAll(t, e.visits)) {
		t.Error("visits.csv is not a copy of the visit list")
	}
	script := readAll(t, l.Script(1))
	if sub.Script != l.Script(1) || !bytes.HasPrefix(script, []byte("#!/bin/bash\n")) {
		t.Errorf("script %s: %.40q", sub.Script, script)
	}
	if fi, err := os.Stat(filepath.Join(dir, rundir.LogsDir)); err != nil || !fi.IsDir() {
		t.Errorf("logs folder: %v", err)
	}
	// The state file: every visit pending, the job recorded.
	st, err := state.OpenReadOnly(l.State())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	run, err := st.Run()
	if err != nil {
		t.Fatal(err)
	}
	if run.Name != "run1" || run.Dir != dir || run.Pipeline != "tiny" || run.Partition != "debug" || run.PolicySum == "" ||
		!run.Created.Equal(runtest.FixedNow()) || !strings.Contains(run.Settings, `"visits":"visits.csv"`) {
		t.Errorf("Run = %+v", run)
	}
	vs, err := st.Visits("", 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, v := range vs {
		if v.State != state.Pending {
			t.Errorf("visit %s is %s; want pending", v.ID, v.State)
		}
		ids = append(ids, v.ID)
	}
	if !slices.Equal(ids, visitIDs(5)) {
		t.Errorf("visits %v; want %v in order", ids, visitIDs(5))
	}
	js, err := st.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	if len(js) != 1 || js[0].ID != "1001" || js[0].Attempt != 1 || js[0].State != "SUBMITTED" || !js[0].Submitted.Equal(runtest.FixedNow()) {
		t.Errorf("jobs %+v; want 1001, attempt 1, SUBMITTED", js)
	}
	// What the backend was given.
	if len(e.fake.submits) != 1 {
		t.Fatalf("%d submissions; want 1", len(e.fake.submits))
	}
	s := e.fake.submits[0]
	if s.Dir != dir || s.Dependency != "" || !bytes.Equal(s.Script, script) {
		t.Errorf("submission Dir %q Dependency %q, script equal to attempt-1.sbatch: %v", s.Dir, s.Dependency, bytes.Equal(s.Script, script))
	}
}

// A name left empty is the pipeline's and the time of submission.
func TestSubmitDefaultName(t *testing.T) {
	e := newEnv(t, 2)
	o := e.opts("")
	sub, err := Submit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if sub.Run != "tiny-20250601-120000" {
		t.Errorf("Run = %q; want tiny-20250601-120000", sub.Run)
	}
}

// --auto-resume N chains N follow-ons, each after the one before.
func TestSubmitAutoResume(t *testing.T) {
	e := newEnv(t, 3)
	o := e.opts("run1")
	o.AutoResume = 2
	sub, err := Submit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sub.Jobs, []string{"1001", "1002", "1003"}) {
		t.Fatalf("Jobs = %v; want 1001 1002 1003", sub.Jobs)
	}
	deps := []string{"", "afterany:1001", "afterany:1002"}
	for i, s := range e.fake.submits {
		if s.Dependency != deps[i] {
			t.Errorf("submission %d: dependency %q; want %q", i+1, s.Dependency, deps[i])
		}
		l := rundir.Layout{Dir: sub.Dir}
		if !bytes.Equal(s.Script, readAll(t, l.Script(i+1))) {
			t.Errorf("submission %d is not attempt-%d.sbatch", i+1, i+1)
		}
		if !bytes.Contains(s.Script, []byte("DPSBATCH_ATTEMPT="+strconv.Itoa(i+1))) ||
			!bytes.Contains(s.Script, []byte(l.StopFile(i+1))) {
			t.Errorf("submission %d: script is not attempt %d's:\n%s", i+1, i+1, s.Script)
		}
	}
	js := runtest.JobsOf(t, sub.Dir)
	if len(js) != 3 {
		t.Fatalf("recorded jobs %+v; want 3", js)
	}
	for i, j := range js {
		if j.ID != sub.Jobs[i] || j.Attempt != i+1 {
			t.Errorf("job %d recorded as %+v", i+1, j)
		}
	}
}

// sbatch refusing the job leaves nothing behind; refusing a follow-on
// keeps the run and the jobs already queued.
func TestSubmitBackendFails(t *testing.T) {
	e := newEnv(t, 3)
	e.fake.submitErr = map[int]error{1: errors.New("sbatch: error: Batch job submission failed")}
	_, err := Submit(context.Background(), e.opts("run1"))
	if err == nil || !strings.Contains(err.Error(), "Batch job submission failed") {
		t.Fatalf("err = %v; want sbatch's", err)
	}
	if got := e.rootEntries(); len(got) != 0 {
		t.Errorf("runs root holds %v; want it empty", got)
	}

	e = newEnv(t, 3)
	e.fake.submitErr = map[int]error{2: errors.New("sbatch: error: QOSMaxSubmitJobPerUserLimit")}
	o := e.opts("run2")
	o.AutoResume = 2
	_, err = Submit(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "submitted 1001") || !strings.Contains(err.Error(), "QOSMaxSubmitJobPerUserLimit") {
		t.Fatalf("err = %v; want it to name job 1001 and sbatch's error", err)
	}
	dir := filepath.Join(e.root, "run2")
	if js := runtest.JobsOf(t, dir); len(js) != 1 || js[0].ID != "1001" {
		t.Errorf("recorded jobs %+v; want 1001 only", js)
	}
}

func TestSubmitDryRun(t *testing.T) {
	e := newEnv(t, 4)
	o := e.opts("run1")
	o.AutoResume = 1
	o.DryRun = true
	var out bytes.Buffer
	o.Out = &out
	sub, err := Submit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !sub.DryRun || len(sub.Jobs) != 0 || sub.Visits != 4 || sub.Plan.Tasks != 3 {
		t.Errorf("Submitted = %+v", sub)
	}
	if got := e.rootEntries(); len(got) != 0 {
		t.Errorf("runs root holds %v; want it empty", got)
	}
	if _, _, n := e.fake.calls(); n != 0 {
		t.Errorf("%d submissions; want none", n)
	}
	text := out.String()
	for _, want := range []string{"nothing created, nothing submitted", "4 visits, 2 slices", "partition debug",
		"# ---- attempt-1.sbatch ----", "# ---- attempt-2.sbatch ----", "#!/bin/bash", "#SBATCH --ntasks=3"} {
		if !strings.Contains(text, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, text)
		}
	}
}

var signalLine = regexp.MustCompile(`(?m)^#SBATCH --signal=B:USR1@(\d+)$`)

// The script asks Slurm's warning of the batch shell only, in time to
// stop cleanly: at most half the limit, at most the site's time_warning;
// the launch watches the stop file the shell writes.
func TestScriptTimeWarning(t *testing.T) {
	for _, tc := range []struct {
		name      string
		partition string
		limit     time.Duration
		want      int // seconds; 0: no --signal
	}{
		{"an hour: the site's 5m", "debug", time.Hour, 300},
		{"the partition's hour", "debug", 0, 300},
		{"six minutes: half", "debug", 6 * time.Minute, 180},
		{"long with a limit", "long", 2 * time.Hour, 300},
		{"no limit at all", "long", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 2)
			o := e.opts("run1")
			o.Request = rundir.Request{Partition: tc.partition, Time: tc.limit}
			sub, err := Submit(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			script := string(readAll(t, sub.Script))
			m := signalLine.FindStringSubmatch(script)
			stop := rundir.Layout{Dir: sub.Dir}.StopFile(1)
			if tc.want == 0 {
				if strings.Contains(script, "--signal") || strings.Contains(script, "--time=") {
					t.Errorf("no time limit, yet:\n%s", script)
				}
				return
			}
			if m == nil {
				t.Fatalf("no --signal=B:USR1@N line:\n%s", script)
			}
			n, _ := strconv.Atoi(m[1])
			if n != tc.want || time.Duration(n)*time.Second > sub.Plan.Time/2 || time.Duration(n)*time.Second > e.site.TimeWarning {
				t.Errorf("warning %ds before a limit of %s; want %ds", n, sub.Plan.Time, tc.want)
			}
			if !strings.Contains(script, "--stop-file "+stop) || !strings.Contains(script, "dpsbatch_stop_file="+stop) {
				t.Errorf("the launch and the trap should name the stop file %s:\n%s", stop, script)
			}
		})
	}
}

// A submission passes the backend the run directory as working
// directory, and the script the plan's options.
func TestScriptPlan(t *testing.T) {
	e := newEnv(t, 2)
	o := e.opts("run1")
	o.Request = rundir.Request{Slices: 7, CPUsPerSlice: 2, MemPerSliceMB: 500, Time: 30 * time.Minute, Strategy: scheduler.Pack}
	o.Policy = e.write("seven.yaml", strings.Replace(inputtest.TinyPolicy, "to: 2", "to: 7", 1))
	sub, err := Submit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	script := string(readAll(t, sub.Script))
	for _, want := range []string{"#SBATCH --partition=debug", "#SBATCH --nodes=4", "#SBATCH --ntasks=8",
		"#SBATCH --ntasks-per-node=2", "#SBATCH --cpus-per-task=2", "#SBATCH --mem-per-cpu=250M", "#SBATCH --time=00:30:00",
		"srun '--mpi=none' '--kill-on-bad-exit=1' " + e.bin + " run --run-dir " + sub.Dir} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
}

// The run keeps a copy of the visit list that rank 0 reads back in the
// same format, whatever the original's name: CSV, JSON lines, or either
// without a known extension (ReadVisits then goes by the first
// character).
func TestSubmitVisitListCopy(t *testing.T) {
	for _, tc := range []struct{ name, text string }{
		{"visits.csv", "visitId,filter\nv1,g\nv2,r\n"},
		{"visits.jsonl", `{"visitId": "v1", "filter": "g"}` + "\n" + `{"visitId": "v2", "filter": "r"}` + "\n"},
		{"visits.ndjson", `{"visitId": "v1", "filter": "g"}` + "\n" + `{"visitId": "v2", "filter": "r"}` + "\n"},
		{"visits.txt", "visitId,filter\nv1,g\nv2,r\n"},
		{"visits", `{"visitId": "v1", "filter": "g"}` + "\n" + `{"visitId": "v2", "filter": "r"}` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1)
			o := e.opts("run1")
			o.Visits = e.write(tc.name, tc.text)
			sub, err := Submit(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			// What InJob.Hook reads: the copy named in the run's settings.
			withState(t, sub.Dir, func(st *state.Store) {
				run, err := st.Run()
				if err != nil {
					t.Fatal(err)
				}
				set, err := rundir.DecodeSettings(sub.Dir, run.Settings)
				if err != nil {
					t.Fatal(err)
				}
				vs, err := harness.ReadVisits(filepath.Join(sub.Dir, set.Visits))
				if err != nil {
					t.Fatalf("the copy %s does not read back: %v", set.Visits, err)
				}
				if len(vs) != 2 || vs[0].ID != "v1" || vs[1].Props["filter"] != "r" {
					t.Errorf("the copy %s reads back as %+v", set.Visits, vs)
				}
			})
		})
	}
}

// A plan whose nodes do not all take the same number of tasks (5 tasks
// packed 4+1 on nodes of 4 CPUs) leaves --ntasks-per-node out of the
// script: with it, sbatch asks for 4 on each node, and srun warns that it
// cannot honour it and spreads the ranks 3+2 instead of the plan's 4+1.
// Without it Slurm's block layout gives the plan's.
func TestScriptUnevenLayout(t *testing.T) {
	e := newEnv(t, 2)
	o := e.opts("run1")
	o.Request = rundir.Request{Slices: 4, Strategy: scheduler.Pack}
	o.Policy = e.write("four.yaml", strings.Replace(inputtest.TinyPolicy, "to: 2", "to: 4", 1))
	sub, err := Submit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sub.Plan.Layout, []int{4, 1}) {
		t.Fatalf("plan layout %v; want [4 1] on nodes of 4 CPUs", sub.Plan.Layout)
	}
	script := string(readAll(t, sub.Script))
	if !strings.Contains(script, "#SBATCH --ntasks=5") || strings.Contains(script, "--ntasks-per-node") {
		t.Errorf("script for a 4+1 layout: want --ntasks=5 and no --ntasks-per-node:\n%s", script)
	}
}
