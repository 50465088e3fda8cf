package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/state"
)

// A stop signal is never a program's failure: a program the job's stop
// kills (scancel, scancel --signal, the time limit, srun forwarding them)
// leaves its visit interrupted, to be run again, never failed.

// termPipeline writes a pipeline of two slices whose one stage is a
// program that takes back SIGTERM's default action (as a program started
// without the exec stage's shell, or one that sets its own handlers,
// does), marks itself started in RUN-DIR/output/VISIT/started-CCD, sleeps
// sleep seconds, then appends the visit to RUN-DIR/output/VISIT/done-CCD.
func (e *batchEnv) termPipeline(name string, visits int, sleep string) (policy, visitFile string) {
	e.t.Helper()
	dir := filepath.Join(e.dir, name)
	policy = filepath.Join(dir, "pipeline.yaml")
	prog := "import os, signal, sys, time\n" +
		"signal.signal(signal.SIGTERM, signal.SIG_DFL)\n" +
		"out, visit, ccd = sys.argv[1:]\n" +
		"os.makedirs(out, exist_ok=True)\n" +
		"open(os.path.join(out, 'started-' + ccd), 'a').close()\n" +
		"time.sleep(" + sleep + ")\n" +
		"with open(os.path.join(out, 'done-' + ccd), 'a') as f: f.write(visit + '\\n')\n"
	writeFile(e.t, filepath.Join(dir, "prog.py"), prog)
	writeFile(e.t, policy, fmt.Sprintf(`pipeline: %s
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
locations: {output: "output/{visit}"}
events: {trigger: {topic: visits}}
stages:
  - name: work
    type: exec
    settings:
      command: [python3, -S, "{pipelinedir}/prog.py", "{output}", "{visit}", "{ccd}"]
      timeout: 60s
`, name))
	var b strings.Builder
	b.WriteString("visitId\n")
	for i := range visits {
		fmt.Fprintf(&b, "v%03d\n", i+1)
	}
	visitFile = filepath.Join(dir, "visits.csv")
	writeFile(e.t, visitFile, b.String())
	return policy, visitFile
}

// runVisits reads every visit of a run from its state file.
func runVisits(t *testing.T, dir string) []state.Visit {
	t.Helper()
	db, err := state.OpenReadOnly(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	vs, err := db.Visits("", 0)
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// waitJobGone waits until Slurm no longer lists job id as live.
func waitJobGone(t *testing.T, id string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		out, _ := exec.Command("squeue", "-h", "-j", id, "-o", "%T").Output()
		s := strings.TrimSpace(string(out))
		if s == "" || s == "COMPLETED" || s == "CANCELLED" || s == "FAILED" || s == "TIMEOUT" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("job %s still live after %v", id, timeout)
}

// TestBatchStopSignalInterrupts stops a job by scancel, and by scancel
// --signal=TERM, while both slices' programs of the first visit sleep:
// the programs die of SIGTERM, and the visit is interrupted, not failed.
func TestBatchStopSignalInterrupts(t *testing.T) {
	e := newBatchEnv(t)
	for _, tc := range []struct{ name, run string }{
		{"scancel", "term-cancel"},
		{"scancel --signal=TERM", "term-signal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policy, vf := e.termPipeline(tc.run, 3, "5")
			e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", tc.run)
			job := e.jobOf(tc.run)
			t.Cleanup(func() { exec.Command("scancel", job).Run() })
			dir := filepath.Join(e.root, tc.run)
			deadline := time.Now().Add(2 * time.Minute)
			for {
				_, err1 := os.Stat(filepath.Join(dir, "output", "v001", "started-1"))
				_, err2 := os.Stat(filepath.Join(dir, "output", "v001", "started-2"))
				if err1 == nil && err2 == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the programs of v001 did not start: %v, %v", err1, err2)
				}
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond) // well into the sleep
			args := []string{job}
			if tc.name != "scancel" {
				args = []string{"--signal=TERM", job}
			}
			if out, err := exec.Command("scancel", args...).CombinedOutput(); err != nil {
				t.Fatalf("scancel %v: %v %s", args, err, out)
			}
			waitJobGone(t, job, 2*time.Minute)
			_, _, code := e.dps(3*time.Minute, "wait", tc.run, "--interval", "1s")
			st := e.status(tc.run)
			vs := runVisits(t, st.Dir)
			log, _ := os.ReadFile(filepath.Join(st.Dir, "logs", "slurm-"+job+".out"))
			if code != exitFailure || st.Counts["failed"] != 0 || vs[0].State != state.Interrupted ||
				!strings.Contains(vs[0].Err, "interrupted by a stop signal") {
				t.Errorf("wait exit %d (want %d, unfinished), counts %v, v001 %+v; want v001 interrupted by the stop signal, none failed\nlog:\n%s",
					code, exitFailure, st.Counts, vs[0], log)
			}
			if len(st.Jobs) != 1 || strings.Contains(st.Jobs[0].Reason, "failed") {
				t.Errorf("job %+v; want no visit failed", st.Jobs)
			}
			for _, f := range []string{"done-1", "done-2"} {
				if _, err := os.Stat(filepath.Join(dir, "output", "v001", f)); err == nil {
					t.Errorf("v001's %s exists: the program was not killed", f)
				}
			}
		})
	}
}

// TestBatchStopSignalSoak stops jobs by scancel twenty times, at random
// points of visits whose program takes 50 ms: four runs at once, five
// stops each, resuming after each stop. No visit ever fails, the visit in
// flight ends done or interrupted (none is left running), and no visit is
// done twice.
func TestBatchStopSignalSoak(t *testing.T) {
	e := newBatchEnv(t)
	const runs, rounds, visits = 4, 5, 2000
	start := time.Now()
	t.Run("runs", func(t *testing.T) {
		for i := range runs {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				re := *e
				re.t = t
				re.soak(fmt.Sprintf("soak-%d", i), visits, rounds)
			})
		}
	})
	t.Logf("%d stops in %v", runs*rounds, time.Since(start).Round(time.Second))
}

// soak submits run and stops its job rounds times (see
// TestBatchStopSignalSoak).
func (e *batchEnv) soak(run string, visits, rounds int) {
	t := e.t
	policy, vf := e.termPipeline(run, visits, "0.05")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", run)
	e.cancelAtEnd(run)
	for round := 1; round <= rounds; round++ {
		if round > 1 {
			e.must(0, time.Minute, "resume", run)
		}
		st := e.status(run)
		job := st.Jobs[len(st.Jobs)-1].ID
		t.Cleanup(func() { exec.Command("scancel", job).Run() })
		// Stop once the job runs programs: at a random point of a visit.
		started := func() int {
			names, _ := filepath.Glob(filepath.Join(e.root, run, "output", "*", "started-*"))
			return len(names)
		}
		before := started()
		deadline := time.Now().Add(time.Minute)
		for started() <= before {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: job %s started no program within a minute", round, job)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The program's 50 ms, and as long after.
		time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond)
		if out, err := exec.Command("scancel", job).CombinedOutput(); err != nil {
			t.Fatalf("round %d: scancel %s: %v %s", round, job, err, out)
		}
		waitJobGone(t, job, 2*time.Minute)
		st = e.status(run)
		if st.Counts["failed"] != 0 || st.Counts["running"] != 0 {
			for _, v := range runVisits(t, st.Dir) {
				if v.State == state.Failed || v.State == state.Running {
					t.Logf("%s: %+v", v.ID, v)
				}
			}
			t.Fatalf("round %d (job %s): counts %v; want none failed or left running", round, job, st.Counts)
		}
		t.Logf("round %d: job %s: %v", round, job, st.Counts)
	}

	// A visit done ran its program to the end once per CCD, unless an
	// earlier attempt was interrupted after one CCD's program finished.
	interrupted := 0
	for _, v := range runVisits(t, e.status(run).Dir) {
		if v.State == state.Interrupted || v.Attempts > 1 {
			interrupted++
		}
		if v.State != state.Done {
			continue
		}
		for ccd := 1; ccd <= 2; ccd++ {
			data, _ := os.ReadFile(filepath.Join(e.root, run, "output", v.ID, fmt.Sprintf("done-%d", ccd)))
			if n := strings.Count(string(data), "\n"); n == 0 || n > 1 && v.Attempts == 1 {
				t.Errorf("visit %s (done, %d attempts): ccd %d's program finished %d times", v.ID, v.Attempts, ccd, n)
			}
		}
	}
	t.Logf("%d visits interrupted at some point", interrupted)
}
