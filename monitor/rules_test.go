package monitor

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

func writeRules(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadOverDefaults(t *testing.T) {
	path := writeRules(t, `every: 2s
heartbeat: {missed: 5}
slice_lost: {off: true}
failure_rate: {visits: 4, above: 0.25}
no_progress: {window: 90s}
alert:
  topic: ops.alerts
  command: [notify, --channel, "#ops"]
  command_timeout: 5s
`)
	r, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.File, want.Every = path, 2*time.Second
	want.Heartbeat.Missed = 5
	want.SliceLost.Off = true
	want.FailureRate = FailureRateRule{Visits: 4, Above: 0.25}
	want.NoProgress.Window = 90 * time.Second
	want.Topic, want.Command, want.CommandTimeout = "ops.alerts", []string{"notify", "--channel", "#ops"}, 5*time.Second
	if !reflect.DeepEqual(r, want) {
		t.Errorf("Load:\n%+v\nwant\n%+v", r, want)
	}
}

// Every problem is reported, each with the file, line and key.
func TestLoadErrors(t *testing.T) {
	path := writeRules(t, `every: 0s
heartbeat: {missed: 0}
failure_rate: {visits: 4, above: 1.5}
no_progres: {window: 1m}
alert: {command: [], topic: [a]}
ended_early: {off: maybe}
`)
	_, err := Load(path)
	if !errors.Is(err, conf.ErrInvalid) {
		t.Fatalf("Load: %v; want bad input", err)
	}
	for _, want := range []string{
		path + ":1: every: must be at least 100ms (each look asks Slurm), got 0s",
		path + ":2: heartbeat.missed: must be 1 or more",
		path + ":3: failure_rate.above: expected a fraction",
		path + `:4: no_progres: unknown key (did you mean "no_progress"?)`,
		path + ":5: alert.command: expected a program",
		path + ":5: alert.topic: expected a string",
		path + `:6: ended_early.off: expected true or false, got "maybe"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors:\n%v\nwant a line with %q", err, want)
		}
	}
	if n := len(err.(conf.Errors)); n != 7 {
		t.Errorf("%d problems reported, want 7:\n%v", n, err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.yaml"))
	if !errors.Is(err, conf.ErrInvalid) || !strings.Contains(err.Error(), "none.yaml") {
		t.Errorf("Load of a missing file: %v; want bad input naming it", err)
	}
}
