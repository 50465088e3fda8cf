package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A visit recorded running whose own job no longer runs it reads
// interrupted in status, on the local cluster: after SIGKILL of rank 0,
// with or without a queued --auto-resume follow-on, and after SIGKILL of
// a slice.

// inFlight waits until the run has a visit done and one running, and
// returns its status.
func (e *batchEnv) inFlight(run string) statusJSON {
	e.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st := e.status(run)
		if st.Counts["done"] >= 1 && st.Counts["running"] == 1 {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("run %s: no visit in flight after a done one: %+v", run, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// rankPIDs returns the pid of rank 0 (from its rank-0 lock) and of the
// other dpsbatch processes running the run in dir (the slices).
func rankPIDs(t *testing.T, dir string) (rank0 int, slices []int) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, ".rank0.lock"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data)) // job ID host H pid P
	if len(f) != 6 || f[4] != "pid" {
		t.Fatalf("rank-0 lock holds %q", data)
	}
	if rank0, err = strconv.Atoi(f[5]); err != nil {
		t.Fatal(err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) < 4 || filepath.Base(args[0]) != "dpsbatch" || args[1] != "run" || !strings.Contains(string(raw), dir) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if pid != rank0 {
			slices = append(slices, pid)
		}
	}
	return rank0, slices
}

// endedThenInterrupted waits for Slurm to report job ended, then wants
// status to count its visit in flight as interrupted within two seconds.
func (e *batchEnv) endedThenInterrupted(run, job string) statusJSON {
	e.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var ended time.Time
	for {
		st := e.status(run)
		for _, j := range st.Jobs {
			if j.ID == job && !j.Live && ended.IsZero() {
				ended = time.Now()
			}
		}
		switch {
		case !ended.IsZero() && st.Counts["running"] == 0 && st.Counts["interrupted"] == 1:
			return st
		case !ended.IsZero() && time.Since(ended) > 2*time.Second:
			e.t.Fatalf("2 s after Slurm reported job %s ended, status counts %v; want 0 running, 1 interrupted", job, st.Counts)
		case time.Now().After(deadline):
			e.t.Fatalf("job %s still live: %+v", job, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestBatchRank0KilledVisitInterrupted(t *testing.T) {
	e := newBatchEnv(t)
	policy, vf := e.slowPipeline("rank0kill", 6, "4")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "r0kill")
	st := e.inFlight("r0kill")
	rank0, _ := rankPIDs(t, st.Dir)
	if err := syscall.Kill(rank0, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st = e.endedThenInterrupted("r0kill", st.Jobs[0].ID)
	if st.Outcome != "unfinished" || st.ETA != 0 {
		t.Errorf("after the kill: %+v; want unfinished, no time left", st)
	}
	// Every reader says so: the text, the list of runs.
	if out := e.must(0, time.Minute, "status", "r0kill"); !strings.Contains(out, "1 interrupted") || strings.Contains(out, "running") {
		t.Errorf("status:\n%s\nwant the visit in flight interrupted", out)
	}
	var runs []statusJSON
	if out := e.must(0, time.Minute, "runs", "--json"); json.Unmarshal([]byte(out), &runs) != nil || len(runs) != 1 ||
		runs[0].Counts["running"] != 0 || runs[0].Counts["interrupted"] != 1 {
		t.Errorf("runs --json:\n%s\nwant the visit in flight interrupted", out)
	}
	_, errOut, code := e.dps(time.Minute, "wait", "r0kill", "--interval", "1s")
	if code != exitFailure || !strings.Contains(errOut, "1 interrupted") || strings.Contains(errOut, "running") {
		t.Errorf("wait: exit %d\n%s\nwant 1, the visit in flight interrupted", code, errOut)
	}
}

func TestBatchRank0KilledFollowOnQueued(t *testing.T) {
	e := newBatchEnv(t)
	policy, vf := e.slowPipeline("followon", 6, "4")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "r0follow", "--auto-resume", "1")
	st := e.inFlight("r0follow")
	if len(st.Jobs) != 2 {
		t.Fatalf("jobs %+v; want the job and its follow-on", st.Jobs)
	}
	first, next := st.Jobs[0].ID, st.Jobs[1].ID
	// Keep the follow-on queued once its dependency is met.
	if out, err := exec.Command("scontrol", "hold", next).CombinedOutput(); err != nil {
		t.Fatalf("scontrol hold %s: %v %s", next, err, out)
	}
	t.Cleanup(func() { exec.Command("scancel", next).Run() })
	rank0, _ := rankPIDs(t, st.Dir)
	if err := syscall.Kill(rank0, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st = e.endedThenInterrupted("r0follow", first)
	if !st.Live || st.Outcome != "pending" || st.ETA != 0 {
		t.Errorf("with the follow-on queued: %+v; want live, pending, no time left", st)
	}
	// Released, the follow-on runs the rest, the interrupted visit too.
	if out, err := exec.Command("scontrol", "release", next).CombinedOutput(); err != nil {
		t.Fatalf("scontrol release %s: %v %s", next, err, out)
	}
	e.must(0, 3*time.Minute, "wait", "r0follow", "--interval", "1s")
}

func TestBatchSliceKilledVisitInterrupted(t *testing.T) {
	e := newBatchEnv(t)
	policy, vf := e.slowPipeline("slicekill", 6, "4")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "slkill")
	st := e.inFlight("slkill")
	_, slices := rankPIDs(t, st.Dir)
	if len(slices) == 0 {
		t.Fatal("found no slice process")
	}
	if err := syscall.Kill(slices[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.endedThenInterrupted("slkill", st.Jobs[0].ID)
}

// slowProduction writes a production of two pipelines, a and b, each of
// two slices whose one stage sleeps, with their own visits and trigger
// topics, and returns the production file.
func (e *batchEnv) slowProduction(name string, visits int, sleep string) string {
	e.t.Helper()
	dir := filepath.Join(e.dir, name)
	for _, p := range []string{"a", "b"} {
		writeFile(e.t, filepath.Join(dir, p, "pipeline.yaml"), fmt.Sprintf(`pipeline: %s
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
locations: {output: "output/{visit}"}
events: {trigger: {topic: %svisits}}
stages:
  - name: work
    type: exec
    settings:
      command: [sh, -c, 'sleep "$1" && mkdir -p "$2" && echo "$3" >> "$2/ccd$4.log"', sh, "%s", "{output}", "{visit}", "{ccd}"]
      timeout: 120s
`, p, p, sleep))
		var b strings.Builder
		b.WriteString("visitId\n")
		for i := range visits {
			fmt.Fprintf(&b, "%s%03d\n", p, i+1)
		}
		writeFile(e.t, filepath.Join(dir, p, "visits.csv"), b.String())
	}
	prod := filepath.Join(dir, "production.yaml")
	writeFile(e.t, prod, `production: `+name+`
pipelines:
  - {name: a, policy: a/pipeline.yaml, visits: a/visits.csv, slices: 2}
  - {name: b, policy: b/pipeline.yaml, visits: b/visits.csv, slices: 2}
`)
	return prod
}

// One pipeline's rank 0 of a production dies while the job runs the
// other: its visit in flight reads interrupted at once, the other's
// running.
func TestBatchProductionRank0KilledVisitInterrupted(t *testing.T) {
	e := newBatchEnv(t)
	prod := e.slowProduction("twin", 6, "4")
	e.must(0, time.Minute, "submit", prod, "--name", "twin-1")
	e.cancelAtEnd("twin-1")
	deadline := time.Now().Add(3 * time.Minute)
	var st prodStatusJSON
	for {
		st = e.prodStatus("twin-1")
		if len(st.Pipelines) == 2 && st.Pipelines[0].Counts["done"] >= 1 && st.Pipelines[0].Counts["running"] == 1 &&
			st.Pipelines[1].Counts["running"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no visit in flight in both pipelines: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	rank0, _ := rankPIDs(t, st.Pipelines[0].Dir)
	if err := syscall.Kill(rank0, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	for {
		st = e.prodStatus("twin-1")
		a, b := st.Pipelines[0].Counts, st.Pipelines[1].Counts
		if a["running"] == 0 && a["interrupted"] == 1 {
			if !st.Live || b["interrupted"] != 0 {
				t.Errorf("after a's rank 0 died: job live %v, b %v; want the job running on, b not interrupted", st.Live, b)
			}
			return
		}
		if time.Since(killed) > 2*time.Second {
			t.Fatalf("2 s after a's rank 0 died: a %v, b %v; want a's visit interrupted", a, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
