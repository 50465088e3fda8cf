package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/jobs"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

// ErrAlerted is what Watch returns when a rule fired while it watched
// (harness.ExitCode gives it its own exit status).
var ErrAlerted = harness.ErrAlerted

// The states of an alert.
const (
	Raised  = "raised"  // the condition began
	Cleared = "cleared" // the condition ended
)

// Alert is a condition that began or ended: the run, the rule, the job,
// the evidence, when it was seen.
type Alert struct {
	Run      string    `json:"run"`
	RunDir   string    `json:"runDir"`
	Rule     string    `json:"rule"`
	Pipeline string    `json:"pipeline,omitempty"` // a production's pipeline it is about
	Job      string    `json:"job,omitempty"`
	State    string    `json:"state"` // raised or cleared
	Evidence string    `json:"evidence"`
	At       time.Time `json:"at"`
}

// Sink is somewhere alerts go: the log, a run's broker, a command.
type Sink interface {
	Send(ctx context.Context, a Alert) error
}

// Options says what Watch watches and where alerts go.
type Options struct {
	Rules   Rules             // a zero Every is Default's
	Dirs    []string          // the run directories
	Backend scheduler.Backend // Slurm, asked once per look for all runs
	Once    bool              // look once, then return
	// Sinks each get every alert, in order; Log hears what a sink could
	// not do (it never stops the watch).
	Sinks []Sink
	Log   *slog.Logger
	Now   func() time.Time // default time.Now
}

// Watch looks at the runs every o.Rules.Every and sends an alert to
// every sink when a condition begins (raised) and when it ends
// (cleared): once per condition, never at every look. It returns after
// one look with o.Once, else once no run has a live job (after the look
// that saw so), or when ctx ends; with ErrAlerted when any condition was
// raised.
func Watch(ctx context.Context, o Options) error {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	if o.Rules.Every <= 0 {
		o.Rules.Every = Default().Every
	}
	w := &watcher{o: o, active: map[string]map[string]Condition{}}
	for {
		snaps, err := Read(ctx, o.Backend, o.Dirs, now())
		if err != nil {
			return err
		}
		live := false
		for _, s := range snaps {
			w.look(ctx, s)
			live = live || s.Status.Live
		}
		if o.Once || !live {
			return w.result()
		}
		select {
		case <-ctx.Done():
			if w.fired {
				return fmt.Errorf("%w (%w)", ErrAlerted, ctx.Err())
			}
			return ctx.Err()
		case <-time.After(o.Rules.Every):
		}
	}
}

type watcher struct {
	o      Options
	active map[string]map[string]Condition // run dir -> key -> condition raised
	fired  bool
}

func (w *watcher) result() error {
	if w.fired {
		return ErrAlerted
	}
	return nil
}

// look evaluates one snapshot and sends what changed since the last.
func (w *watcher) look(ctx context.Context, s Snapshot) {
	for _, a := range w.changes(s, Evaluate(w.o.Rules, s)) {
		if a.State == Raised {
			w.fired = true
		}
		for _, sink := range w.o.Sinks {
			if err := sink.Send(ctx, a); err != nil && w.o.Log != nil {
				w.o.Log.Warn("monitor: an alert was not delivered", "run", a.Run, "rule", a.Rule, "err", err)
			}
		}
	}
}

// changes returns the alerts for the conditions of s that are new
// (raised) and for those raised before that no longer hold (cleared),
// and remembers the ones that hold.
func (w *watcher) changes(s Snapshot, conds []Condition) []Alert {
	dir := s.Status.Dir
	before, now := w.active[dir], map[string]Condition{}
	alert := func(c Condition, st string) Alert {
		return Alert{Run: s.Status.Run, RunDir: dir, Rule: c.Rule, Pipeline: c.Pipeline, Job: c.Job, State: st, Evidence: c.Evidence, At: s.At}
	}
	var out []Alert
	for _, c := range conds {
		k := c.key()
		if _, dup := now[k]; dup {
			continue
		}
		now[k] = c
		if _, was := before[k]; !was {
			out = append(out, alert(c, Raised))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if _, still := now[k]; !still {
			c := before[k]
			c.Evidence = "no longer holds; was: " + c.Evidence
			out = append(out, alert(c, Cleared))
		}
	}
	w.active[dir] = now
	return out
}

// Read takes a snapshot of each run in dirs at time at: their statuses
// (one question to Slurm for all) and their visits.
func Read(ctx context.Context, b scheduler.Backend, dirs []string, at time.Time) ([]Snapshot, error) {
	all, err := jobs.Status(ctx, b, dirs)
	if err != nil {
		return nil, err
	}
	out := make([]Snapshot, 0, len(all))
	for _, rs := range all {
		s := Snapshot{At: at, Status: rs, Visits: map[string][]state.Visit{}}
		if len(rs.Pipelines) == 0 {
			if s.Visits[""], err = readVisits(rs.Dir); err != nil {
				return nil, err
			}
		}
		for _, ps := range rs.Pipelines {
			if s.Visits[ps.Pipeline], err = readVisits(ps.Dir); err != nil {
				return nil, err
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// readVisits reads every visit the state file in dir records.
func readVisits(dir string) ([]state.Visit, error) {
	st, err := state.OpenReadOnly(rundir.Layout{Dir: dir}.State())
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return st.Visits("", 0)
}
