package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/jobs"
	"github.com/dpsbatch/dpsbatch/monitor"
	"github.com/dpsbatch/dpsbatch/rundir"
)

// Each rule of `dpsbatch monitor` fires on the local cluster when its
// fault is caused, once, and the monitor's exit status says so.

// onlyRule is a rules file that looks every 300 ms with every rule off
// but the one given, set as settings says, and the alert command given.
func onlyRule(t *testing.T, dir, rule, settings string, command ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("every: 300ms\n")
	for _, r := range []string{monitor.RuleHeartbeat, monitor.RuleSliceLost, monitor.RuleFailureRate, monitor.RuleEndedEarly, monitor.RuleNoProgress} {
		if r == rule {
			fmt.Fprintf(&b, "%s: {%s}\n", r, settings)
		} else {
			fmt.Fprintf(&b, "%s: {off: true}\n", r)
		}
	}
	if len(command) > 0 {
		q, _ := json.Marshal(command)
		fmt.Fprintf(&b, "alert: {command: %s, command_timeout: 10s}\n", q)
	}
	path := filepath.Join(dir, rule+".yaml")
	writeFile(t, path, b.String())
	return path
}

// monitorRun is a `dpsbatch monitor --json` running in the background.
type monitorRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	alerts chan monitor.Alert
	seen   []monitor.Alert
	stderr bytes.Buffer
	done   chan struct{}
}

func (e *batchEnv) startMonitor(args ...string) *monitorRun {
	e.t.Helper()
	m := &monitorRun{t: e.t, alerts: make(chan monitor.Alert, 100), done: make(chan struct{})}
	m.cmd = exec.Command(e.bin, append([]string{"monitor", "--json"}, args...)...)
	m.cmd.Env = cleanEnv("DPSBATCH_SITE=" + e.site)
	m.cmd.Stderr = &m.stderr
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := m.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		defer close(m.alerts)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var a monitor.Alert
			if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
				e.t.Errorf("monitor printed %q: %v", sc.Text(), err)
				continue
			}
			m.alerts <- a
		}
	}()
	e.t.Cleanup(func() {
		m.cmd.Process.Kill()
		m.cmd.Wait()
	})
	return m
}

// await waits for an alert of rule in state, and returns it.
func (m *monitorRun) await(rule, st string, timeout time.Duration) monitor.Alert {
	m.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case a, ok := <-m.alerts:
			if !ok {
				m.t.Fatalf("the monitor ended before a %s alert was %s; alerts %+v\nstderr:\n%s", rule, st, m.seen, &m.stderr)
			}
			m.seen = append(m.seen, a)
			if a.Rule == rule && a.State == st {
				return a
			}
		case <-deadline:
			m.t.Fatalf("no %s alert %s within %s; alerts %+v\nstderr:\n%s", rule, st, timeout, m.seen, &m.stderr)
		}
	}
}

// exit waits for the monitor to end by itself, and returns its exit
// status and every alert it printed.
func (m *monitorRun) exit(timeout time.Duration) (int, []monitor.Alert) {
	m.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case a, ok := <-m.alerts:
			if ok {
				m.seen = append(m.seen, a)
				continue
			}
			m.cmd.Wait()
			return m.cmd.ProcessState.ExitCode(), m.seen
		case <-deadline:
			m.t.Fatalf("the monitor did not end within %s; alerts %+v\nstderr:\n%s", timeout, m.seen, &m.stderr)
		}
	}
}

// count is how many of alerts are of rule in state.
func count(alerts []monitor.Alert, rule, st string) int {
	n := 0
	for _, a := range alerts {
		if a.Rule == rule && a.State == st {
			n++
		}
	}
	return n
}

// SIGSTOP of rank 0: the heartbeat alert, once, with the evidence, to
// the command and the run's broker too; cleared after SIGCONT.
func TestMonitorHeartbeatStops(t *testing.T) {
	e := newBatchEnv(t)
	policy, vf := e.slowPipeline("hbstop", 8, "3")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "hbstop", "--heartbeat", "1s")
	e.cancelAtEnd("hbstop")
	got := filepath.Join(e.dir, "alerts.jsonl")
	rules := onlyRule(t, e.dir, monitor.RuleHeartbeat, "missed: 3", "sh", "-c", `cat >> "$1"; echo "$DPSBATCH_ALERT_RULE $DPSBATCH_ALERT_STATE" >> "$1.env"`, "sh", got)
	st := e.inFlight("hbstop")
	m := e.startMonitor("--rules", rules, "hbstop")
	rank0, _ := rankPIDs(t, st.Dir)
	if err := syscall.Kill(rank0, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			syscall.Kill(rank0, syscall.SIGCONT)
		}
	}()
	a := m.await(monitor.RuleHeartbeat, monitor.Raised, time.Minute)
	if a.Run != "hbstop" || a.Job != st.Jobs[0].ID || !strings.HasPrefix(a.Evidence, "no heartbeat for ") || !strings.Contains(a.Evidence, "interval 1s") {
		t.Errorf("alert %+v; want run hbstop, job %s, the heartbeat's evidence", a, st.Jobs[0].ID)
	}
	time.Sleep(2 * time.Second) // more looks: no second alert
	syscall.Kill(rank0, syscall.SIGCONT)
	stopped = false
	m.await(monitor.RuleHeartbeat, monitor.Cleared, time.Minute)

	// The alert reached the run's broker, on dpsbatch.alert.
	e.wantPublished(st, a)
	e.must(0, time.Minute, "cancel", "hbstop")
	code, alerts := m.exit(2 * time.Minute)
	if code != 4 || count(alerts, monitor.RuleHeartbeat, monitor.Raised) != 1 {
		t.Errorf("monitor: exit %d, alerts %+v; want 4, the heartbeat raised once", code, alerts)
	}
	data, err := os.ReadFile(got)
	env, _ := os.ReadFile(got + ".env")
	if err != nil || !strings.Contains(string(data), `"rule":"heartbeat"`) || string(env) != "heartbeat raised\nheartbeat cleared\n" {
		t.Errorf("the command got on stdin:\n%s\nin its environment:\n%s(%v)", data, env, err)
	}
}

// wantPublished subscribes to the alert topic on the running job's broker
// and wants the alert a there.
func (e *batchEnv) wantPublished(st statusJSON, a monitor.Alert) {
	e.t.Helper()
	var all []jobs.RunStatus
	if err := json.Unmarshal([]byte(e.must(0, time.Minute, "status", "--json", st.Run)), &all); err != nil || len(all) != 1 || all[0].Jobs[0].Broker == "" {
		e.t.Fatalf("status: %v %+v; want the job's broker", err, all)
	}
	ctx, cancel := context.WithTimeout(e.t.Context(), 30*time.Second)
	defer cancel()
	n, err := events.DialNATS(ctx, events.NATSConfig{URLs: []string{all[0].Jobs[0].Broker},
		TokenFile: rundir.Layout{Dir: st.Dir}.BrokerToken(), Name: "monitor test", Subscriber: "monitor-test"})
	if err != nil {
		e.t.Fatal(err)
	}
	defer n.Close()
	sub, err := n.Subscribe(ctx, monitor.TopicAlert, st.Run)
	if err != nil {
		e.t.Fatal(err)
	}
	defer sub.Close()
	ev, err := sub.Next(ctx)
	if err != nil {
		e.t.Fatalf("no alert on %s: %v", monitor.TopicAlert, err)
	}
	if ev.Properties["rule"] != a.Rule || ev.Properties["job"] != a.Job || ev.Properties["state"] != monitor.Raised {
		e.t.Errorf("on %s: %+v; want %+v", monitor.TopicAlert, ev.Properties, a)
	}
}

// SIGKILL of a slice's process: slice_lost names the job and the rank.
func TestMonitorSliceLost(t *testing.T) {
	e := newBatchEnv(t)
	policy, vf := e.slowPipeline("slost", 6, "3")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "slost", "--heartbeat", "1s")
	e.cancelAtEnd("slost")
	rules := onlyRule(t, e.dir, monitor.RuleSliceLost, "")
	st := e.inFlight("slost")
	m := e.startMonitor("--rules", rules, "slost")
	_, slices := rankPIDs(t, st.Dir)
	if len(slices) == 0 {
		t.Fatal("found no slice process")
	}
	if err := syscall.Kill(slices[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a := m.await(monitor.RuleSliceLost, monitor.Raised, 2*time.Minute)
	t.Logf("alert: %+v", a)
	if a.Job != st.Jobs[0].ID || !strings.Contains(a.Evidence, "lost") {
		t.Errorf("alert %+v; want job %s, a lost rank in the evidence", a, st.Jobs[0].ID)
	}
	if code, alerts := m.exit(2 * time.Minute); code != 4 || count(alerts, monitor.RuleSliceLost, monitor.Raised) != 1 {
		t.Errorf("monitor: exit %d, alerts %+v; want 4, slice_lost raised once", code, alerts)
	}
}

// A pipeline where most visits fail: failure_rate over the last 3.
func TestMonitorFailureRate(t *testing.T) {
	e := newBatchEnv(t)
	policy, vf := e.twoSlicePipeline("frate", `  - name: work
    type: exec
    settings:
      command: [sh, -c, 'sleep 0.3; case "$1" in v001) ;; *) echo "no sky in $1" >&2; exit 1;; esac', sh, "{visit}"]
`, "v001", "v002", "v003", "v004", "v005")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "frate")
	e.cancelAtEnd("frate")
	rules := onlyRule(t, e.dir, monitor.RuleFailureRate, "visits: 3, above: 0.5")
	m := e.startMonitor("--rules", rules, "frate")
	a := m.await(monitor.RuleFailureRate, monitor.Raised, 3*time.Minute)
	// v001 done, v002 and v003 failed: more than half of the last 3 (or
	// 3 of 3, on a machine so slow that the monitor's first look came
	// later).
	if !regexp.MustCompile(`^[23] of the last 3 visits failed \(alert above 50%\); latest: visit (v00[3-5]): (?s:.*)no sky in v00[3-5]`).MatchString(a.Evidence) {
		t.Errorf("alert %+v", a)
	}
	if code, alerts := m.exit(2 * time.Minute); code != 4 || count(alerts, monitor.RuleFailureRate, monitor.Raised) != 1 {
		t.Errorf("monitor: exit %d, alerts %+v; want 4, failure_rate raised once", code, alerts)
	}
}

// scancel of the job with visits left: ended_early. Before it, a look at
// the healthy run raises nothing (exit 0).
func TestMonitorEndedEarly(t *testing.T) {
	e := newBatchEnv(t)
	policy, vf := e.slowPipeline("early", 6, "3")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "early")
	e.cancelAtEnd("early")
	st := e.inFlight("early")
	if out := e.must(0, time.Minute, "monitor", "--once", "--json", "early"); out != "" {
		t.Errorf("monitor --once of a healthy run printed:\n%s", out)
	}
	rules := onlyRule(t, e.dir, monitor.RuleEndedEarly, "")
	m := e.startMonitor("--rules", rules, "early")
	if out, err := exec.Command("scancel", st.Jobs[0].ID).CombinedOutput(); err != nil {
		t.Fatalf("scancel: %v %s", err, out)
	}
	code, alerts := m.exit(2 * time.Minute)
	if code != 4 || count(alerts, monitor.RuleEndedEarly, monitor.Raised) != 1 {
		t.Fatalf("monitor: exit %d, alerts %+v; want 4, ended_early raised once", code, alerts)
	}
	a := alerts[0]
	if a.Job != st.Jobs[0].ID || !strings.Contains(a.Evidence, "visits left") {
		t.Errorf("alert %+v; want job %s and the visits left", a, st.Jobs[0].ID)
	}
	// Looked at again, the ended run still holds it: exit 4 at once, the
	// alert in the log (and stored on the run's broker, without a word).
	out, errOut, code := e.dps(time.Minute, "monitor", "--once", "--rules", rules, "early")
	if code != 4 || out != "" || !strings.Contains(errOut, "level=WARN msg=\"monitor: job "+a.Job+" ended") ||
		!strings.Contains(errOut, "rule=ended_early state=raised") || strings.Contains(errOut, "not delivered") {
		t.Errorf("monitor --once of the ended run: exit %d\nstdout:\n%s\nstderr:\n%s\nwant 4, the alert logged", code, out, errOut)
	}
}

// A stage that sleeps longer than the window: no_progress, cleared when
// the visit ends.
func TestMonitorNoProgress(t *testing.T) {
	e := newBatchEnv(t)
	policy, vf := e.slowPipeline("stuck", 4, "8")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "stuck")
	e.cancelAtEnd("stuck")
	rules := onlyRule(t, e.dir, monitor.RuleNoProgress, "window: 3s")
	m := e.startMonitor("--rules", rules, "stuck")
	a := m.await(monitor.RuleNoProgress, monitor.Raised, 3*time.Minute)
	if !strings.HasPrefix(a.Evidence, "no visit ended for ") || !strings.Contains(a.Evidence, "window 3s") {
		t.Errorf("alert %+v", a)
	}
	m.await(monitor.RuleNoProgress, monitor.Cleared, time.Minute)
	e.must(0, time.Minute, "cancel", "stuck")
	if code, _ := m.exit(2 * time.Minute); code != 4 {
		t.Errorf("monitor: exit %d, want 4", code)
	}
}

// A bad rules file: exit 2, naming the file, line and key.
func TestMonitorBadRules(t *testing.T) {
	bin := buildBinary(t, "")
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	writeFile(t, rules, "every: 1s\nheartbeat: {mised: 2}\n")
	_, errOut, code := runCmd(t, time.Minute, cleanEnv(), bin, "monitor", "--rules", rules, dir)
	if code != 2 || !strings.Contains(errOut, rules+`:2: heartbeat.mised: unknown key (did you mean "missed"?)`) {
		t.Errorf("exit %d\n%s\nwant 2, the file, line and key", code, errOut)
	}
}
