package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/injob"
	"github.com/dpsbatch/dpsbatch/input/inputtest"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

// The events of batch runs around Slurm: Relay (dpsbatch stop, finish,
// event send), the broker lock, the feed rank 0 hands the harness, the
// recorder's admission of triggered visits, the end of a run's input, and
// status's silent Pipeline. The brokers are real (the run's embedded NATS
// server, or the in-process Memory broker where only the feed's logic is
// tested), the state files are real, Slurm is the fake backend.

// Relay refuses an event the run's Pipeline would never read, and
// publishes nothing: the job's broker, read afterwards, holds only the
// one good event sent last.
func TestRelayRefusals(t *testing.T) {
	e := newEnv(t, 3)
	listening := e.eventRun("run1", true, false)
	e2 := newEnv(t, 3)
	notListening := e2.eventRun("run1", false, true)
	// Both jobs run, their rank 0 serving the run's broker: a refusal
	// that slipped through would reach it.
	e.fake.set("1001", "RUNNING")
	e2.fake.set("1001", "RUNNING")
	rank0(t, listening, "1001")
	rank0(t, notListening, "1001")

	for _, tc := range []struct {
		name string
		e    *env
		dir  string
		ev   events.Event
		says []string
	}{
		{"misspelt topic", e, listening, events.Event{Topic: "visit", Properties: map[string]any{events.PropVisit: "v9"}},
			[]string{`never reads topic "visit"`, `did you mean "visits"`, "it reads: visits, dpsbatch.control, ephem", "run run1"}},
		{"unknown topic", e, listening, events.Event{Topic: "calib"},
			[]string{`never reads topic "calib"`, "it reads: visits, dpsbatch.control, ephem"}},
		{"trigger without visitId", e, listening, events.Event{Topic: "visits", Properties: map[string]any{"visit": "v9"}},
			[]string{"a trigger event needs a visitId property"}},
		{"trigger whose visitId climbs out of the run directory", e, listening, events.Event{Topic: "visits", Properties: map[string]any{events.PropVisit: "../../.."}},
			[]string{`visit ID "../../.." contains '/'`}},
		{"trigger whose visitId reads as an option", e, listening, events.Event{Topic: "visits", Properties: map[string]any{events.PropVisit: "-rf"}},
			[]string{`visit ID "-rf" starts with '-'`}},
		{"data on the control topic", e, listening, events.Event{Topic: events.TopicControl, Properties: map[string]any{"why": "x"}},
			[]string{"only shutdown events go on dpsbatch.control"}},
		{"no-more-data on the control topic", e, listening, events.Event{Topic: events.TopicControl, Kind: events.KindNoMoreData},
			[]string{"only shutdown events go on dpsbatch.control"}},
		{"trigger to a run without --listen", e2, notListening, events.Event{Topic: "visits", Properties: map[string]any{events.PropVisit: "v9"}},
			[]string{"submitted without --listen"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, when := range []int{WhenRunning, WhenLive, WhenAny} {
				res, err := tc.e.relay(tc.dir, tc.ev, when, time.Second)
				if res != nil {
					t.Errorf("Relayed %+v; want nil", res)
				}
				inputtest.WantInvalid(t, tc.name, err, "")
				for _, s := range tc.says {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
			}
		})
	}

	// A good trigger goes through, so the reader below can see one.
	if _, err := e.relay(listening, events.Event{Topic: "visits", Properties: map[string]any{events.PropVisit: "v9"}}, WhenRunning, 5*time.Second); err != nil {
		t.Fatalf("a good trigger: %v", err)
	}
	for _, r := range []struct {
		name  string
		dir   string
		wants []string // the visits on the trigger topic
	}{{"listening run", listening, []string{"v9"}}, {"run without --listen", notListening, nil}} {
		n := runtest.DialJob(t, r.dir, "1001", "")
		var got []string
		for _, topic := range []string{"visits", "visit", "calib", events.TopicControl, "ephem"} {
			for _, ev := range readAllOn(t, n, topic, 300*time.Millisecond) {
				got = append(got, topic+":"+runtest.VisitOf(ev))
			}
		}
		var want []string
		for _, v := range r.wants {
			want = append(want, "visits:"+v)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: the job's broker holds %v; want %v", r.name, got, want)
		}
		if recs := runtest.Recorded(t, r.dir, state.EventQuery{Dir: "in"}); len(recs) != 0 {
			t.Errorf("the state file recorded %+v; want no event received (the pipeline's own start is sent)", recs)
		}
	}
}

// Relay checks a data event's properties against the types the run's
// pipeline declares for the trigger or the stage that would take it, as
// the Pipeline would (text that reads as the type is converted): an event
// the Pipeline would drop as malformed is refused, naming the key and the
// type expected, with nothing sent.
func TestRelayChecksDeclaredTypes(t *testing.T) {
	e := newEnv(t, 3)
	e.policy = e.write("pipeline.yaml", `pipeline: typed
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
events: {trigger: {topic: visits, properties: {exposure: number, filter: string}}, external: [ephem]}
stages:
  - {name: work, type: noop}
  - {name: wait, type: noop, event: {topic: ephem, timeout: 5s, properties: {ra: number, fresh: bool}}}
`)
	o := e.opts("run1")
	o.Listen, o.Visits = true, ""
	sub, err := Submit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	trigger := func(props map[string]any) events.Event {
		props[events.PropVisit] = "v9"
		return events.Event{Topic: "visits", Properties: props}
	}
	for _, tc := range []struct {
		name string
		ev   events.Event
		says string
	}{
		{"text that is no number", trigger(map[string]any{"exposure": "long", "filter": "r"}), `property exposure: expected number, got string "long"`},
		{"a list for a string", trigger(map[string]any{"exposure": 30, "filter": []any{"r"}}), "property filter: expected string, got a list"},
		{"a missing property", trigger(map[string]any{"exposure": 30}), "missing property filter"},
		{"an object visitId", events.Event{Topic: "visits", Properties: map[string]any{events.PropVisit: map[string]any{"a": 1}, "exposure": 1, "filter": "r"}},
			"property visitId: expected string or number, got a mapping"},
		{"a waited-for event", events.Event{Topic: "ephem", Properties: map[string]any{"ra": 1.5, "fresh": "perhaps"}}, `property fresh: expected bool, got string "perhaps"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := e.relay(sub.Dir, tc.ev, WhenAny, time.Second)
			if res != nil {
				t.Errorf("Relayed %+v; want nil", res)
			}
			inputtest.WantInvalid(t, tc.name, err, tc.says)
		})
	}
	// Text that reads as the declared types goes, converted.
	ev := trigger(map[string]any{"exposure": "30.5", "filter": "r"})
	if _, err := e.relay(sub.Dir, ev, WhenAny, 5*time.Second); err != nil {
		t.Fatalf("a good trigger in text: %v", err)
	}
	if ev.Properties["exposure"] != 30.5 {
		t.Errorf("exposure sent as %#v, want the number 30.5", ev.Properties["exposure"])
	}
}

// A no-more-data for a run that does not listen is not refused, nor sent:
// the run ends after its visit list anyway.
func TestRelayFinishWithoutListen(t *testing.T) {
	e := newEnv(t, 3)
	dir := e.eventRun("run1", false, true)
	e.fake.set("1001", "RUNNING")
	res, err := e.relay(dir, events.Event{Topic: "visits", Kind: events.KindNoMoreData}, WhenLive, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Note, "without --listen") || res.Broker != "" || res.Stored || res.Job != "1001" || res.Kind != "no-more-data" {
		t.Errorf("Relayed %+v; want a note that nothing was sent", res)
	}
	if _, err := os.Stat(rundir.Layout{Dir: dir}.BrokerDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the run's broker directory: %v; want none (nothing opened)", err)
	}
}

// Relay to a running job reaches its Pipeline through the embedded
// broker rank 0 started: a trigger, an event a stage waits for, a stop.
// Each arrives with the run's ID, the sender's host and the time.
func TestRelayToRunningJob(t *testing.T) {
	e := newEnv(t, 3)
	dir := e.eventRun("run1", true, false)
	e.fake.set("1001", "RUNNING")
	_, dr := rank0(t, dir, "1001")
	url := brokerOfJob(t, dir, "1001")
	ctx := context.Background()
	trig, err := dr.Broker.Subscribe(ctx, "visits", "run1")
	if err != nil {
		t.Fatal(err)
	}
	defer trig.Close()
	host, _ := os.Hostname()
	before := time.Now().Add(-time.Second)

	for _, tc := range []struct {
		ev   events.Event
		when int
	}{
		{events.Event{Topic: "visits", Properties: map[string]any{events.PropVisit: "e1", "band": "r", "n": 3}}, WhenRunning},
		{events.Event{Topic: "ephem", Properties: map[string]any{"ra": 12.5}}, WhenLive},
		{events.Event{Topic: events.TopicControl, Kind: events.KindShutdown, Properties: map[string]any{"why": "operator"}}, WhenRunning},
	} {
		var sub events.Subscription = trig
		if tc.ev.Topic != "visits" {
			if sub, err = dr.Broker.Subscribe(ctx, tc.ev.Topic, "run1"); err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
		}
		res, err := e.relay(dir, tc.ev, tc.when, 5*time.Second)
		if err != nil {
			t.Fatalf("Relay on %s: %v", tc.ev.Topic, err)
		}
		kind := string(tc.ev.Kind)
		if kind == "" {
			kind = "data"
		}
		want := Relayed{Run: "run1", Topic: tc.ev.Topic, Kind: kind, Job: "1001", JobState: "RUNNING", Broker: url}
		if *res != want {
			t.Errorf("Relayed %+v; want %+v", *res, want)
		}
		got := runtest.Next(t, sub)
		if got.Topic != tc.ev.Topic || got.RunID != "run1" || got.Sender != host || got.Time.Before(before) ||
			got.Time.After(time.Now()) || !maps.Equal(got.Properties, tc.ev.Properties) || got.Kind != tc.ev.Kind && !(tc.ev.Kind == "" && got.IsData()) {
			t.Errorf("received %+v; want %+v with run1, sender %s and the time", got, tc.ev, host)
		}
	}
	// The Pipeline's broker recorded what it received, with the job.
	recs := runtest.Recorded(t, dir, state.EventQuery{Dir: "in"})
	var topics []string
	for _, r := range recs {
		topics = append(topics, r.Topic)
		if r.Job != "1001" || r.Sender != host || r.Time.IsZero() {
			t.Errorf("recorded %+v; want job 1001, sender %s, a time", r, host)
		}
	}
	if want := []string{"visits", "ephem", events.TopicControl}; !slices.Equal(topics, want) {
		t.Errorf("recorded topics %v; want %v", topics, want)
	}
}

// A running job that has not recorded its broker's address yet: Relay
// waits for it, then says the broker cannot be reached, and why.
func TestRelayRunningWithoutBroker(t *testing.T) {
	e := newEnv(t, 3)
	dir := e.eventRun("run1", true, false)
	e.fake.set("1001", "RUNNING")
	start := time.Now()
	res, err := e.relay(dir, events.Event{Topic: events.TopicControl, Kind: events.KindShutdown}, WhenRunning, 600*time.Millisecond)
	took := time.Since(start)
	if res != nil || !errors.Is(err, rundir.ErrBrokerUnreachable) {
		t.Fatalf("Relay: %+v, %v; want ErrBrokerUnreachable", res, err)
	}
	for _, s := range []string{"run run1", "job 1001", "has not recorded its broker's address within 600ms", "see its log"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if took < 600*time.Millisecond {
		t.Errorf("Relay gave up after %s; want it to wait 600ms for the address", took)
	}
	if _, err := os.Stat(rundir.Layout{Dir: dir}.BrokerDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("broker directory: %v; want none: a running job's store is its own", err)
	}
}

// Only a running job hears `dpsbatch stop`; a pending one is named.
func TestRelayPendingWhenRunning(t *testing.T) {
	e := newEnv(t, 3)
	dir := e.eventRun("run1", true, false) // 1001 PENDING
	res, err := e.relay(dir, events.Event{Topic: events.TopicControl, Kind: events.KindShutdown}, WhenRunning, time.Second)
	if res != nil || !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Relay: %+v, %v; want ErrNotRunning", res, err)
	}
	for _, s := range []string{"run run1", "its job 1001 is pending", "dpsbatch cancel run1"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if _, err := os.Stat(rundir.Layout{Dir: dir}.BrokerDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("broker directory: %v; want none (nothing stored)", err)
	}
}

// With no live job, Relay says how the last one ended, unless the event
// may be kept (WhenAny): then it is stored in the run's broker, and the
// next job's rank 0 receives it — published before the job started.
func TestRelayNoLiveJob(t *testing.T) {
	e := newEnv(t, 3)
	dir := e.eventRun("run1", true, false)
	e.fake.forget("1001", "TIMEOUT")
	trigger := events.Event{Topic: "visits", Properties: map[string]any{events.PropVisit: "late1", "band": "i"}}
	for _, tc := range []struct {
		when int
		says []string
		not  string
	}{
		{WhenRunning, []string{"run run1", "not running", "its last job 1001 is timeout since "}, "--keep"},
		{WhenLive, []string{"its last job 1001 is timeout since ", "--keep stores the event"}, ""},
	} {
		res, err := e.relay(dir, trigger, tc.when, time.Second)
		if res != nil || !errors.Is(err, ErrNotRunning) {
			t.Fatalf("Relay when %d: %+v, %v; want ErrNotRunning", tc.when, res, err)
		}
		for _, s := range tc.says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not say %q", err, s)
			}
		}
		if tc.not != "" && strings.Contains(err.Error(), tc.not) {
			t.Errorf("error %q says %q", err, tc.not)
		}
	}
	if _, err := os.Stat(rundir.Layout{Dir: dir}.BrokerDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("broker directory: %v; want none before an event is kept", err)
	}

	res, err := e.relay(dir, trigger, WhenAny, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	l := rundir.Layout{Dir: dir}
	if want := (Relayed{Run: "run1", Topic: "visits", Kind: "data", Broker: l.BrokerDir(), Stored: true}); *res != want {
		t.Errorf("Relayed %+v; want %+v", *res, want)
	}
	// Relay let the store go: a resumed run's job takes it and its
	// Pipeline receives the event.
	withState(t, dir, func(st *state.Store) {
		if err := st.AddJob(state.Job{ID: "1002", Attempt: 2, Submitted: runtest.FixedNow(), State: "SUBMITTED"}); err != nil {
			t.Fatal(err)
		}
	})
	_, dr := rank0(t, dir, "1002")
	sub, err := dr.Broker.Subscribe(context.Background(), "visits", "run1")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got := runtest.Next(t, sub)
	if runtest.VisitOf(got) != "late1" || got.Properties["band"] != "i" || got.RunID != "run1" || got.Time.IsZero() {
		t.Errorf("the job received %+v; want late1 of run1", got)
	}
	runtest.Quiet(t, sub, 300*time.Millisecond)
	if recs := runtest.Recorded(t, dir, state.EventQuery{Dir: "in", Topic: "visits"}); len(recs) != 1 || recs[0].Job != "1002" {
		t.Errorf("recorded %+v; want the one trigger, by job 1002", recs)
	}
}

// A pending job may be sent an event (WhenLive): it is stored for it.
// Once the job has started (Slurm may still say PENDING), its rank 0
// holds the store, and Relay sends to its broker instead.
func TestRelayPendingJob(t *testing.T) {
	e := newEnv(t, 3)
	dir := e.eventRun("run1", true, false) // 1001 PENDING
	l := rundir.Layout{Dir: dir}
	ev := func(id string) events.Event {
		return events.Event{Topic: "visits", Properties: map[string]any{events.PropVisit: id}}
	}
	res, err := e.relay(dir, ev("p1"), WhenLive, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Relayed{Run: "run1", Topic: "visits", Kind: "data", Job: "1001", JobState: "PENDING", Broker: l.BrokerDir(), Stored: true}); *res != want {
		t.Errorf("Relayed %+v; want %+v", *res, want)
	}
	_, dr := rank0(t, dir, "1001")
	res, err = e.relay(dir, ev("p2"), WhenLive, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored || res.Broker != brokerOfJob(t, dir, "1001") || res.JobState != "PENDING" {
		t.Errorf("Relayed %+v; want sent to the job's broker %s", res, brokerOfJob(t, dir, "1001"))
	}
	sub, err := dr.Broker.Subscribe(context.Background(), "visits", "run1")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if a, b := runtest.VisitOf(runtest.Next(t, sub)), runtest.VisitOf(runtest.Next(t, sub)); a != "p1" || b != "p2" {
		t.Errorf("the job received %s, %s; want p1, p2", a, b)
	}
}

// Whoever serves the run's broker store holds its lock; the token is the
// owner's alone and new with every server.
func TestBrokerLock(t *testing.T) {
	e := newEnv(t, 1)
	dir := e.eventRun("run1", true, false)
	l := rundir.Layout{Dir: dir}
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	s1, err := rundir.Serve(ctx, l, rundir.BrokerSettings{}, "127.0.0.1", 0, "first", "", log)
	if err != nil {
		t.Fatal(err)
	}
	tok1 := string(readAll(t, l.BrokerToken()))
	if fi, err := os.Stat(l.BrokerToken()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	if len(strings.TrimSpace(tok1)) < 32 {
		t.Errorf("token %q; want a long random one", tok1)
	}
	start := time.Now()
	if _, err := rundir.LockBroker(l, 0); !errors.Is(err, rundir.ErrBrokerBusy) || !strings.Contains(err.Error(), l.BrokerDir()) {
		t.Fatalf("lockBroker while served: %v; want rundir.ErrBrokerBusy naming %s", err, l.BrokerDir())
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("lockBroker with wait 0 took %s; want at once", took)
	}
	start = time.Now()
	if _, err := rundir.LockBroker(l, 300*time.Millisecond); !errors.Is(err, rundir.ErrBrokerBusy) || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("lockBroker waiting 300ms: %v after %s; want rundir.ErrBrokerBusy after 300ms", err, time.Since(start))
	}
	if _, err := rundir.Serve(ctx, l, rundir.BrokerSettings{}, "127.0.0.1", 0, "second", "", log); !errors.Is(err, rundir.ErrBrokerBusy) {
		t.Fatalf("a second serve: %v; want rundir.ErrBrokerBusy", err)
	}
	if got := string(readAll(t, l.BrokerToken())); got != tok1 {
		t.Error("a refused serve replaced the token")
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	unlock, err := rundir.LockBroker(l, 0)
	if err != nil {
		t.Fatalf("lockBroker after Close: %v", err)
	}
	unlock()

	// A waiting lockBroker gets the lock once it is let go.
	s2, err := rundir.Serve(ctx, l, rundir.BrokerSettings{}, "127.0.0.1", 0, "third", "", log)
	if err != nil {
		t.Fatal(err)
	}
	tok2 := string(readAll(t, l.BrokerToken()))
	if tok2 == tok1 {
		t.Error("the token is the same for two servers")
	}
	if fi, err := os.Stat(l.BrokerToken()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file after the second serve: %v, %v; want mode 0600", fi.Mode(), err)
	}
	go func() { time.Sleep(200 * time.Millisecond); s2.Close() }()
	unlock, err = rundir.LockBroker(l, 10*time.Second)
	if err != nil {
		t.Fatalf("lockBroker waiting for the server to close: %v", err)
	}
	unlock()
}

// `dpsbatch finish` reaches the running job's Pipeline, whose broker
// closes the run's input in the state file; a resume then finds the run
// complete, where a listening run whose input is open gets a new job.
func TestFinishThenResume(t *testing.T) {
	e := newEnv(t, 3)
	dir := e.eventRun("run1", true, false)
	e.fake.set("1001", "RUNNING")
	j, dr := rank0(t, dir, "1001")
	sub, err := dr.Broker.Subscribe(context.Background(), "visits", "run1")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := e.relay(dir, events.Event{Topic: "visits", Kind: events.KindNoMoreData}, WhenLive, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := runtest.Next(t, sub); got.Kind != events.KindNoMoreData {
		t.Fatalf("received %+v; want no-more-data", got)
	}
	host, _ := os.Hostname()
	r := runtest.RunOf(t, dir)
	if r.InputClosed.IsZero() || r.InputClosedWhy != "no-more-data from "+host {
		t.Errorf("input closed %v, %q; want closed by no-more-data from %s", r.InputClosed, r.InputClosedWhy, host)
	}
	if err := j.End(&harness.Summary{}, nil); err != nil {
		t.Fatal(err)
	}
	e.fake.forget("1001", "COMPLETED")
	res, err := Resume(context.Background(), e.resumeOpts(dir))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, n := e.fake.calls(); !res.Complete || len(res.Jobs) != 0 || n != 1 {
		t.Errorf("resume of a finished run: %+v, %d submissions; want complete, nothing submitted", res, n)
	}
	if rs := status(t, e, dir); !rs.Listen || rs.InputClosed.IsZero() {
		t.Errorf("status %+v; want listening, input closed", rs)
	}

	// The same run, its input open: resume submits a job to listen.
	e2 := newEnv(t, 3)
	dir2 := e2.eventRun("run1", true, false)
	e2.fake.forget("1001", "TIMEOUT")
	res, err = Resume(context.Background(), e2.resumeOpts(dir2))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, n := e2.fake.calls(); res.Complete || !slices.Equal(res.Jobs, []string{"1002"}) || res.Visits != 0 || n != 2 {
		t.Errorf("resume of a listening run: %+v, %d submissions; want job 1002 for no visits yet", res, n)
	}
	// Open input but a visit list all done: still not complete.
	e3 := newEnv(t, 2)
	dir3 := e3.eventRun("run1", true, true)
	withState(t, dir3, func(st *state.Store) {
		runtest.VisitAs(t, st, "1001", "v001", state.Done)
		runtest.VisitAs(t, st, "1001", "v002", state.Done)
	})
	e3.fake.forget("1001", "COMPLETED")
	if res, err := Resume(context.Background(), e3.resumeOpts(dir3)); err != nil || res.Complete || len(res.Jobs) != 1 {
		t.Errorf("resume of a listening run with its visits done: %+v, %v; want a job", res, err)
	}
}

// silent: a running job's Pipeline is silent past three heartbeats since
// its last one, or, with none yet, past three heartbeats and a minute
// since it started (by Slurm or by rank 0, the later).
func TestSilent(t *testing.T) {
	at := runtest.FixedNow()
	every := 10 * time.Second
	ago := func(d time.Duration) time.Time { return at.Add(-d) }
	for _, tc := range []struct {
		name   string
		hb     time.Time
		start  time.Time // rank 0's
		slurm  time.Time // Slurm's
		silent bool
	}{
		{"fresh heartbeat", ago(5 * time.Second), ago(time.Hour), ago(time.Hour), false},
		{"heartbeat three beats old", ago(30 * time.Second), ago(time.Hour), ago(time.Hour), false},
		{"stale heartbeat", ago(31 * time.Second), ago(time.Hour), ago(time.Hour), true},
		{"none, started long ago", time.Time{}, ago(time.Hour), time.Time{}, true},
		{"none, Slurm started it long ago", time.Time{}, time.Time{}, ago(time.Hour), true},
		{"none, just started", time.Time{}, ago(10 * time.Second), ago(20 * time.Second), false},
		{"none, within the minute's grace", time.Time{}, ago(80 * time.Second), time.Time{}, false},
		{"none, past the grace", time.Time{}, ago(91 * time.Second), time.Time{}, true},
		{"none, rank 0 started long ago, Slurm just now", time.Time{}, ago(time.Hour), ago(5 * time.Second), false},
		{"none, no start known", time.Time{}, time.Time{}, time.Time{}, false},
	} {
		j := JobStatus{ID: "1001", State: "RUNNING", Live: true, Heartbeat: tc.hb, Started: tc.start}
		k := scheduler.Job{ID: "1001", State: "RUNNING", Started: tc.slurm}
		if got := silent(j, k, every, at); got != tc.silent {
			t.Errorf("%s: silent = %v; want %v", tc.name, got, tc.silent)
		}
	}
}

// Status flags a running job whose Pipeline's heartbeat is stale, by the
// run's heartbeat interval; not one that beats, nor one Slurm has not
// started.
func TestStatusSilent(t *testing.T) {
	defer func(c func() time.Time) { clock = c }(clock)
	e := newEnv(t, 3)
	o := e.opts("run1")
	o.Heartbeat = 10 * time.Second
	sub, err := Submit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	dir := sub.Dir
	withState(t, dir, func(st *state.Store) {
		if err := st.JobStarted("1001", "n1", runtest.FixedNow()); err != nil {
			t.Fatal(err)
		}
		if err := st.VisitStarted("v002", "1001", runtest.FixedNow().Add(50*time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := st.Heartbeat("1001", runtest.FixedNow().Add(time.Minute), "v002"); err != nil {
			t.Fatal(err)
		}
	})
	for _, tc := range []struct {
		name   string
		slurm  string
		now    time.Duration // after the heartbeat
		silent bool
	}{
		{"beating", "RUNNING", 25 * time.Second, false},
		{"silent", "RUNNING", 31 * time.Second, true},
		{"long silent", "RUNNING", time.Hour, true},
		{"pending in Slurm", "PENDING", time.Hour, false},
		{"completing", "COMPLETING", time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.fake.set("1001", tc.slurm)
			clock = func() time.Time { return runtest.FixedNow().Add(time.Minute + tc.now) }
			rs := status(t, e, dir)
			j := rs.Jobs[0]
			if j.Silent != tc.silent {
				t.Errorf("Silent = %v; want %v (%+v)", j.Silent, tc.silent, j)
			}
			if tc.slurm == "PENDING" {
				// Pending after it started: Slurm requeued it, and the
				// heartbeat is an earlier start's.
				if j.Requeued == nil || !j.Heartbeat.IsZero() {
					t.Errorf("a started job pending again: %+v; want it requeued, without the earlier start's heartbeat", j)
				}
				return
			}
			if !j.Heartbeat.Equal(runtest.FixedNow().Add(time.Minute)) || j.HeartbeatVisit != "v002" || rs.Heartbeat != 10*time.Second {
				t.Errorf("heartbeat %v on %q every %s; want the one recorded, every 10s", j.Heartbeat, j.HeartbeatVisit, rs.Heartbeat)
			}
		})
	}
	// The visit the heartbeat names ends before the next heartbeat: the
	// heartbeat is no longer said to be in it.
	e.fake.set("1001", "RUNNING")
	clock = func() time.Time { return runtest.FixedNow().Add(time.Minute + 5*time.Second) }
	withState(t, dir, func(st *state.Store) {
		if err := st.VisitEnded("v002", state.Done, "", runtest.FixedNow().Add(time.Minute+time.Second)); err != nil {
			t.Fatal(err)
		}
	})
	if j := status(t, e, dir).Jobs[0]; j.HeartbeatVisit != "" || !j.Heartbeat.Equal(runtest.FixedNow().Add(time.Minute)) {
		t.Errorf("after visit v002 ended: heartbeat %v in visit %q; want the heartbeat in no visit", j.Heartbeat, j.HeartbeatVisit)
	}
	// Its Pipeline recorded its end while Slurm still runs the job (its
	// step or script finishing): it ended, it is not silent.
	withState(t, dir, func(st *state.Store) {
		if err := st.JobEnded("1001", "COMPLETED", 0, "", runtest.FixedNow().Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
	})
	if rs := status(t, e, dir); rs.Jobs[0].Silent {
		t.Errorf("a job whose Pipeline recorded its end is silent: %+v", rs.Jobs[0])
	}
	// Gone from Slurm, it is no longer silent: it ended.
	e.fake.forget("1001", "CANCELLED")
	if rs := status(t, e, dir); rs.Jobs[0].Silent {
		t.Errorf("an ended job is silent: %+v", rs.Jobs[0])
	}
}

// A resumed listening run feeds again the visits that arrived by event
// and are still to run, with the properties their (last) trigger event
// carried, in the state file's order among the visit list's; a runnable
// visit found neither in the list nor among the trigger events received
// is an error that names it.
func TestInJobFeedOfTriggeredVisits(t *testing.T) {
	record := func(t *testing.T, st *state.Store, dir, topic, id string, kind events.Kind, props map[string]any) {
		t.Helper()
		p := map[string]any{events.PropVisit: id}
		maps.Copy(p, props)
		if err := st.RecordEvent(state.EventRecord{Dir: dir, Topic: topic, Kind: string(kind), Job: "1001", Props: p}); err != nil {
			t.Fatal(err)
		}
	}
	setup := func(t *testing.T, withVisits bool) (*env, string) {
		e := newEnv(t, 2)
		dir := e.eventRun("run1", true, withVisits)
		withState(t, dir, func(st *state.Store) {
			for _, id := range []string{"e1", "e2", "e3"} {
				if _, err := st.AddVisit(id); err != nil {
					t.Fatal(err)
				}
			}
			record(t, st, "in", "visits", "e1", "", map[string]any{"band": "r"})
			record(t, st, "in", "visits", "e2", "", map[string]any{"band": "g", "n": 1})
			record(t, st, "in", "visits", "e3", "", nil)
			record(t, st, "in", "visits", "e1", "", map[string]any{"band": "z"}) // redelivered, later word
			record(t, st, "in", "visits", "e2", events.KindShutdown, map[string]any{"band": "no"})
			record(t, st, "out", "visits", "e2", "", map[string]any{"band": "out"})
			record(t, st, "in", "ephem", "e2", "", map[string]any{"band": "ephem"})
			runtest.VisitAs(t, st, "1001", "e3", state.Done)
		})
		e.fake.forget("1001", "TIMEOUT")
		return e, dir
	}
	// fedVisits starts job 1002 of the run and reads its feed.
	fedVisits := func(t *testing.T, dir string, n int) []harness.Visit {
		withState(t, dir, func(st *state.Store) {
			if err := st.AddJob(state.Job{ID: "1002", Attempt: 2, Submitted: runtest.FixedNow(), State: "SUBMITTED"}); err != nil {
				t.Fatal(err)
			}
		})
		_, dr := rank0(t, dir, "1002")
		sub, err := dr.Broker.Subscribe(context.Background(), "visits", "run1")
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		var out []harness.Visit
		for range n {
			ev := runtest.Next(t, sub)
			props := maps.Clone(ev.Properties)
			delete(props, events.PropVisit)
			out = append(out, harness.Visit{ID: runtest.VisitOf(ev), Props: props})
		}
		runtest.Quiet(t, sub, 300*time.Millisecond) // listening: no end of the feed's own
		return out
	}
	check := func(t *testing.T, got []harness.Visit, want []string) {
		t.Helper()
		var s []string
		for _, v := range got {
			s = append(s, v.ID+" "+fmtProps(v.Props))
		}
		if !slices.Equal(s, want) {
			t.Errorf("fed\n%q\nwant\n%q", s, want)
		}
	}

	t.Run("no visit list", func(t *testing.T) {
		_, dir := setup(t, false)
		check(t, fedVisits(t, dir, 2), []string{"e1 band=z", "e2 band=g n=1"})
	})
	t.Run("with a visit list", func(t *testing.T) {
		_, dir := setup(t, true)
		withState(t, dir, func(st *state.Store) { runtest.VisitAs(t, st, "1001", "v002", state.Done) })
		check(t, fedVisits(t, dir, 3), []string{"v001 ", "e1 band=z", "e2 band=g n=1"})
	})
	t.Run("a visit from nowhere", func(t *testing.T) {
		_, dir := setup(t, false)
		withState(t, dir, func(st *state.Store) {
			for _, id := range []string{"ghost", "sent"} {
				if _, err := st.AddVisit(id); err != nil {
					t.Fatal(err)
				}
			}
			// Sent by the run, not received: not where a visit comes from.
			record(t, st, "out", "visits", "sent", "", nil)
		})
		for _, ghost := range []string{"ghost", "sent"} {
			if ghost == "sent" {
				withState(t, dir, func(st *state.Store) {
					runtest.VisitAs(t, st, "1001", "ghost", state.Done)
				})
			}
			stop := serveRun(t, rundir.Layout{Dir: dir}.State(), "1001", 0)
			j := &injob.InJob{StatePath: rundir.Layout{Dir: dir}.State(), JobID: "1001"}
			dr := &harness.RunOptions{RunID: "run1", RunDir: dir}
			err := j.Hook(loadRunPolicy(t, dir), dr)
			j.End(nil, err)
			stop()
			if err == nil || !strings.Contains(err.Error(), `visit "`+ghost+`"`) ||
				!strings.Contains(err.Error(), "neither in the visit list nor among the trigger events received") ||
				!strings.Contains(err.Error(), rundir.Layout{Dir: dir}.State()) {
				t.Errorf("Hook: %v; want an error naming visit %s and the state file", err, ghost)
			}
			if dr.Broker != nil {
				t.Errorf("Hook set a broker up anyway")
			}
		}
	})
}

// fmtProps is "k=v k=v" in key order.
func fmtProps(p map[string]any) string {
	var s []string
	for _, k := range slices.Sorted(maps.Keys(p)) {
		s = append(s, fmt.Sprintf("%s=%v", k, p[k]))
	}
	return strings.Join(s, " ")
}

// An event the Pipeline publishes is recorded as sent with the host and
// time it carried on the wire, not with an empty sender.
func TestPublishedEventRecordedWithSender(t *testing.T) {
	e := newEnv(t, 3)
	dir := e.eventRun("run1", true, false)
	e.fake.set("1001", "RUNNING")
	_, dr := rank0(t, dir, "1001")
	ctx := context.Background()
	sub, err := dr.Broker.Subscribe(ctx, "results", "run1")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := dr.Broker.Publish(ctx, events.Event{Topic: "results", RunID: "run1", Properties: map[string]any{"n": 1}}); err != nil {
		t.Fatal(err)
	}
	got := runtest.Next(t, sub)
	recs := runtest.Recorded(t, dir, state.EventQuery{Dir: "out", Topic: "results"})
	if len(recs) != 1 {
		t.Fatalf("recorded %d sent events on results; want 1: %+v", len(recs), recs)
	}
	host, _ := os.Hostname()
	if r := recs[0]; r.Sender != host || got.Sender != host || !r.Time.Equal(got.Time) {
		t.Errorf("recorded sender %q at %v; the event went out from %q at %v; want both from %s", r.Sender, r.Time, got.Sender, got.Time, host)
	}
}
