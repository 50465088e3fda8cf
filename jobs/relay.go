package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

// ErrNotRunning: no job of the run is running (or, where that is enough,
// pending) to hear the event of a relay command.
var ErrNotRunning = errors.New("not running")

// When a relayed event may be sent.
const (
	// WhenRunning: only to a running job (dpsbatch stop).
	WhenRunning = iota
	// WhenLive: to a running job, or stored for a pending one (finish,
	// event send).
	WhenLive
	// WhenAny: also stored for the run's next job when none is live
	// (--keep): it is read when the run is resumed.
	WhenAny
)

// RelayOptions is one event for a run's Pipeline: from `dpsbatch stop`,
// `finish` and `event send` on the login node.
type RelayOptions struct {
	Backend scheduler.Backend
	Dir     string       // the run directory
	Event   events.Event // Topic, Kind, Properties; Relay sets RunID
	When    int          // WhenRunning, WhenLive or WhenAny
	// AnyTopic publishes on a topic the run's pipeline does not read,
	// unchecked, for other subscribers of the run's broker (the
	// monitor's alerts).
	AnyTopic bool
	// Wait is how long to wait for the broker of a job that has just
	// started (it records its address once it listens); default 30 s.
	Wait   time.Duration
	Logger *slog.Logger // the NATS client's notices; nil discards
}

// Relayed says where an event went.
type Relayed struct {
	Run      string `json:"run"`
	Topic    string `json:"topic"`
	Kind     string `json:"kind"`
	Job      string `json:"job,omitempty"`      // the live job, if any
	JobState string `json:"jobState,omitempty"` // RUNNING, PENDING, ...
	Broker   string `json:"broker"`             // the broker's address
	// Stored: no job was running; the event waits in the run's broker
	// for the next job (a pending one, or the one resume submits).
	Stored bool `json:"stored,omitempty"`
	// Note says why nothing was sent, when nothing needed to be.
	Note string `json:"note,omitempty"`
}

// Relay publishes o.Event to the run's broker: the embedded broker of its
// running job, or (storing it for a later job) the run's broker store
// opened for a moment on this host, or the site's external broker. It
// checks the event against the run's pipeline first (unless AnyTopic): a topic the
// pipeline never reads, or a trigger for a run that does not listen for
// triggers, is refused (conf.ErrInvalid) with nothing sent.
func Relay(ctx context.Context, o RelayOptions) (*Relayed, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wait := o.Wait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	l := rundir.Layout{Dir: o.Dir}
	run, set, err := readWholeRun(l)
	if err != nil {
		return nil, err
	}
	pipes, err := stepPolicies(l, set)
	if err != nil {
		return nil, err
	}
	if err := checkRelayedAll(pipes, o.Event); err != nil && !o.AnyTopic {
		return nil, fmt.Errorf("%w: run %s: %v", conf.ErrInvalid, run.Name, err)
	}
	rs, err := Status(ctx, o.Backend, []string{o.Dir})
	if err != nil {
		return nil, err
	}
	out := &Relayed{Run: run.Name, Topic: o.Event.Topic, Kind: string(o.Event.Kind)}
	if out.Kind == "" {
		out.Kind = string(events.KindData)
	}
	var live *JobStatus
	for i := range rs[0].Jobs {
		j := &rs[0].Jobs[i]
		if j.Live && (live == nil || live.State == "PENDING" && j.State != "PENDING") {
			live = j
		}
	}
	if live != nil {
		out.Job, out.JobState = live.ID, live.State
	}
	running := live != nil && live.State != "PENDING"
	switch {
	case running:
	case live != nil && o.When >= WhenLive:
	case live == nil && o.When >= WhenAny:
	case live != nil:
		return nil, fmt.Errorf("jobs: run %s: %w: its job %s is pending (dpsbatch cancel %s removes it)", run.Name, ErrNotRunning, live.ID, run.Name)
	default:
		return nil, fmt.Errorf("jobs: run %s: %w (%s)%s", run.Name, ErrNotRunning, lastJob(rs[0]), keepHint(o.When))
	}

	if o.Event.Kind == events.KindNoMoreData && !listensOn(pipes, o.Event.Topic) {
		out.Note = "nothing sent: the run ends after its visit list anyway (it was submitted without --listen)"
		if len(pipes) > 1 {
			out.Note = fmt.Sprintf("nothing sent: no pipeline of the production listens for trigger events on %s", o.Event.Topic)
		}
		return out, nil
	}
	e := o.Event
	e.RunID = run.Name
	name := "dpsbatch relay " + run.Name
	var b events.Broker
	switch {
	case set.Broker.External():
		n, err := events.DialNATS(ctx, set.Broker.NATSConfig(name, "", log))
		if err != nil {
			return nil, fmt.Errorf("jobs: run %s: the site's %w: %v", run.Name, rundir.ErrBrokerUnreachable, err)
		}
		b, out.Broker, out.Stored = n, strings.Join(set.Broker.URLs, ","), !running
	case running:
		j, err := rundir.DialJobBroker(ctx, l, live.ID, wait, name, "", log)
		if err != nil {
			return nil, fmt.Errorf("jobs: run %s: %w", run.Name, err)
		}
		b, out.Broker = j, j.URL
	default:
		// No job serves the store: open it here for a moment. If the
		// lock is taken, the pending job has just started: use its.
		s, err := rundir.Serve(ctx, l, set.Broker, "127.0.0.1", 0, name, "", log)
		switch {
		case errors.Is(err, rundir.ErrBrokerBusy) && live != nil:
			j, err := rundir.DialJobBroker(ctx, l, live.ID, wait, name, "", log)
			if err != nil {
				return nil, fmt.Errorf("jobs: run %s: %w", run.Name, err)
			}
			b, out.Broker = j, j.URL
		case err != nil:
			return nil, fmt.Errorf("jobs: run %s: opening its broker store: %w", run.Name, err)
		default:
			b, out.Broker, out.Stored = s, l.BrokerDir(), true
		}
	}
	defer b.Close()
	if err := b.Publish(ctx, e); err != nil {
		return nil, fmt.Errorf("jobs: run %s: publishing on %q: %w", run.Name, e.Topic, err)
	}
	return out, nil
}

func keepHint(when int) string {
	if when == WhenLive {
		return "; --keep stores the event for the run's next job (dpsbatch resume)"
	}
	return ""
}

// lastJob describes how the run's last job ended, for "not running".
func lastJob(rs RunStatus) string {
	if len(rs.Jobs) == 0 {
		return "it has no job"
	}
	j := rs.Jobs[len(rs.Jobs)-1]
	s := fmt.Sprintf("its last job %s is %s", j.ID, strings.ToLower(j.State))
	if !j.Ended.IsZero() {
		s += " since " + j.Ended.Local().Format("2006-01-02 15:04:05")
	}
	return s
}

// Topics lists the topics a run's Pipeline reads: its trigger topic, the
// control topic, and the topics its stages wait for.
func Topics(p *harness.Policy) []string {
	ts := []string{p.Trigger.Topic, events.TopicControl}
	for _, s := range p.Stages {
		if s.Event != nil && !slices.Contains(ts, s.Event.Topic) {
			ts = append(ts, s.Event.Topic)
		}
	}
	return ts
}

// stepPolicy is a step of a run with its policy, as the relay commands
// see it.
type stepPolicy struct {
	runStep
	p *harness.Policy
}

// stepPolicies loads the policy copy of each step of the run in l, whose
// settings are set, as it is (not validated again).
func stepPolicies(l rundir.Layout, set rundir.Settings) ([]stepPolicy, error) {
	steps, err := runSteps(l, set)
	if err != nil {
		return nil, err
	}
	out := make([]stepPolicy, len(steps))
	for i, st := range steps {
		p, err := harness.Load(st.l.Policy(), harness.LoadOptions{NoValidate: true})
		if err != nil {
			return nil, err
		}
		out[i] = stepPolicy{runStep: st, p: p}
	}
	return out, nil
}

// listensOn reports whether some pipeline reads trigger events on topic
// from the broker.
func listensOn(pipes []stepPolicy, topic string) bool {
	for _, rp := range pipes {
		if rp.set.Listen && rp.p.Trigger.Topic == topic {
			return true
		}
	}
	return false
}

// checkRelayedAll refuses an event that no step of the run would read:
// one that every step refuses, with the reason of the first that reads
// its topic (of the only step: its reason).
func checkRelayedAll(pipes []stepPolicy, e events.Event) error {
	var all []string
	var first error
	for _, rp := range pipes {
		err := checkRelayed(rp.p, rp.set, e)
		if err == nil {
			return nil
		}
		ts := Topics(rp.p)
		if first == nil && (len(pipes) == 1 || slices.Contains(ts, e.Topic)) {
			first = err
			if rp.name != "" {
				first = fmt.Errorf("pipeline %s: %w", rp.name, err)
			}
		}
		for _, t := range ts {
			if !slices.Contains(all, t) {
				all = append(all, t)
			}
		}
	}
	if first != nil {
		return first
	}
	return fmt.Errorf("no pipeline of the production reads topic %q%s (they read: %s)", e.Topic, conf.Suggest(e.Topic, all), strings.Join(all, ", "))
}

// FinishEvents are the no-more-data events `dpsbatch finish` relays to the
// run in dir: one for each step that listens and runs after no other
// (those that do close their input once the steps they run after have
// ended), carrying the values its trigger selects, so that a step sharing
// the topic is not closed with it; for a run of one step, one on its
// trigger topic whether it listens or not (Relay then says nothing needed
// sending). A run of several steps with none gets no event.
func FinishEvents(dir string) ([]events.Event, error) {
	l := rundir.Layout{Dir: dir}
	_, set, err := rundir.ReadSettings(l)
	if err != nil {
		return nil, err
	}
	pipes, err := stepPolicies(l, set)
	if err != nil {
		return nil, err
	}
	var out []events.Event
	for _, rp := range pipes {
		if len(pipes) > 1 && (!rp.set.Listen || len(rp.set.After) > 0) {
			continue
		}
		props := map[string]any{}
		for k, v := range rp.p.Trigger.Select {
			props[k] = v
		}
		out = append(out, events.Event{Topic: rp.p.Trigger.Topic, Kind: events.KindNoMoreData, Properties: props})
	}
	return out, nil
}

// EventSource is a state file recording a run's events: one per step.
type EventSource struct {
	Pipeline string // the production's name for the step; "" in a run of one policy
	Dir      string // the directory of the state file
}

// EventSources lists where the run in dir records its events.
func EventSources(dir string) ([]EventSource, error) {
	l := rundir.Layout{Dir: dir}
	_, set, err := rundir.ReadSettings(l)
	if err != nil {
		return nil, err
	}
	var out []EventSource
	for _, d := range rundir.StepDirs(l, set) {
		out = append(out, EventSource{Pipeline: d.Name, Dir: d.Layout.Dir})
	}
	return out, nil
}

// checkRelayed refuses an event the run's Pipeline would never read.
func checkRelayed(p *harness.Policy, set rundir.Settings, e events.Event) error {
	ts := Topics(p)
	if !slices.Contains(ts, e.Topic) {
		return fmt.Errorf("pipeline %s never reads topic %q%s (it reads: %s)", p.Name, e.Topic, conf.Suggest(e.Topic, ts), strings.Join(ts, ", "))
	}
	if e.Topic == p.Trigger.Topic && !set.Listen && e.IsData() {
		return fmt.Errorf("the run reads no trigger events besides its visit list (it was submitted without --listen)")
	}
	if e.IsData() {
		if err := checkTypes(p, e); err != nil {
			return err
		}
	}
	if e.Topic == p.Trigger.Topic && e.IsData() {
		v, ok := e.Visit()
		if !ok {
			return fmt.Errorf("a trigger event needs a %s property", events.PropVisit)
		}
		if err := harness.CheckVisitID(v); err != nil {
			return fmt.Errorf("pipeline %s would drop it as malformed: %w", p.Name, err)
		}
	}
	if e.Topic == events.TopicControl && e.Kind != events.KindShutdown {
		return fmt.Errorf("only shutdown events go on %s (dpsbatch stop)", events.TopicControl)
	}
	return nil
}

// checkTypes refuses a data event whose properties the receivers that
// would take it refuse: the trigger, or the stages waiting on its topic,
// that select it. Their check converts text that reads as a declared type
// (key=value arguments are text) in e.Properties. An event none of them
// selects is left alone: another pipeline sharing the topic may take it.
func checkTypes(p *harness.Policy, e events.Event) error {
	var receivers []*harness.EventFilter
	var names []string
	if e.Topic == p.Trigger.Topic {
		receivers, names = append(receivers, &p.Trigger.EventFilter), append(names, "events.trigger")
	}
	for _, s := range p.Stages {
		if s.Event != nil && s.Event.Topic == e.Topic {
			receivers, names = append(receivers, &s.Event.EventFilter), append(names, s.Path+".event")
		}
	}
	var first error
	for i, f := range receivers {
		if !f.Selects(e) {
			continue
		}
		err := f.Check(e.Properties)
		if err == nil {
			return nil
		}
		if first == nil {
			first = fmt.Errorf("pipeline %s would drop it as malformed: %v (as %s of %s declares)", p.Name, err, names[i], p.File)
		}
	}
	return first
}

// Events reads the events the run in dir recorded (see state.EventQuery).
func Events(dir string, q state.EventQuery) ([]state.EventRecord, error) {
	st, err := state.OpenReadOnly(rundir.Layout{Dir: dir}.State())
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return st.Events(q)
}
