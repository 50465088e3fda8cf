package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The batch front end's integration tests: submit, status, wait, cancel
// and resume on the local Slurm cluster (scripts/cluster.sh), through the
// built binary, as an operator types them.

// batchEnv is a site file for the local cluster, with its runs root, in a
// folder every simulated node can read.
type batchEnv struct {
	t    *testing.T
	bin  string
	site string
	root string // runs root
	dir  string // where test pipelines are written
}

func newBatchEnv(t *testing.T) *batchEnv {
	t.Helper()
	needCluster(t, 4, "sbatch", "squeue", "scancel", "sacct")
	parent := exampleRunDir(t, "pipeline") // world-readable; holds the example
	e := &batchEnv{t: t, bin: buildBinary(t, ""), root: filepath.Join(filepath.Dir(parent), "runs"), dir: parent}
	e.site = filepath.Join(filepath.Dir(parent), "site.yaml")
	writeFile(t, e.site, fmt.Sprintf(`runs_root: %s
partitions:
  - name: debug
    default: true
    cpus_per_node: 4
    memory: 2000M
    node_list: n[1-4]
    max_time: infinite
launcher: {kind: srun, flags: [--mpi=none], comm: tcp}
time_warning: 50s
`, e.root))
	return e
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// dps runs the built dpsbatch with the site file in the environment.
func (e *batchEnv) dps(timeout time.Duration, args ...string) (string, string, int) {
	e.t.Helper()
	return runCmd(e.t, timeout, cleanEnv("DPSBATCH_SITE="+e.site), e.bin, args...)
}

// cancelAtEnd cancels the run's live jobs when the test ends, so a failed
// test leaves no job on the cluster. The run's jobs are named by their
// submission (RUN:aN-TOKEN), not by the run: cancel finds them all.
func (e *batchEnv) cancelAtEnd(run string) {
	e.t.Cleanup(func() {
		cmd := exec.Command(e.bin, "cancel", run)
		cmd.Env = cleanEnv("DPSBATCH_SITE=" + e.site)
		cmd.Run()
	})
}

// must runs dpsbatch and fails the test unless it exits with want.
func (e *batchEnv) must(want int, timeout time.Duration, args ...string) string {
	e.t.Helper()
	out, errOut, code := e.dps(timeout, args...)
	if code != want {
		e.t.Fatalf("dpsbatch %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errOut)
	}
	return out
}

// slowPipeline writes a pipeline of two slices whose one stage sleeps,
// then appends the visit's ID to a log per visit and CCD: a visit run
// twice leaves two lines.
func (e *batchEnv) slowPipeline(name string, visits int, sleep string) (policy, visitFile string) {
	e.t.Helper()
	dir := filepath.Join(e.dir, name)
	policy = filepath.Join(dir, "pipeline.yaml")
	writeFile(e.t, policy, fmt.Sprintf(`pipeline: %s
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
locations: {output: "output/{visit}"}
events: {trigger: {topic: visits}}
stages:
  - name: work
    type: exec
    settings:
      command: [sh, -c, 'sleep "$1" && mkdir -p "$2" && echo "$3" >> "$2/ccd$4.log"', sh, "%s", "{output}", "{visit}", "{ccd}"]
      timeout: 120s
`, name, sleep))
	var b strings.Builder
	b.WriteString("visitId\n")
	for i := range visits {
		fmt.Fprintf(&b, "v%03d\n", i+1)
	}
	visitFile = filepath.Join(dir, "visits.csv")
	writeFile(e.t, visitFile, b.String())
	return policy, visitFile
}

// twoSlicePipeline writes pipeline name of two slices over CCDs 1 and 2,
// triggered on topic visits, with the given stages (YAML list items), and
// a visit file of visits; it returns both paths.
func (e *batchEnv) twoSlicePipeline(name, stages string, visits ...string) (policy, visitFile string) {
	e.t.Helper()
	dir := filepath.Join(e.dir, name)
	policy = filepath.Join(dir, "pipeline.yaml")
	writeFile(e.t, policy, "pipeline: "+name+`
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
events: {trigger: {topic: visits}}
stages:
`+stages)
	visitFile = filepath.Join(dir, "visits.csv")
	writeFile(e.t, visitFile, "visitId\n"+strings.Join(visits, "\n")+"\n")
	return policy, visitFile
}

type statusJSON struct {
	Run     string         `json:"run"`
	Dir     string         `json:"runDir"`
	Visits  int            `json:"visits"`
	Counts  map[string]int `json:"counts"`
	Outcome string         `json:"outcome"`
	Live    bool           `json:"live"`
	ETA     int64          `json:"eta"` // seconds left; 0: none shown
	Journal string         `json:"journal"`
	Jobs    []struct {
		ID       string `json:"id"`
		Live     bool   `json:"live"`
		Attempt  int    `json:"attempt"`
		State    string `json:"state"`
		Source   string `json:"source"`
		Reason   string `json:"reason"`
		Recorded string `json:"recorded"`
		Died     bool   `json:"died"`
	} `json:"jobs"`
}

func (e *batchEnv) status(run string) statusJSON {
	e.t.Helper()
	out := e.must(0, time.Minute, "status", "--json", run)
	var all []statusJSON
	if err := json.Unmarshal([]byte(out), &all); err != nil || len(all) != 1 {
		e.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return all[0]
}

// waitDone polls the run's state (through status) until at least n
// visits are done.
func (e *batchEnv) waitDone(run string, n int, timeout time.Duration) statusJSON {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := e.status(run)
		if st.Counts["done"] >= n {
			return st
		}
		if time.Now().After(deadline) || (!st.Live && len(st.Jobs) > 0 && st.Outcome != "pending") {
			e.t.Fatalf("run %s: %d visits done, waited for %d: %+v", run, st.Counts["done"], n, st)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// visitLogs counts, per visit and CCD log, the times the visit ran.
func visitLogs(t *testing.T, runDir string, visits int) map[string]int {
	t.Helper()
	runs := map[string]int{}
	for i := range visits {
		v := fmt.Sprintf("v%03d", i+1)
		for ccd := 1; ccd <= 2; ccd++ {
			data, err := os.ReadFile(filepath.Join(runDir, "output", v, fmt.Sprintf("ccd%d.log", ccd)))
			if err != nil {
				t.Errorf("visit %s ccd %d: %v", v, ccd, err)
				continue
			}
			for _, line := range strings.Fields(string(data)) {
				if line != v {
					t.Errorf("visit %s ccd %d: log holds %q", v, ccd, line)
				}
				runs[fmt.Sprintf("%s/ccd%d", v, ccd)]++
			}
		}
	}
	return runs
}

func TestBatchSubmitWait(t *testing.T) {
	e := newBatchEnv(t)
	out := e.must(0, time.Minute, "submit", filepath.Join(e.dir, "pipeline.yaml"), "--visits", filepath.Join(e.dir, "visits.csv"),
		"--name", "ccd-1", "--slices", "4")
	for _, want := range []string{"run ccd-1: job ", "dpsbatch status ccd-1", "Slurm log:"} {
		if !strings.Contains(out, want) {
			t.Errorf("submit output lacks %q:\n%s", want, out)
		}
	}
	waited := e.must(0, 3*time.Minute, "wait", "ccd-1", "--interval", "1s")
	if !strings.Contains(waited, ": done") || !strings.Contains(waited, "3 done") {
		t.Errorf("wait output:\n%s", waited)
	}
	st := e.status("ccd-1")
	if st.Counts["done"] != 3 || st.Visits != 3 || st.Outcome != "done" || len(st.Jobs) != 1 || st.Jobs[0].Recorded != "COMPLETED" {
		t.Errorf("status after the run: %+v", st)
	}
	// The outputs are the local run's, byte for byte.
	ref, err := localReference()
	if err != nil {
		t.Fatal(err)
	}
	keep := func(m map[string]string) map[string]string {
		for k := range m {
			if !strings.HasPrefix(k, "output/") && !strings.HasPrefix(k, "work/") {
				delete(m, k)
			}
		}
		return m
	}
	if n := sameFiles(t, keep(treeOf(t, ref)), keep(treeOf(t, st.Dir))); n != 16 {
		t.Errorf("compared %d outputs, want 16", n)
	}
	for _, f := range []string{"pipeline.yaml", "visits.csv", "state.db", "scripts/attempt-1.sbatch", "logs/slurm-" + st.Jobs[0].ID + ".out"} {
		if _, err := os.Stat(filepath.Join(st.Dir, f)); err != nil {
			t.Errorf("run directory: %v", err)
		}
	}
	// --slices 4 over a policy of 2 is what was asked: no warning.
	if log, err := os.ReadFile(filepath.Join(st.Dir, "logs", "slurm-"+st.Jobs[0].ID+".out")); err != nil || strings.Contains(string(log), "number of slices") {
		t.Errorf("the job's log warns about the number of slices asked for with --slices (%v):\n%s", err, log)
	}
	// The run is listed; resuming a finished run submits nothing.
	if out := e.must(0, time.Minute, "runs"); !strings.Contains(out, "ccd-1") || !strings.Contains(out, "done") {
		t.Errorf("runs:\n%s", out)
	}
	if out := e.must(0, time.Minute, "resume", "ccd-1"); !strings.Contains(out, "nothing left to run") {
		t.Errorf("resume of a finished run:\n%s", out)
	}
}

func TestBatchCancelResume(t *testing.T) {
	e := newBatchEnv(t)
	const visits = 12
	policy, vf := e.slowPipeline("slow", visits, "0.5")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "cancel-1")
	e.waitDone("cancel-1", 3, 2*time.Minute)
	if out := e.must(0, time.Minute, "cancel", "cancel-1"); !strings.Contains(out, "cancelled jobs") {
		t.Errorf("cancel:\n%s", out)
	}
	// Resume refuses while the cancelled job is still finishing, or
	// the run ended unfinished.
	_, errOut, code := e.dps(3*time.Minute, "wait", "cancel-1", "--interval", "1s")
	if code != exitFailure || !strings.Contains(errOut, "dpsbatch resume cancel-1") {
		t.Fatalf("wait after cancel: exit %d, want %d (unfinished)\n%s", code, exitFailure, errOut)
	}
	st := e.status("cancel-1")
	if st.Counts["done"] >= visits || st.Outcome != "unfinished" {
		t.Fatalf("cancelled run: %+v", st)
	}
	out := e.must(0, time.Minute, "resume", "cancel-1")
	if !strings.Contains(out, "attempt 2") {
		t.Errorf("resume:\n%s", out)
	}
	e.must(0, 3*time.Minute, "wait", "cancel-1", "--interval", "1s")
	st = e.status("cancel-1")
	if st.Counts["done"] != visits || len(st.Jobs) != 2 {
		t.Errorf("after resume: %+v", st)
	}
	for k, n := range visitLogs(t, st.Dir, visits) {
		if n != 1 {
			t.Errorf("%s ran %d times, want once", k, n)
		}
	}
}

func TestBatchStepKilledResume(t *testing.T) {
	e := newBatchEnv(t)
	const visits = 10
	policy, vf := e.slowPipeline("killed", visits, "0.5")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "killed-1")
	st := e.waitDone("killed-1", 2, 2*time.Minute)
	// Kill every rank of the step at once, as a node failure would.
	if out, err := exec.Command("pkill", "-9", "-f", "run --run-dir "+st.Dir+" ").CombinedOutput(); err != nil {
		t.Fatalf("pkill: %v %s", err, out)
	}
	_, _, code := e.dps(3*time.Minute, "wait", "killed-1", "--interval", "1s")
	if code != exitFailure {
		t.Fatalf("wait after the kill: exit %d, want %d", code, exitFailure)
	}
	st = e.status("killed-1")
	if len(st.Jobs) != 1 || !st.Jobs[0].Died || st.Outcome != "unfinished" {
		t.Errorf("killed run: %+v; want its job marked as ended without a record", st)
	}
	e.must(0, time.Minute, "resume", "killed-1")
	e.must(0, 3*time.Minute, "wait", "killed-1", "--interval", "1s")
	st = e.status("killed-1")
	if st.Counts["done"] != visits {
		t.Errorf("after resume: %+v", st)
	}
	// The visit in flight at the kill may have run twice; none more.
	twice := 0
	for k, n := range visitLogs(t, st.Dir, visits) {
		switch {
		case n == 2:
			twice++
		case n != 1:
			t.Errorf("%s ran %d times", k, n)
		}
	}
	if twice > 2 { // one visit, two CCDs
		t.Errorf("%d CCD logs show two runs, at most one visit (2 CCDs) was in flight", twice)
	}
}

func TestBatchTimeLimitAutoResume(t *testing.T) {
	e := newBatchEnv(t)
	const visits = 8
	// 8 visits of 10 s do not fit in a one-minute job: Slurm warns it
	// (SIGUSR1), the Pipeline stops between visits, the follow-on job
	// runs the rest.
	policy, vf := e.slowPipeline("timed", visits, "10")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "timed-1", "--time", "1", "--auto-resume", "3")
	e.must(0, 6*time.Minute, "wait", "timed-1", "--interval", "2s")
	st := e.status("timed-1")
	if st.Counts["done"] != visits {
		t.Fatalf("after the chain: %+v", st)
	}
	if len(st.Jobs) != 4 || st.Jobs[0].Recorded != "STOPPED" || !strings.Contains(st.Jobs[0].Reason, "time limit near") {
		t.Errorf("jobs: %+v; want the first stopped by the warning signal, and 3 follow-ons", st.Jobs)
	}
	for k, n := range visitLogs(t, st.Dir, visits) {
		if n != 1 {
			t.Errorf("%s ran %d times, want once", k, n)
		}
	}
}

func TestBatchDryRunAndBadInput(t *testing.T) {
	e := newBatchEnv(t)
	policy, vf := e.slowPipeline("dry", 3, "0")
	out := e.must(0, time.Minute, "submit", "--dry-run", policy, "--visits", vf, "--name", "dry-1", "--time", "10")
	for _, want := range []string{"dry run: nothing created", "plan (pack): partition debug", "#SBATCH", "--ntasks=3", "srun"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(e.root, "dry-1")); !os.IsNotExist(err) {
		t.Errorf("dry run created the run directory: %v", err)
	}
	out = e.must(0, time.Minute, "submit", "--dry-run", "--json", policy, "--visits", vf, "--name", "dry-1")
	var plan struct {
		Plan struct {
			Partition string `json:"partition"`
		} `json:"plan"`
		Scripts []struct {
			Text string `json:"text"`
		} `json:"scripts"`
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil || plan.Plan.Partition != "debug" || len(plan.Scripts) != 1 ||
		!strings.Contains(plan.Scripts[0].Text, "#SBATCH") {
		t.Errorf("dry run --json: %v, %+v:\n%s", err, plan, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"submit", policy, "--visits", vf, "--partition", "debgu"}, `did you mean "debug"`},
		{[]string{"submit", policy, "--visits", vf, "--cpus-per-slice", "8"}, "CPUs"},
		{[]string{"submit", policy, "--visits", vf, "--name", "a'b"}, "run name"},
		{[]string{"submit", policy, "--visits", vf + ".missing"}, "missing"},
		{[]string{"submit", policy}, "--visits"},
		{[]string{"status", "no-such-run"}, "no-such-run"},
		{[]string{"submit", policy, "--visits", vf, "--slices", "0"}, "--slices must be at least 1"},
		{[]string{"submit", policy, "--visits", vf, "--name", ""}, "--name: empty value"},
		{[]string{"submit", policy, "--visits", vf, "--binary", "/bin/true"}, "not a compatible dpsbatch"},
		{[]string{"event", "send", "no-such-run", "visitId=1"}, "needs --topic"},
	} {
		_, errOut, code := e.dps(time.Minute, tc.args...)
		if code != exitBadInput || !strings.Contains(errOut, tc.want) {
			t.Errorf("dpsbatch %s: exit %d, stderr %q; want exit %d mentioning %q", strings.Join(tc.args, " "), code, errOut, exitBadInput, tc.want)
		}
	}
	if ents, _ := os.ReadDir(e.root); len(ents) != 0 {
		t.Errorf("bad input left %d entries in the runs root", len(ents))
	}
}

func TestSiteCheckLive(t *testing.T) {
	e := newBatchEnv(t)
	if out := e.must(0, time.Minute, "site", "check"); !strings.Contains(out, "matches the cluster") {
		t.Errorf("site check:\n%s", out)
	}
	data, _ := os.ReadFile(e.site)
	wrong := filepath.Join(filepath.Dir(e.site), "wrong.yaml")
	writeFile(t, wrong, strings.Replace(string(data), "cpus_per_node: 4", "cpus_per_node: 8", 1))
	out, _, code := runCmd(t, time.Minute, cleanEnv(), e.bin, "site", "check", "--site", wrong)
	if code != exitBadInput || !strings.Contains(out, "cpus_per_node") {
		t.Errorf("site check of a wrong file: exit %d\n%s", code, out)
	}
	disc := e.must(0, time.Minute, "site", "discover", "--runs-root", e.root)
	found := filepath.Join(filepath.Dir(e.site), "found.yaml")
	writeFile(t, found, disc)
	if out, errOut, code := runCmd(t, time.Minute, cleanEnv(), e.bin, "site", "check", "--site", found); code != 0 {
		t.Errorf("site check of the discovered file: exit %d\n%s%s\n%s", code, out, errOut, disc)
	}
}
