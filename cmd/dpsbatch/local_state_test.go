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

	"github.com/dpsbatch/dpsbatch/jobs"
	"github.com/dpsbatch/dpsbatch/state"
)

// TestLocalRunKeepsState: a local run of the built-in example is a run
// like a batch one: it leaves a state file that status reads (every
// visit done, its job recorded), and the events it received and sent,
// which events lists.
func TestLocalRunKeepsState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ex")
	if out, err := run(t, "local", "--run-dir", dir); err != nil {
		t.Fatalf("local: exit %d: %v\n%s", exitCode(err), err, out)
	}
	rs := localStatus(t, dir)
	if rs.Visits != 3 || rs.Counts[state.Done] != 3 || rs.Outcome != jobs.OutcomeDone {
		t.Errorf("status of the local run: %d visits, counts %v, outcome %s; want 3 done", rs.Visits, rs.Counts, rs.Outcome)
	}
	if len(rs.Jobs) != 1 || rs.Jobs[0].ID != "local-1" || rs.Jobs[0].Recorded != state.EndCompleted.String() {
		t.Errorf("jobs of the local run: %+v; want local-1, completed", rs.Jobs)
	}
	out, err := run(t, "events", dir)
	if err != nil {
		t.Fatalf("events: %v\n%s", err, out)
	}
	for _, want := range []string{"state=started", "visit-measured", "visitId=1003", "state=ended"} {
		if !strings.Contains(out, want) {
			t.Errorf("events of the local run do not list %s:\n%s", want, out)
		}
	}
}

// TestLocalResume: a local run whose visit failed (a CCD's file missing)
// is resumed locally once the file is there (`dpsbatch resume` notices
// that the run is local; no site file is needed): only that visit runs
// again, the done ones never, and the run ends done.
func TestLocalResume(t *testing.T) {
	src := filepath.Join(t.TempDir(), "ccdproc")
	if err := exec.Command("cp", "-r", filepath.Join("..", "..", "examples", "ccdproc"), src).Run(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "r")
	out, err := run(t, "local", filepath.Join(src, "pipeline.yaml"), "--visits", filepath.Join(src, "visits-with-failure.csv"), "--run-dir", dir)
	if exitCode(err) != 3 {
		t.Fatalf("local with a missing CCD: exit %d (%v), want 3\n%s", exitCode(err), err, out)
	}
	if rs := localStatus(t, dir); rs.Counts[state.Done] != 3 || rs.Counts[state.Failed] != 1 {
		t.Fatalf("after the first run: counts %v; want 3 done, 1 failed", rs.Counts)
	}
	data, err := os.ReadFile(filepath.Join(src, "data", "1004", "ccd1.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "data", "1004", "ccd3.txt"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DPSBATCH_SITE", "")
	// The run reads its own copy of the pipeline's files: the new file
	// counts once resume copies them again, on purpose.
	if out, err := run(t, "resume", dir); exitCode(err) != 3 {
		t.Fatalf("resume without --refresh: exit %d (%v), want 3 (the run's copy lacks the file)\n%s", exitCode(err), err, out)
	}
	if out, err := run(t, "resume", "--refresh", dir); err != nil || !strings.Contains(out, "pipeline files copied again from "+src) {
		t.Fatalf("resume --refresh of a local run: exit %d: %v\n%s", exitCode(err), err, out)
	}
	rs := localStatus(t, dir)
	if rs.Counts[state.Done] != 4 || rs.Outcome != jobs.OutcomeDone {
		t.Errorf("after local --resume: counts %v, outcome %s; want 4 done", rs.Counts, rs.Outcome)
	}
	if len(rs.Jobs) != 3 || rs.Jobs[2].ID != "local-3" || rs.Jobs[2].Attempt != 3 {
		t.Errorf("jobs after the resumes: %+v; want local-1, local-2, then local-3 (attempt 3)", rs.Jobs)
	}
	for id, want := range map[string]int{"1001": 1, "1002": 1, "1003": 1, "1004": 3} {
		if got := visitAttempts(t, dir, id); got != want {
			t.Errorf("visit %s ran %d times; want %d", id, got, want)
		}
	}
	// Nothing is left: a second resume runs nothing and says so.
	out, err = run(t, "local", "--resume", dir)
	if err != nil || !strings.Contains(out, "nothing left to run") {
		t.Errorf("local --resume of a finished run: %v\n%s", err, out)
	}
}

// localStatus is `dpsbatch status --json DIR`'s one run.
func localStatus(t *testing.T, dir string) jobs.RunStatus {
	t.Helper()
	out, err := run(t, "status", "--json", dir)
	if err != nil {
		t.Fatalf("status --json %s: %v\n%s", dir, err, out)
	}
	var all []jobs.RunStatus
	if err := json.Unmarshal([]byte(out), &all); err != nil || len(all) != 1 {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return all[0]
}

// visitAttempts is how many times the run in dir started visit id.
func visitAttempts(t *testing.T, dir, id string) int {
	t.Helper()
	for _, v := range runVisits(t, dir) {
		if v.ID == id {
			return v.Attempts
		}
	}
	t.Fatalf("no visit %s in %s", id, dir)
	return 0
}

// TestLocalResumeAfterKill: status tells a local run running from one
// killed mid-visit (kill -9: no end recorded), which is resumed locally
// at once: the visit it was running and
// the ones it never started run, the done one does not, and the dead
// attempt's job is recorded as ended.
func TestLocalResumeAfterKill(t *testing.T) {
	bin := buildBinary(t, "")
	src := filepath.Join(t.TempDir(), "ccdproc")
	if err := exec.Command("cp", "-r", filepath.Join("..", "..", "examples", "ccdproc"), src).Run(); err != nil {
		t.Fatal(err)
	}
	// Visit 1002 hangs while the file "slow" exists.
	script := filepath.Join(src, "bin", "measure.sh")
	data, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	slow := filepath.Join(src, "slow")
	hang := fmt.Sprintf("case \"$1\" in */1002/*) while [ -e %q ]; do sleep 0.1; done;; esac\n", slow)
	if err := os.WriteFile(script, []byte(strings.Replace(string(data), "set -eu\n", "set -eu\n"+hang, 1)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(slow, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "k")
	cmd := exec.Command(bin, "local", filepath.Join(src, "pipeline.yaml"), "--visits", filepath.Join(src, "visits.csv"), "--run-dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for deadline := time.Now().Add(60 * time.Second); visitState(t, dir, "1002") != state.Running; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("visit 1002 did not start within 60s")
		}
	}
	// While it runs, status says so (its running visit is running, not
	// interrupted); once killed, the visit reads interrupted.
	if rs := localStatus(t, dir); rs.Outcome != jobs.OutcomeRunning || rs.Counts[state.Running] != 1 || !rs.Jobs[0].Live {
		t.Errorf("status of the running local run: outcome %s, counts %v, jobs %+v; want running, 1 visit running", rs.Outcome, rs.Counts, rs.Jobs)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if rs := localStatus(t, dir); rs.Outcome != jobs.OutcomeUnfinished || rs.Counts[state.Interrupted] != 1 || rs.Jobs[0].Live {
		t.Errorf("status of the killed local run: outcome %s, counts %v; want unfinished, 1 visit interrupted", rs.Outcome, rs.Counts)
	}
	os.Remove(slow)

	start := time.Now()
	if out, err := run(t, "local", "--resume", dir); err != nil {
		t.Fatalf("local --resume: exit %d: %v\n%s", exitCode(err), err, out)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the resume took %s: it waited for the killed attempt", took)
	}
	rs := localStatus(t, dir)
	if rs.Counts[state.Done] != 3 {
		t.Errorf("after local --resume: counts %v; want 3 done", rs.Counts)
	}
	for id, want := range map[string]int{"1001": 1, "1002": 2, "1003": 1} {
		if got := visitAttempts(t, dir, id); got != want {
			t.Errorf("visit %s ran %d times; want %d", id, got, want)
		}
	}
	if len(rs.Jobs) != 2 || rs.Jobs[0].Recorded != state.EndFailed.String() || rs.Jobs[1].Recorded != state.EndCompleted.String() {
		t.Errorf("jobs: %+v; want local-1 failed (killed), local-2 completed", rs.Jobs)
	}
}

// visitState is visit id's state in the run in dir ("" while the state
// file cannot be read).
func visitState(t *testing.T, dir, id string) state.VisitState {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "state.db")); err != nil {
		return ""
	}
	st, err := state.OpenReadOnly(filepath.Join(dir, "state.db"))
	if err != nil {
		return ""
	}
	defer st.Close()
	s, _ := st.VisitState(id)
	return s
}
