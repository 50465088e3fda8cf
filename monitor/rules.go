package monitor

import (
	"errors"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// The rules, by the name an alert and the rules file give them.
const (
	RuleHeartbeat   = "heartbeat"    // a running job's Pipeline stopped heartbeating
	RuleSliceLost   = "slice_lost"   // a job's Pipeline lost a Slice
	RuleFailureRate = "failure_rate" // too many of the last visits failed
	RuleEndedEarly  = "ended_early"  // the run's last job ended with visits left
	RuleNoProgress  = "no_progress"  // a running job ended no visit for too long
)

// TopicAlert is the topic alerts are published on by default.
const TopicAlert = "dpsbatch.alert"

// Rules is a rules file: how often to look, each rule's settings, and
// where alerts go besides the log. Default() is what `dpsbatch monitor`
// uses without a file; a file changes only what it names.
type Rules struct {
	File  string        // where they were read from; "" for the defaults
	Every time.Duration // how often the runs are looked at

	Heartbeat   HeartbeatRule
	SliceLost   Switch
	FailureRate FailureRateRule
	EndedEarly  Switch
	NoProgress  NoProgressRule

	// Topic is the event topic alerts are published on, on each run's
	// broker ("" publishes none).
	Topic string
	// Command is the program (and its arguments) run for each alert,
	// with the alert as JSON on stdin and in DPSBATCH_ALERT_*
	// variables; nil runs none. It is run directly, never through a
	// shell. CommandTimeout bounds each run of it.
	Command        []string
	CommandTimeout time.Duration
}

// Switch turns a rule without settings on or off.
type Switch struct{ Off bool }

// HeartbeatRule fires when a running job's Pipeline has not heartbeaten
// for Missed of its run's heartbeat intervals.
type HeartbeatRule struct {
	Off    bool
	Missed int
}

// FailureRateRule fires when more than Above (a fraction) of the last
// Visits ended visits failed.
type FailureRateRule struct {
	Off    bool
	Visits int
	Above  float64
}

// NoProgressRule fires when a running job with visits to do has ended
// no visit for Window.
type NoProgressRule struct {
	Off    bool
	Window time.Duration
}

// Default is the rules without a rules file: every rule on, looking every
// 10 s; alerts to the log and to TopicAlert.
func Default() Rules {
	return Rules{
		Every:          10 * time.Second,
		Heartbeat:      HeartbeatRule{Missed: 3},
		FailureRate:    FailureRateRule{Visits: 20, Above: 0.5},
		NoProgress:     NoProgressRule{Window: 30 * time.Minute},
		Topic:          TopicAlert,
		CommandTimeout: 30 * time.Second,
	}
}

// Load reads the rules file at path over Default(). Every problem is
// reported, each naming the file, line and key (a conf.Errors, matching
// conf.ErrInvalid); a file that cannot be read matches conf.ErrInvalid too.
func Load(path string) (Rules, error) {
	r := Default()
	r.File = path
	d, root, err := conf.ReadFile(path)
	if err != nil {
		if errors.Is(err, conf.ErrInvalid) {
			return r, err
		}
		return r, fmt.Errorf("%w: monitor: rules: %v", conf.ErrInvalid, err)
	}
	d.Map(root, "", map[string]conf.Field{
		"every": {Decode: func(n *yaml.Node, p string) { r.Every = atLeast(d, n, p, minEvery) }},
		RuleHeartbeat: {Decode: func(n *yaml.Node, p string) {
			d.Map(n, p, withOff(d, &r.Heartbeat.Off, map[string]conf.Field{
				"missed": {Decode: func(n *yaml.Node, p string) { r.Heartbeat.Missed = atLeastOne(d, n, p) }},
			}))
		}},
		RuleSliceLost: {Decode: func(n *yaml.Node, p string) { d.Map(n, p, withOff(d, &r.SliceLost.Off, nil)) }},
		RuleFailureRate: {Decode: func(n *yaml.Node, p string) {
			d.Map(n, p, withOff(d, &r.FailureRate.Off, map[string]conf.Field{
				"visits": {Decode: func(n *yaml.Node, p string) { r.FailureRate.Visits = atLeastOne(d, n, p) }},
				"above":  {Decode: func(n *yaml.Node, p string) { r.FailureRate.Above = fraction(d, n, p) }},
			}))
		}},
		RuleEndedEarly: {Decode: func(n *yaml.Node, p string) { d.Map(n, p, withOff(d, &r.EndedEarly.Off, nil)) }},
		RuleNoProgress: {Decode: func(n *yaml.Node, p string) {
			d.Map(n, p, withOff(d, &r.NoProgress.Off, map[string]conf.Field{
				"window": {Decode: func(n *yaml.Node, p string) { r.NoProgress.Window = positive(d, n, p) }},
			}))
		}},
		"alert": {Decode: func(n *yaml.Node, p string) { decodeAlert(d, n, p, &r) }},
	})
	return r, d.Errs.Err()
}

// decodeAlert reads where alerts go: alert.topic, alert.command,
// alert.command_timeout.
func decodeAlert(d *conf.Decoder, n *yaml.Node, path string, r *Rules) {
	d.Map(n, path, map[string]conf.Field{
		"topic": {Decode: func(n *yaml.Node, p string) { r.Topic = d.String(n, p) }},
		"command": {Decode: func(n *yaml.Node, p string) {
			r.Command = d.Strings(n, p)
			if len(r.Command) == 0 || r.Command[0] == "" {
				d.Errorf(n, p, "expected a program and its arguments, such as [notify, --channel, ops]")
			}
		}},
		"command_timeout": {Decode: func(n *yaml.Node, p string) { r.CommandTimeout = positive(d, n, p) }},
	})
}

// withOff adds the key every rule has, off, to a rule's fields.
func withOff(d *conf.Decoder, off *bool, fields map[string]conf.Field) map[string]conf.Field {
	out := map[string]conf.Field{"off": {Decode: func(n *yaml.Node, p string) { *off = d.Bool(n, p) }}}
	for k, f := range fields {
		out[k] = f
	}
	return out
}

// minEvery is the shortest time between looks: each asks Slurm.
const minEvery = 100 * time.Millisecond

func atLeast(d *conf.Decoder, n *yaml.Node, path string, least time.Duration) time.Duration {
	v := d.Duration(n, path)
	if v < least && unreported(d, path) {
		d.Errorf(n, path, "must be at least %s (each look asks Slurm), got %s", least, v)
	}
	return v
}

// positive, atLeastOne and fraction decode a value with a lower (and
// upper) bound, reporting a value out of bounds unless decoding it
// already reported a problem.
func positive(d *conf.Decoder, n *yaml.Node, path string) time.Duration {
	v := d.Duration(n, path)
	if v == 0 && unreported(d, path) {
		d.Errorf(n, path, "must be more than 0s")
	}
	return v
}

func atLeastOne(d *conf.Decoder, n *yaml.Node, path string) int {
	v := d.Int(n, path)
	if v < 1 && unreported(d, path) {
		d.Errorf(n, path, "must be 1 or more, got %d", v)
	}
	return v
}

func fraction(d *conf.Decoder, n *yaml.Node, path string) float64 {
	v := d.Float(n, path)
	if (v < 0 || v >= 1) && unreported(d, path) {
		d.Errorf(n, path, "expected a fraction from 0 up to (not including) 1, such as 0.5, got %v", v)
	}
	return v
}

// unreported says the last problem recorded is not at path.
func unreported(d *conf.Decoder, path string) bool {
	return len(d.Errs) == 0 || d.Errs[len(d.Errs)-1].Path != path
}
