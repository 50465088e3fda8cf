package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/testenv"
)

// The events issue's integration tests: relay commands reaching a
// running job through its broker, on the local Slurm cluster.

// eventJSON is one line of `dpsbatch events --json`; Receiver is the
// pipeline of a production whose state file recorded it.
type eventJSON struct {
	Receiver string         `json:"receiver"`
	At       time.Time      `json:"at"`
	Dir      string         `json:"dir"`
	Topic    string         `json:"topic"`
	Kind     string         `json:"kind"`
	Pipeline string         `json:"pipeline"`
	Job      string         `json:"job"`
	Props    map[string]any `json:"props"`
}

func (e *batchEnv) events(run string) []eventJSON {
	e.t.Helper()
	return parseEvents(e.t, e.must(0, time.Minute, "events", "--json", run))
}

// parseEvents reads the lines of `dpsbatch events --json`.
func parseEvents(t *testing.T, out string) []eventJSON {
	t.Helper()
	var evs []eventJSON
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var ev eventJSON
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("events --json: %v\n%s", err, out)
		}
		evs = append(evs, ev)
	}
	return evs
}

// jobOf returns the run's first job's ID.
func (e *batchEnv) jobOf(run string) string {
	e.t.Helper()
	st := e.status(run)
	if len(st.Jobs) == 0 {
		e.t.Fatalf("run %s has no job", run)
	}
	return st.Jobs[0].ID
}

// release returns what releases the job, submitted --hold so that events
// can be sent before it starts.
func release(t *testing.T, job string) func() {
	return func() {
		t.Helper()
		if out, err := exec.Command("scontrol", "release", job).CombinedOutput(); err != nil {
			t.Fatalf("scontrol release %s: %v %s", job, err, out)
		}
	}
}

// TestBatchStopResume stops a running job with `dpsbatch stop`: the visit
// in flight finishes, no other starts, the job records STOPPED and why;
// resume runs the rest, each visit once. Stop is refused once the run
// has ended.
func TestBatchStopResume(t *testing.T) {
	e := newBatchEnv(t)
	const visits = 12
	policy, vf := e.slowPipeline("stop", visits, "0.5")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "stop-1")
	e.waitDone("stop-1", 2, 2*time.Minute)
	out := e.must(0, time.Minute, "stop", "stop-1")
	if !strings.Contains(out, "shutdown event on dpsbatch.control sent to job") {
		t.Errorf("stop:\n%s", out)
	}
	_, errOut, code := e.dps(3*time.Minute, "wait", "stop-1", "--interval", "1s")
	if code != exitFailure || !strings.Contains(errOut, "dpsbatch resume stop-1") {
		t.Fatalf("wait after stop: exit %d, want %d (unfinished)\n%s", code, exitFailure, errOut)
	}
	st := e.status("stop-1")
	if done := st.Counts["done"]; done < 2 || done >= visits || st.Counts["running"] != 0 || st.Counts["failed"] != 0 {
		t.Errorf("stopped run: %+v; want some visits done, none running or failed", st.Counts)
	}
	if j := st.Jobs[0]; j.Recorded != "STOPPED" || !strings.Contains(j.Reason, "shutdown event") || j.Died {
		t.Errorf("stopped job: %+v; want STOPPED by a shutdown event", j)
	}
	var got []string
	for _, ev := range e.events("stop-1") {
		if ev.Job != st.Jobs[0].ID {
			t.Errorf("event %+v recorded for another job than %s", ev, st.Jobs[0].ID)
		}
		got = append(got, fmt.Sprintf("%s %s %s %v %v", ev.Dir, ev.Topic, ev.Kind, ev.Props["state"], ev.Props["outcome"]))
	}
	want := "out dpsbatch.pipeline  started <nil>|in dpsbatch.control shutdown <nil> <nil>|out dpsbatch.pipeline  ended STOPPED"
	if strings.Join(got, "|") != want {
		t.Errorf("events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.ReplaceAll(want, "|", "\n"))
	}
	_, errOut, code = e.dps(time.Minute, "stop", "stop-1")
	if code != exitFailure || !strings.Contains(errOut, "not running") || !strings.Contains(errOut, "its last job "+st.Jobs[0].ID) {
		t.Errorf("stop of an ended run: exit %d\n%s", code, errOut)
	}
	e.must(0, time.Minute, "resume", "stop-1")
	e.must(0, 3*time.Minute, "wait", "stop-1", "--interval", "1s")
	st = e.status("stop-1")
	if st.Counts["done"] != visits {
		t.Errorf("after resume: %+v", st)
	}
	for k, n := range visitLogs(t, st.Dir, visits) {
		if n != 1 {
			t.Errorf("%s ran %d times, want once", k, n)
		}
	}
}

// TestBatchListenFinish runs a listening run: an event sent while its
// job is held (pending) is stored and consumed when it starts; events
// sent while it runs are consumed; a trigger for a visit already done is
// skipped; finish ends it cleanly and closes its input.
func TestBatchListenFinish(t *testing.T) {
	e := newBatchEnv(t)
	policy, vf := e.slowPipeline("listen", 2, "0.2")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "listen-1", "--listen", "--heartbeat", "1s", "--hold")
	job := e.jobOf("listen-1")
	release := release(t, job)
	out := e.must(0, time.Minute, "event", "send", "listen-1", "--topic", "visits", "visitId=v003")
	if !strings.Contains(out, "stored; job "+job+" (pending) reads it when it starts") {
		t.Errorf("event send to a pending job:\n%s", out)
	}
	// Refused with nothing sent: a topic the pipeline never reads, a
	// trigger without a visit, stop of a pending job.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"event", "send", "listen-1", "--topic", "visit", "visitId=v9"}, exitBadInput, `never reads topic "visit" (did you mean "visits"?)`},
		{[]string{"event", "send", "listen-1", "--topic", "visits", "filter=r"}, exitBadInput, "needs a visitId property"},
		{[]string{"event", "send", "listen-1", "--topic", "visits", "visitId"}, exitBadInput, "expected key=value"},
		{[]string{"stop", "listen-1"}, exitFailure, "its job " + job + " is pending"},
	} {
		_, errOut, code := e.dps(time.Minute, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("dpsbatch %s: exit %d, stderr %q; want exit %d mentioning %q", strings.Join(tc.args, " "), code, errOut, tc.code, tc.want)
		}
	}
	release()
	e.waitDone("listen-1", 3, 2*time.Minute)
	out = e.must(0, time.Minute, "event", "send", "listen-1", "--topic", "visits", "visitId=v004")
	if !strings.Contains(out, "sent to job "+job) {
		t.Errorf("event send to a running job:\n%s", out)
	}
	e.waitDone("listen-1", 4, 2*time.Minute)
	// v001 again: done already, so skipped, not run twice.
	e.must(0, time.Minute, "event", "send", "listen-1", "--topic", "visits", "visitId=v001")
	if out := e.must(0, time.Minute, "status", "listen-1"); !strings.Contains(out, "heartbeat") || !strings.Contains(out, "listening for trigger events") {
		t.Errorf("status of a listening run:\n%s", out)
	}
	e.must(0, time.Minute, "finish", "listen-1")
	waited := e.must(0, 2*time.Minute, "wait", "listen-1", "--interval", "1s")
	if !strings.Contains(waited, "4 done") {
		t.Errorf("wait:\n%s", waited)
	}
	st := e.status("listen-1")
	if st.Visits != 4 || st.Jobs[0].Recorded != "COMPLETED" {
		t.Errorf("finished run: %+v", st)
	}
	for k, n := range visitLogs(t, st.Dir, 4) {
		if n != 1 {
			t.Errorf("%s ran %d times, want once", k, n)
		}
	}
	var got []string
	for _, ev := range e.events("listen-1") {
		if ev.Topic == "dpsbatch.pipeline" {
			continue // its start and end
		}
		got = append(got, fmt.Sprintf("%s %s %s %v", ev.Dir, ev.Topic, ev.Kind, ev.Props["visitId"]))
	}
	want := "in visits data v003|in visits data v004|in visits data v001|in visits no-more-data <nil>"
	if strings.Join(got, "|") != want {
		t.Errorf("events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.ReplaceAll(want, "|", "\n"))
	}
	slurmLog, _ := os.ReadFile(filepath.Join(st.Dir, "logs", "slurm-"+job+".out"))
	if !strings.Contains(string(slurmLog), `visit=v001 reason="already done (state file)"`) {
		t.Errorf("the job's log does not say v001 was skipped:\n%s", slurmLog)
	}
	// Its input closed, the run has nothing left: resume submits nothing.
	if out := e.must(0, time.Minute, "resume", "listen-1"); !strings.Contains(out, "nothing left to run") {
		t.Errorf("resume of a finished listening run:\n%s", out)
	}
}

// TestBatchSilentPipeline stops (SIGSTOP) the Pipeline of a running job:
// status flags it silent while Slurm says running, and not once it goes
// on (SIGCONT).
func TestBatchSilentPipeline(t *testing.T) {
	e := newBatchEnv(t)
	policy, vf := e.slowPipeline("silent", 40, "0.5")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "silent-1", "--heartbeat", "1s")
	st := e.waitDone("silent-1", 1, 2*time.Minute)
	pid := rank0PID(t, st.Dir)
	syscall.Kill(pid, syscall.SIGSTOP)
	defer syscall.Kill(pid, syscall.SIGCONT)
	deadline := time.Now().Add(time.Minute)
	for {
		out := e.must(0, time.Minute, "status", "silent-1")
		if strings.Contains(out, "SILENT") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never flagged the stopped Pipeline:\n%s", out)
		}
		time.Sleep(time.Second)
	}
	syscall.Kill(pid, syscall.SIGCONT)
	deadline = time.Now().Add(time.Minute)
	for {
		out := e.must(0, time.Minute, "status", "silent-1")
		if !strings.Contains(out, "SILENT") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status still flags the Pipeline once it went on:\n%s", out)
		}
		time.Sleep(time.Second)
	}
	// It goes on to the end.
	e.must(0, 3*time.Minute, "wait", "silent-1", "--interval", "1s")
}

// rank0PID finds the process of rank 0 of the run's step (not srun).
func rank0PID(t *testing.T, runDir string) int {
	t.Helper()
	out, _ := exec.Command("pgrep", "-f", "run --run-dir "+runDir+" ").Output()
	for _, f := range strings.Fields(string(out)) {
		pid, _ := strconv.Atoi(f)
		// srun itself has the same command line, and the batch shell's
		// SLURM_PROCID=0: only the task is the Pipeline.
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "srun" {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err == nil && strings.Contains("\x00"+string(env)+"\x00", "\x00SLURM_PROCID=0\x00") {
			return pid
		}
	}
	t.Fatalf("no rank 0 process of %s among %q", runDir, out)
	return 0
}

// TestBatchExternalBroker runs a listening run on a site whose broker is
// an external nats-server (Debian's, started here with JetStream and a
// token): an event stored before the job starts, and finish, reach it.
func TestBatchExternalBroker(t *testing.T) {
	e := newBatchEnv(t)
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		testenv.SkipOrFail(t, "no nats-server binary (scripts/cluster.sh install installs it)")
	}
	dir := filepath.Dir(e.site)
	tokenFile := filepath.Join(dir, "nats-token")
	writeFile(t, tokenFile, "ext-token-"+strconv.Itoa(os.Getpid())+"\n")
	os.Chmod(tokenFile, 0o600)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv := exec.Command(bin, "-js", "-sd", filepath.Join(dir, "nats-store"), "-a", "127.0.0.1", "-p", strconv.Itoa(port),
		"--auth", "ext-token-"+strconv.Itoa(os.Getpid()))
	srv.Stdout, srv.Stderr = os.Stderr, os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nats-server did not listen within 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	data, _ := os.ReadFile(e.site)
	writeFile(t, e.site, string(data)+fmt.Sprintf("broker: {kind: external, urls: [%s], token_file: %s}\n", url, tokenFile))

	policy, vf := e.slowPipeline("ext", 2, "0.2")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "ext-1", "--listen", "--hold")
	job := e.jobOf("ext-1")
	release := release(t, job)
	e.must(0, time.Minute, "event", "send", "ext-1", "--topic", "visits", "visitId=v003")
	e.must(0, time.Minute, "finish", "ext-1")
	release()
	e.must(0, 2*time.Minute, "wait", "ext-1", "--interval", "1s")
	st := e.status("ext-1")
	if st.Counts["done"] != 3 || st.Jobs[0].Recorded != "COMPLETED" {
		t.Errorf("run on the external broker: %+v", st)
	}
	var full struct {
		Jobs []struct {
			Broker string `json:"broker"`
		} `json:"jobs"`
	}
	raw := e.must(0, time.Minute, "status", "--json", "ext-1")
	var all []json.RawMessage
	json.Unmarshal([]byte(raw), &all)
	json.Unmarshal(all[0], &full)
	if len(full.Jobs) != 1 || full.Jobs[0].Broker != url {
		t.Errorf("the job recorded broker %+v, want %s", full.Jobs, url)
	}
	var got []string
	for _, ev := range e.events("ext-1") {
		got = append(got, ev.Dir+" "+ev.Topic+" "+ev.Kind)
	}
	if want := "out dpsbatch.pipeline |in visits data|in visits no-more-data|out dpsbatch.pipeline "; strings.Join(got, "|") != want {
		t.Errorf("events recorded: %q, want %q", strings.Join(got, "|"), want)
	}
	// The token is in no file of the run.
	tok, _ := os.ReadFile(tokenFile)
	filepath.Walk(st.Dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), strings.TrimSpace(string(tok))) {
				t.Errorf("%s holds the broker's token", p)
			}
		}
		return nil
	})
}
