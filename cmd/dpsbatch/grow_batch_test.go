package main

import (
	"encoding/json"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// userEnv is a batch env whose runs root belongs to the ordinary test
// user, who runs dpsbatch itself (asUser): growth works without root.
func userEnv(t *testing.T, siteKeys string) (*batchEnv, func(want int, args ...string) (string, string)) {
	t.Helper()
	e := newBatchEnv(t)
	needEnforcement(t)
	u, err := user.Lookup(testUser)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.MkdirAll(e.root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(e.root, uid, gid); err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(e.site)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, e.site, string(base)+siteKeys)
	env := cleanEnv("DPSBATCH_SITE="+e.site, "HOME="+u.HomeDir, "USER="+testUser, "LOGNAME="+testUser)
	asUser := func(want int, args ...string) (string, string) {
		t.Helper()
		full := append([]string{"--reuid=" + testUser, "--regid=" + testUser, "--init-groups", e.bin}, args...)
		out, errOut, code := runCmd(t, 2*time.Minute, env, "setpriv", full...)
		if code != want {
			t.Fatalf("dpsbatch %s as %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), testUser, code, want, out, errOut)
		}
		return out, errOut
	}
	return e, asUser
}

// A run whose stage holds more memory than each slice asked for has its
// step killed by Slurm (OverMemoryKill, scripts/cluster.sh); with growth
// on, the job submits its successor itself with twice the memory per
// slice, which finishes the visits, and status says why the request
// grew. All as an ordinary user.
func TestBatchGrowsMemoryAfterKill(t *testing.T) {
	e, run2 := userEnv(t, "scheduler:\n  grow: {time: 2, memory: 2}\n")
	asUser := func(want int, args ...string) string { out, _ := run2(want, args...); return out }
	// Each slice holds 300 MiB for 12 s: over the 200 MB a slice asks
	// for (the step's tasks on a node share their sum), under 400 MB.
	policy, vf := e.twoSlicePipeline("oom", `  - name: hold
    type: exec
    settings:
      command: [python3, -c, "import time; a = bytearray(300 << 20); a[::4096] = b'x' * len(a[::4096]); time.sleep(12)"]
      timeout: 120s
`, "v001")
	const run = "oom-1"
	asUser(0, "submit", policy, "--visits", vf, "--name", run, "--mem-per-slice", "200M", "--grow", "--auto-resume", "1")
	e.cancelAtEnd(run)

	st := growStatusUntilEnded(t, func() string { return asUser(0, "status", "--json", run) }, 4*time.Minute, 2*time.Second)
	text := asUser(0, "status", run)
	if st.Outcome != "done" || st.Counts["done"] != 1 || len(st.Jobs) != 2 {
		t.Fatalf("run %s: %+v; want done by a second job\n%s", run, st, text)
	}
	first, second := st.Jobs[0].ID, st.Jobs[1].ID
	if st.Request.MemPerSliceMB != 400 || !strings.Contains(st.Request.Grown, "job "+first+": a step was killed for memory") ||
		!strings.Contains(st.Request.Grown, "memory per slice 200M -> 400M") {
		t.Errorf("request %+v; want 400 MB per slice, grown after job %s's memory kill", st.Request, first)
	}
	if !strings.Contains(text, "grown: job "+first+": a step was killed for memory") || !strings.Contains(text, "request: 400M per slice") ||
		!regexp.MustCompile(`(?m)^  job `+first+` \(attempt 1\): .* — killed for memory \(slurmstepd`).MatchString(text) {
		t.Errorf("status does not say why the request grew:\n%s", text)
	}
	log, err := os.ReadFile(filepath.Join(e.root, run, "logs", "slurm-"+first+".out"))
	if err != nil || !strings.Contains(string(log), "exceeded memory limit") || !strings.Contains(string(log), "job "+second+" submitted") {
		t.Errorf("job %s's log (%v) does not show the kill and the successor it submitted:\n%s", first, err, log)
	}
	// A request over the partition's limits is bad input naming the flag
	// and the limit, and changes nothing.
	if _, errOut := run2(2, "resume", run, "--mem-per-slice", "3G"); !strings.Contains(errOut, "--mem-per-slice 3072M") ||
		!strings.Contains(errOut, "a node has 2000 MB") {
		t.Errorf("resume over the limits: %s; want the flag and the limit named", errOut)
	}
	if again := growStatusOf(t, asUser(0, "status", "--json", run)); again.Request != st.Request || len(again.Jobs) != 2 {
		t.Errorf("a refused resume changed the run: %+v", again)
	}
	script, err := os.ReadFile(filepath.Join(e.root, run, "scripts", "attempt-2.sbatch"))
	if err != nil || !strings.Contains(string(script), "--mem-per-cpu=400M") || strings.Contains(string(script), "resume --auto") {
		t.Errorf("attempt 2's script (%v): want 400M per CPU and no further successor:\n%s", err, script)
	}
}

// growStatus is what the growth test reads of status --json.
type growStatus struct {
	Outcome string         `json:"outcome"`
	Counts  map[string]int `json:"counts"`
	Jobs    []struct {
		ID    string `json:"id"`
		State string `json:"state"`
	} `json:"jobs"`
	Request struct {
		MemPerSliceMB int    `json:"memPerSliceMB"`
		GrowLeft      int    `json:"growLeft"`
		Grown         string `json:"grown"`
	} `json:"request"`
}

func growStatusOf(t *testing.T, out string) growStatus {
	t.Helper()
	var all []growStatus
	if err := json.Unmarshal([]byte(out), &all); err != nil || len(all) != 1 {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return all[0]
}

// A job whose time limit comes before its visits are done stops at a
// visit boundary (the time budget, or Slurm's warning) and, with growth
// on, submits its successor with twice its time, which finishes the
// visits; status says why. As an ordinary user.
func TestBatchGrowsTimeAfterStop(t *testing.T) {
	e, run2 := userEnv(t, "scheduler:\n  grow: {time: 2, memory: 2}\n")
	asUser := func(want int, args ...string) string { out, _ := run2(want, args...); return out }
	// 8 visits of 15 s: two minutes and more of work for a job of two.
	policy, vf := e.slowPipeline("short", 8, "15")
	const run = "short-1"
	asUser(0, "submit", policy, "--visits", vf, "--name", run, "--time", "2", "--grow", "--auto-resume", "2")
	e.cancelAtEnd(run)

	st := growStatusUntilEnded(t, func() string { return asUser(0, "status", "--json", run) }, 8*time.Minute, 3*time.Second)
	text := asUser(0, "status", run)
	if st.Outcome != "done" || st.Counts["done"] != 8 || len(st.Jobs) != 2 {
		t.Fatalf("run %s: %+v; want done by a second job\n%s", run, st, text)
	}
	first := st.Jobs[0].ID
	if !strings.Contains(st.Request.Grown, "job "+first+" stopped with visits left: time limit near") ||
		!strings.Contains(st.Request.Grown, "time 00:02:00 -> 00:04:00") || st.Request.GrowLeft != 1 {
		t.Errorf("request %+v; want 4 minutes, grown after job %s stopped for time, one more job allowed", st.Request, first)
	}
	if !strings.Contains(text, "grown: job "+first+" stopped with visits left: time limit near") {
		t.Errorf("status does not say why the request grew:\n%s", text)
	}
	script, err := os.ReadFile(filepath.Join(e.root, run, "scripts", "attempt-2.sbatch"))
	if err != nil || !strings.Contains(string(script), "--time=00:04:00") || !strings.Contains(string(script), "resume --auto") {
		t.Errorf("attempt 2's script (%v): want 4 minutes, and a successor of its own when it runs short:\n%s", err, script)
	}
}

// growStatusUntilEnded reads status (the run's status --json) every
// pause until the run is done or failed, or within has passed, and
// returns the last.
func growStatusUntilEnded(t *testing.T, status func() string, within, pause time.Duration) growStatus {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := growStatusOf(t, status())
		if st.Outcome == "done" || st.Outcome == "failed" || time.Now().After(deadline) {
			return st
		}
		time.Sleep(pause)
	}
}
