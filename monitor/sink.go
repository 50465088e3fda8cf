package monitor

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
)

// LogSink writes each alert to a logger: a raised one as a warning, a
// cleared one as information.
type LogSink struct{ Log *slog.Logger }

// Send logs a.
func (s LogSink) Send(ctx context.Context, a Alert) error {
	level := slog.LevelWarn
	if a.State == Cleared {
		level = slog.LevelInfo
	}
	args := []any{"run", a.Run, "rule", a.Rule, "state", a.State}
	if a.Pipeline != "" {
		args = append(args, "pipeline", a.Pipeline)
	}
	if a.Job != "" {
		args = append(args, "job", a.Job)
	}
	s.Log.Log(ctx, level, "monitor: "+a.Evidence, args...)
	return nil
}

// Publish sends one event to the broker of the run in dir.
type Publish func(ctx context.Context, dir string, e events.Event) error

// TopicSink publishes each alert on Topic of its run's broker: a data
// event whose properties are the alert's JSON keys.
type TopicSink struct {
	Topic   string
	Publish Publish
}

// Send publishes a.
func (s TopicSink) Send(ctx context.Context, a Alert) error {
	props, err := a.properties()
	if err != nil {
		return err
	}
	if err := s.Publish(ctx, a.RunDir, events.Event{Topic: s.Topic, Properties: props}); err != nil {
		return fmt.Errorf("monitor: publishing on %s: %w", s.Topic, err)
	}
	return nil
}

// properties is the alert as a JSON object's keys and values.
func (a Alert) properties() (map[string]any, error) {
	data, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	var props map[string]any
	return props, json.Unmarshal(data, &props)
}

// CommandSink runs Argv for each alert, directly (never through a
// shell), with the alert as one JSON object on stdin and in the
// environment as DPSBATCH_ALERT_RUN, _RUN_DIR, _RULE, _PIPELINE, _JOB,
// _STATE, _EVIDENCE and _AT, beside this process's own variables. A run
// that exceeds Timeout (0: Default's) is killed; a failed run is an error naming the
// command's stderr.
type CommandSink struct {
	Argv    []string
	Timeout time.Duration
}

// Send runs the command for a.
func (s CommandSink) Send(ctx context.Context, a Alert) error {
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(s.Timeout, Default().CommandTimeout))
	defer cancel()
	cmd := exec.CommandContext(ctx, s.Argv[0], s.Argv[1:]...)
	cmd.Stdin = bytes.NewReader(append(data, '\n'))
	cmd.Env = append(os.Environ(), a.environ()...)
	cmd.WaitDelay = time.Second // a child left holding stderr is not waited for
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("monitor: alert command %s: %w: %s", s.Argv[0], err, strings.TrimSpace(errOut.String()))
	}
	return nil
}

// environ is the alert as DPSBATCH_ALERT_* variables.
func (a Alert) environ() []string {
	return []string{
		"DPSBATCH_ALERT_RUN=" + a.Run,
		"DPSBATCH_ALERT_RUN_DIR=" + a.RunDir,
		"DPSBATCH_ALERT_RULE=" + a.Rule,
		"DPSBATCH_ALERT_PIPELINE=" + a.Pipeline,
		"DPSBATCH_ALERT_JOB=" + a.Job,
		"DPSBATCH_ALERT_STATE=" + a.State,
		"DPSBATCH_ALERT_EVIDENCE=" + a.Evidence,
		"DPSBATCH_ALERT_AT=" + a.At.Format(time.RFC3339),
	}
}
