package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
)

type collect struct{ alerts []Alert }

func (c *collect) Send(_ context.Context, a Alert) error {
	c.alerts = append(c.alerts, a)
	return nil
}

func (c *collect) states() string {
	var s []string
	for _, a := range c.alerts {
		s = append(s, a.Rule+" "+a.Job+" "+a.State)
	}
	return strings.Join(s, "; ")
}

// An alert is raised once per condition, however many looks see it, and
// cleared when it ends; it is raised again when it returns.
func TestWatcherRaisesOnce(t *testing.T) {
	got := &collect{}
	w := &watcher{o: Options{Rules: Default(), Sinks: []Sink{got}}, active: map[string]map[string]Condition{}}
	quiet, silent := running(3), running(3)
	silent.Status.Jobs[0].Heartbeat = t0.Add(-time.Hour)
	for _, s := range []Snapshot{quiet, silent, silent, silent, quiet, quiet, silent} {
		w.look(context.Background(), s)
	}
	want := "heartbeat 7 raised; heartbeat 7 cleared; heartbeat 7 raised"
	if got.states() != want {
		t.Errorf("alerts: %s\nwant %s", got.states(), want)
	}
	a := got.alerts[1]
	if a.Run != "r1" || a.RunDir != "/runs/r1" || !strings.HasPrefix(a.Evidence, "no longer holds; was: no heartbeat for 1h0m0s") {
		t.Errorf("cleared: %+v", a)
	}
	if !w.fired || !errors.Is(w.result(), ErrAlerted) {
		t.Errorf("fired %v, result %v; want ErrAlerted", w.fired, w.result())
	}
}

// A second job losing its heartbeat is a second alert; the failure rate
// is one condition whichever job ran the latest failure.
func TestWatcherConditionKeys(t *testing.T) {
	got := &collect{}
	w := &watcher{o: Options{Rules: Default(), Sinks: []Sink{got}}, active: map[string]map[string]Condition{}}
	c1 := Condition{Rule: RuleHeartbeat, Job: "7", perJob: true}
	c2 := Condition{Rule: RuleHeartbeat, Job: "8", perJob: true}
	f1 := Condition{Rule: RuleFailureRate, Job: "7"}
	f2 := Condition{Rule: RuleFailureRate, Job: "8"}
	w.changes(running(1), []Condition{c1, f1})
	if a := w.changes(running(1), []Condition{c1, c2, f2}); len(a) != 1 || a[0].Job != "8" || a[0].Rule != RuleHeartbeat {
		t.Errorf("alerts %+v; want job 8's heartbeat raised only", a)
	}
}

func TestTopicSink(t *testing.T) {
	var dir string
	var sent events.Event
	s := TopicSink{Topic: "ops.alerts", Publish: func(_ context.Context, d string, e events.Event) error {
		dir, sent = d, e
		return nil
	}}
	a := Alert{Run: "r1", RunDir: "/runs/r1", Rule: RuleEndedEarly, Job: "7", State: Raised, Evidence: "job 7 ended", At: t0}
	if err := s.Send(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if dir != "/runs/r1" || sent.Topic != "ops.alerts" || sent.Properties["rule"] != RuleEndedEarly ||
		sent.Properties["job"] != "7" || sent.Properties["evidence"] != "job 7 ended" || sent.Properties["state"] != Raised {
		t.Errorf("published to %s: %+v", dir, sent)
	}
}

// The command gets the alert on stdin and in its environment, its
// arguments as the rules file gives them: no shell reads them.
func TestCommandSink(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "got")
	script := filepath.Join(dir, "notify")
	if err := os.WriteFile(script, []byte(`#!/bin/sh
{ printf '%s\n' "$1" "$DPSBATCH_ALERT_RULE" "$DPSBATCH_ALERT_JOB" "$DPSBATCH_ALERT_EVIDENCE"; cat; } > "$2"
`), 0o755); err != nil {
		t.Fatal(err)
	}
	evidence := `visit $(touch ` + filepath.Join(dir, "pwned") + `) failed; "quoted"`
	a := Alert{Run: "r1", Rule: RuleFailureRate, Job: "7", State: Raised, Evidence: evidence, At: t0}
	s := CommandSink{Argv: []string{script, "$HOME; echo", out}, Timeout: 10 * time.Second}
	if err := s.Send(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(data), "\n", 5)
	if len(lines) < 5 || lines[0] != "$HOME; echo" || lines[1] != RuleFailureRate || lines[2] != "7" || lines[3] != evidence {
		t.Fatalf("the command got:\n%s", data)
	}
	var in Alert
	if err := json.Unmarshal([]byte(lines[4]), &in); err != nil || in != a {
		t.Errorf("stdin: %q (%v); want the alert as JSON", lines[4], err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Error("the evidence was run by a shell")
	}
	// A command that hangs is killed at its timeout.
	s.Argv, s.Timeout = []string{"sh", "-c", "sleep 30 & sleep 30"}, 200*time.Millisecond
	start := time.Now()
	if err := s.Send(context.Background(), a); err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("hanging command: %v after %s; want an error at its timeout", err, time.Since(start))
	}
	// A failing command is an error with its stderr.
	s.Argv, s.Timeout = []string{"sh", "-c", "echo no route to chat >&2; exit 1"}, 10*time.Second
	if err := s.Send(context.Background(), a); err == nil || !strings.Contains(err.Error(), "no route to chat") {
		t.Errorf("failing command: %v; want its stderr", err)
	}
}

// A sink that fails is logged; the others still get the alert.
func TestSinkFailureLogged(t *testing.T) {
	var log bytes.Buffer
	got := &collect{}
	fail := TopicSink{Topic: "t", Publish: func(context.Context, string, events.Event) error { return errors.New("broker down") }}
	w := &watcher{o: Options{Rules: Default(), Sinks: []Sink{fail, got}, Log: slog.New(slog.NewTextHandler(&log, nil))},
		active: map[string]map[string]Condition{}}
	s := running(3)
	s.Status.Jobs[0].Heartbeat = t0.Add(-time.Hour)
	w.look(context.Background(), s)
	if len(got.alerts) != 1 || !strings.Contains(log.String(), "broker down") {
		t.Errorf("alerts %+v, log %s", got.alerts, log.String())
	}
}
