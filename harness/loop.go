package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness/comm"
	"github.com/dpsbatch/dpsbatch/mapper"
)

// ErrInterrupted is returned when the run's context was cancelled (an
// interrupt): the visit in flight, if any, was recorded as interrupted.
var ErrInterrupted = errors.New("harness: interrupted")

// Config is what one rank needs to run a pipeline. Every rank of a run
// gets the same Policy, RunID and RunDir; Broker, Recorder and Stop are
// used by the Pipeline (rank 0) only.
type Config struct {
	Policy *Policy
	RunID  string
	RunDir string // absolute; relative locations resolve against it
	Comm   comm.Comm
	Host   mapper.HostInfo // this rank's; Rank is set by Run
	Logger *slog.Logger    // nil discards

	Broker   events.Broker // Pipeline: trigger, waited-for and published events
	Recorder Recorder      // Pipeline: progress; nil records nothing
	// Stop, when closed, asks the Pipeline to stop at the next visit
	// boundary, as a shutdown event does.
	Stop <-chan struct{}
	// StopSignals, on every rank, hears of the stop signals this rank's
	// process received (nil: none are heard of). A Slice whose stage
	// fails with ErrKilled after one (or within StopGrace of it) reports
	// its data ID as stopped, and the Pipeline records the visit as
	// interrupted, not failed.
	StopSignals *StopSignals
	// Heartbeat, when positive, is how often the Pipeline publishes a
	// heartbeat on events.TopicHeartbeat (and tells a HeartbeatRecorder),
	// from the start of its loop to its end.
	Heartbeat time.Duration
}

// DropRecorder is an optional extra of a Recorder: it hears of every
// malformed trigger event the Pipeline drops (logged either way).
type DropRecorder interface {
	EventDropped(topic, why string)
}

// UndecodableRecorder is an optional extra of a Recorder: when the
// Pipeline ends it hears how many messages its subscriptions dropped
// because they could not be decoded as events (events.Subscription's
// Dropped; the broker logs each), unless there were none.
type UndecodableRecorder interface {
	EventsUndecodable(n int)
}

// VisitAdmitter is an optional extra of a Recorder: before the Pipeline
// runs a visit a trigger event names, it asks whether to. A batch run's
// recorder says no for a visit its state file records done (a trigger
// delivered again after a restart: the state, not the broker, says what
// is done) and adds a visit it has not heard of to the file. Without it,
// every trigger runs.
type VisitAdmitter interface {
	AdmitVisit(visit string) (run bool, why string, err error)
}

// VisitBudget is an optional extra of a Recorder: before the Pipeline
// starts a visit (once it is admitted), it asks whether there is time for
// it. A non-empty why stops the run at this visit boundary, as a stop
// request does, with why as the reason: the visit stays to be run by a
// later job. A batch job's recorder answers from the job's end time and
// the time visits take. Without it, every visit starts.
type VisitBudget interface {
	TimeForVisit(visit string) (why string)
}

// SkipRecorder is an optional extra of a Recorder: it hears of every
// well-formed event the Pipeline passes over, with why: not selected by
// the policy, or (visit set) a trigger the VisitAdmitter refused.
type SkipRecorder interface {
	EventSkipped(topic, visit, why string)
}

// HeartbeatRecorder is an optional extra of a Recorder: with
// Config.Heartbeat set, it hears the Pipeline's heartbeat, with the visit
// in flight ("" between visits). It is called on the heartbeat's own
// goroutine, concurrently with the other methods.
type HeartbeatRecorder interface {
	Heartbeat(at time.Time, visit string)
}

// StopRecorder is an optional extra of a Recorder: it hears why a run
// stopped before its data ran out (a shutdown event, a stop request).
type StopRecorder interface {
	RunStopped(why string)
}

// Run runs the pipeline on one rank until no-more-data, a shutdown or an
// error: the Pipeline on rank 0, a Slice on every other. Every rank of the
// communicator calls it, each on its own goroutine (or process). A fatal
// error on any rank aborts the communicator so no rank waits forever.
func Run(ctx context.Context, cfg Config) (err error) {
	c := cfg.Comm
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Recorder == nil {
		cfg.Recorder = nopRecorder{}
	}
	r := &rank{cfg: cfg, c: c}
	defer func() {
		if err != nil && !errors.Is(err, comm.ErrAborted) && !errors.Is(err, ErrInterrupted) {
			c.Abort(fmt.Errorf("rank %d: %w", c.Rank(), err))
		}
	}()
	stages, errs := cfg.Policy.buildStages()
	if len(errs) > 0 {
		return errs
	}
	r.stages = stages
	for _, b := range stages {
		if b.proc != nil {
			r.parallel = append(r.parallel, b)
		}
	}
	static := map[string]string{"run": cfg.RunID, "pipeline": cfg.Policy.Name, "pipelinedir": cfg.Policy.Dir}
	log := cfg.Logger.With(slog.String("run", cfg.RunID))
	if c.Rank() > 0 {
		log = log.With(slog.Int("slice", c.Rank()))
	}
	r.info = &runInfo{id: cfg.RunID, pipeline: cfg.Policy.Name, static: static,
		locs: NewLocations(cfg.RunDir, cfg.Policy.Locations, static), log: cfg.Logger.With(slog.String("run", cfg.RunID))}
	r.log = log
	if c.Rank() == 0 {
		r.info.publish = cfg.Broker.Publish
	}

	inited, err := r.initialize(ctx)
	defer func() {
		if serr := r.shutdown(ctx, inited); err == nil {
			err = serr
		}
	}()
	if err != nil {
		return err
	}
	ids, mapped, err := r.assign()
	if err != nil {
		return err
	}
	if c.Rank() > 0 {
		for _, b := range r.parallel {
			switch x := b.spec.Exchange; {
			case x == nil:
			case x.Topology == TopologyRing:
				b.neighbours = ringNeighbours(c.Rank(), c.Size()-1)
			case x.Topology == TopologyMapper:
				b.neighbours = mapped
			}
		}
	}
	if c.Rank() == 0 {
		return r.pipelineLoop(ctx)
	}
	return r.sliceLoop(ctx, ids)
}

// rank is the state of one rank's loop.
type rank struct {
	cfg      Config
	c        comm.Comm
	info     *runInfo
	log      *slog.Logger
	stages   []*built
	parallel []*built
	cx       Context // reused for every stage call on this rank
	totalIDs int     // Pipeline: data IDs assigned over all slices
}

type nopRecorder struct{}

func (nopRecorder) VisitStarted(string, time.Time) error          { return nil }
func (nopRecorder) StageDone(string, string, time.Duration) error { return nil }
func (nopRecorder) SliceFailed(SliceFailure) error                { return nil }
func (nopRecorder) VisitEnded(string, VisitResult) error          { return nil }

// context resets the reused Context for one call.
func (r *rank) context(ctx context.Context, visit, stage string, id mapper.DataID) *Context {
	cx := &r.cx
	*cx = Context{ctx: ctx, run: r.info, visit: visit, stage: stage, slice: r.c.Rank(), dataID: id, emitted: cx.emitted[:0]}
	return cx
}

// call runs one stage function, turning a panic into an error.
func (r *rank) call(cx *Context, what string, fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			cx.Logger().Error("stage panicked", "part", what, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("%s panicked: %v", what, p)
		}
	}()
	return fn()
}

func (r *rank) initialize(ctx context.Context) (int, error) {
	for i, b := range r.stages {
		in, ok := b.stage.(Initializer)
		if !ok {
			continue
		}
		cx := r.context(ctx, "", b.spec.Name, nil)
		if err := r.call(cx, "Initialize", func() error { return in.Initialize(cx) }); err != nil {
			return i, fmt.Errorf("stage %q: initialize: %w", b.spec.Name, err)
		}
	}
	return len(r.stages), nil
}

// shutdown calls Shutdown on the first n stages, in reverse order.
func (r *rank) shutdown(ctx context.Context, n int) error {
	var first error
	for i := n - 1; i >= 0; i-- {
		b := r.stages[i]
		sd, ok := b.stage.(Shutdowner)
		if !ok {
			continue
		}
		cx := r.context(context.WithoutCancel(ctx), "", b.spec.Name, nil)
		if err := r.call(cx, "Shutdown", func() error { return sd.Shutdown(cx) }); err != nil {
			cx.Logger().Error("shutdown failed", "err", err)
			if first == nil {
				first = fmt.Errorf("stage %q: shutdown: %w", b.spec.Name, err)
			}
		}
	}
	return first
}

// assign gathers every rank's HostInfo on the Pipeline, asks the mapper
// for an assignment (and, when a stage exchanges over the mapper topology,
// for each slice's neighbours) and scatters each Slice its data IDs and
// neighbour ranks. It returns this rank's (the Pipeline's: nil). Every
// rank calls it once, before the first visit; an error on the Pipeline
// reaches every Slice, so all of them fail.
func (r *rank) assign() ([]mapper.DataID, []int, error) {
	host := r.cfg.Host
	host.Rank = r.c.Rank()
	mine, err := encode(host)
	if err != nil {
		return nil, nil, err
	}
	all, err := r.c.Gather(0, mine)
	if err != nil {
		return nil, nil, err
	}
	var parts [][]byte
	var assignErr error
	if r.c.Rank() == 0 {
		hosts := make([]mapper.HostInfo, 0, len(all)-1)
		for i := 1; i < len(all); i++ {
			var h mapper.HostInfo
			if err := decode(all[i], &h); err != nil {
				return nil, nil, err
			}
			hosts = append(hosts, h)
		}
		var ids [][]mapper.DataID
		var nbrs [][]int
		m, err := r.cfg.Policy.NewMapper()
		if err == nil {
			ids, err = mapper.Assign(m, hosts)
		}
		if err == nil && r.cfg.Policy.usesMapperTopology() {
			nbrs, err = mapperNeighbours(m, r.cfg.Policy.Mapper.Type, hosts, ids)
		}
		assignErr = err
		parts = make([][]byte, len(all))
		for i := 1; i < len(all); i++ {
			msg := assignMsg{}
			if assignErr != nil {
				msg.Err = assignErr.Error()
			} else {
				msg.IDs = ids[i-1]
				if nbrs != nil {
					msg.Neighbours = nbrs[i-1]
				}
			}
			var err error
			if parts[i], err = encode(msg); err != nil {
				return nil, nil, err
			}
		}
		if assignErr == nil {
			r.totalIDs = countIDs(ids)
			r.log.Info("data assigned", "slices", len(hosts), "dataIds", countIDs(ids))
		}
	}
	part, err := r.c.Scatter(0, parts)
	if err != nil {
		return nil, nil, err
	}
	if r.c.Rank() == 0 {
		return nil, nil, assignErr
	}
	var m assignMsg
	if err := decode(part, &m); err != nil {
		return nil, nil, err
	}
	if m.Err != "" {
		return nil, nil, fmt.Errorf("the Pipeline could not assign data: %s", m.Err)
	}
	return m.IDs, m.Neighbours, nil
}

func countIDs(ids [][]mapper.DataID) int {
	n := 0
	for _, s := range ids {
		n += len(s)
	}
	return n
}

// ---- Pipeline (rank 0) ----

type pipeline struct {
	*rank
	trigger events.Subscription
	waits   map[string]events.Subscription // by topic
	// early holds events of waited-for topics that name a visit other than
	// the current one, by topic and visit, until that visit runs.
	early    map[string]map[string][]events.Event
	nEarly   int
	stopOnce sync.Once
	stopCh   chan struct{}

	mu      sync.Mutex // guards current and ended, read by the heartbeat
	current string     // the visit in flight, "" between visits
	ended   int        // visits ended
}

const maxEarly = 10000

func (r *rank) pipelineLoop(ctx context.Context) error {
	p := &pipeline{rank: r, waits: map[string]events.Subscription{}, early: map[string]map[string][]events.Event{}, stopCh: make(chan struct{})}
	b := r.cfg.Broker
	if b == nil {
		return errors.New("harness: the Pipeline needs an event broker")
	}
	var err error
	// Subscribe to everything before the first visit, so nothing published
	// meanwhile is missed.
	if p.trigger, err = b.Subscribe(ctx, r.cfg.Policy.Trigger.Topic, r.cfg.RunID); err != nil {
		return fmt.Errorf("harness: subscribe to trigger topic: %w", err)
	}
	defer p.trigger.Close()
	for _, st := range r.stages {
		if w := st.spec.Event; w != nil && p.waits[w.Topic] == nil {
			if p.waits[w.Topic], err = b.Subscribe(ctx, w.Topic, r.cfg.RunID); err != nil {
				return fmt.Errorf("harness: subscribe to %q: %w", w.Topic, err)
			}
			defer p.waits[w.Topic].Close()
		}
	}
	control, err := b.Subscribe(ctx, events.TopicControl, r.cfg.RunID)
	if err != nil {
		return fmt.Errorf("harness: subscribe to control topic: %w", err)
	}
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	go p.watch(watchCtx, control)
	defer control.Close()
	defer p.countUndecodable(control) // before the subscriptions close
	if r.cfg.Heartbeat > 0 {
		beating := make(chan struct{})
		go func() {
			defer close(beating)
			p.beat(watchCtx, r.cfg.Heartbeat)
		}()
		defer func() { stopWatching(); <-beating }()
	}

	// triggerCtx ends when a stop is asked for, so an idle wait for the
	// next visit ends at once.
	triggerCtx, cancelTrigger := context.WithCancel(ctx)
	defer cancelTrigger()
	go func() {
		select {
		case <-p.stopCh:
			cancelTrigger()
		case <-triggerCtx.Done():
		}
	}()

	if err := p.loop(ctx, triggerCtx); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ErrInterrupted
	}
	return nil
}

// countUndecodable tells the recorder how many messages the Pipeline's
// subscriptions dropped as undecodable.
func (p *pipeline) countUndecodable(control events.Subscription) {
	n := p.trigger.Dropped() + control.Dropped()
	for _, w := range p.waits {
		n += w.Dropped()
	}
	if n == 0 {
		return
	}
	p.log.Warn("messages that were not events were dropped (the broker logged each)", "messages", n)
	if u, ok := p.cfg.Recorder.(UndecodableRecorder); ok {
		u.EventsUndecodable(n)
	}
}

// watch turns shutdown events on the control topic and a closed Stop
// channel into a stop request. It runs on its own goroutine.
func (p *pipeline) watch(ctx context.Context, control events.Subscription) {
	go func() {
		select {
		case <-p.cfg.Stop:
			p.requestStop("stop requested")
		case <-ctx.Done():
		}
	}()
	for {
		e, err := control.Next(ctx)
		if err != nil {
			return
		}
		if e.Kind == events.KindShutdown {
			p.requestStop("shutdown event")
		}
	}
}

// beat publishes a heartbeat at once and then every interval until ctx
// ends. It runs on its own goroutine. A heartbeat that cannot be
// published is logged; the next one is tried all the same.
func (p *pipeline) beat(ctx context.Context, every time.Duration) {
	hr, _ := p.cfg.Recorder.(HeartbeatRecorder)
	tick := time.NewTicker(every)
	defer tick.Stop()
	failing := false
	for {
		p.mu.Lock()
		visit, ended := p.current, p.ended
		p.mu.Unlock()
		at := time.Now()
		if hr != nil {
			hr.Heartbeat(at, visit)
		}
		pctx, cancel := context.WithTimeout(ctx, every)
		err := p.cfg.Broker.Publish(pctx, events.Event{Topic: events.TopicHeartbeat, RunID: p.cfg.RunID, Pipeline: p.cfg.Policy.Name,
			Time: at, Properties: map[string]any{"visit": visit, "visits": ended}})
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			p.log.Warn("could not publish the heartbeat", "err", err)
			failing = true
		case err == nil && failing:
			p.log.Info("heartbeat published again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// setCurrent records the visit in flight for the heartbeat; "" ends it.
func (p *pipeline) setCurrent(visit string) {
	p.mu.Lock()
	if visit == "" && p.current != "" {
		p.ended++
	}
	p.current = visit
	p.mu.Unlock()
}

func (p *pipeline) requestStop(why string) {
	p.stopOnce.Do(func() {
		p.log.Info("stopping at the next visit boundary", "reason", why)
		if s, ok := p.cfg.Recorder.(StopRecorder); ok {
			s.RunStopped(why)
		}
		close(p.stopCh)
	})
}

func (p *pipeline) stopping() bool {
	select {
	case <-p.stopCh:
		return true
	default:
		return false
	}
}

func (p *pipeline) loop(ctx, triggerCtx context.Context) error {
	defer p.bcastStop()
	for !p.stopping() && ctx.Err() == nil {
		e, err := p.trigger.Next(triggerCtx)
		if err != nil {
			if triggerCtx.Err() != nil {
				return nil // stop asked for, or interrupted
			}
			return fmt.Errorf("harness: reading trigger topic: %w", err)
		}
		trig := &p.cfg.Policy.Trigger
		if !trig.Selects(e) {
			p.skip(e, "", "not selected by events.trigger.select")
			continue
		}
		switch e.Kind {
		case events.KindNoMoreData:
			p.log.Info("no more data: ending the run")
			return nil
		case events.KindShutdown:
			p.requestStop("shutdown event")
			return nil
		case "", events.KindData:
		default:
			p.drop(e, fmt.Sprintf("unknown kind %q", e.Kind))
			continue
		}
		if why := trig.malformed(e.Properties); why != "" {
			p.drop(e, why)
			continue
		}
		visit, ok := e.Visit()
		if !ok {
			p.drop(e, "no "+events.PropVisit+" property")
			continue
		}
		if err := CheckVisitID(visit); err != nil {
			p.drop(e, err.Error()) // it would go into paths and commands
			continue
		}
		if a, ok := p.cfg.Recorder.(VisitAdmitter); ok {
			run, why, err := a.AdmitVisit(visit)
			if err != nil {
				return fmt.Errorf("harness: admitting visit %s: %w", visit, err)
			}
			if !run {
				p.skip(e, visit, why)
				continue
			}
		}
		if b, ok := p.cfg.Recorder.(VisitBudget); ok {
			if why := b.TimeForVisit(visit); why != "" {
				p.requestStop(why)
				return nil
			}
		}
		if err := p.visit(ctx, visit, e.Properties); err != nil {
			return err
		}
	}
	return nil
}

// skip passes over an event that is well formed but not to be run: not
// selected by the policy, or (visit set) for a visit the recorder says
// not to run again.
func (p *pipeline) skip(e events.Event, visit, why string) {
	if visit != "" {
		p.log.Info("skipped a trigger event", "visit", visit, "reason", why)
	} else {
		p.log.Debug("skipped an event", "topic", e.Topic, "reason", why)
	}
	if s, ok := p.cfg.Recorder.(SkipRecorder); ok {
		s.EventSkipped(e.Topic, visit, why)
	}
}

func (p *pipeline) drop(e events.Event, why string) {
	p.log.Warn("dropped malformed event", "topic", e.Topic, "reason", why, "kind", e.Kind, "sender", e.Sender,
		"pipeline", e.Pipeline, "properties", e.Properties)
	if d, ok := p.cfg.Recorder.(DropRecorder); ok {
		d.EventDropped(e.Topic, why)
	}
}

func (p *pipeline) bcastStop() {
	if data, err := encodeVisit(visitMsg{Stop: true}); err == nil {
		if _, err := p.c.Bcast(0, data); err != nil {
			p.log.Error("could not tell the slices to stop", "err", err)
		}
	}
}

// visit runs one visit on the Pipeline. Only errors that must end the run
// (communication, recording) are returned; stage failures are recorded.
// A visit that such an error cuts short (a slice died: killed by the job's
// stop, or lost) is recorded as interrupted, to be run again.
func (p *pipeline) visit(ctx context.Context, visit string, props map[string]any) (err error) {
	p.setCurrent(visit)
	defer p.setCurrent("")
	start := time.Now()
	rec := p.cfg.Recorder
	if err := rec.VisitStarted(visit, start); err != nil {
		return fmt.Errorf("harness: recording visit %s: %w", visit, err)
	}
	ended := false
	defer func() {
		if err != nil && !ended {
			p.cutShort(visit, start, err)
		}
	}()
	data, err := encodeVisit(visitMsg{Visit: visit, Props: props})
	if err != nil {
		return err
	}
	if _, err := p.c.Bcast(0, data); err != nil {
		return err
	}
	cb := NewClipboard()
	cb.Put(KeyVisit, visit)
	for k, v := range props {
		if k != events.PropVisit {
			cb.Put(k, v)
		}
	}
	var (
		serialErr error
		pending   map[string]any // event properties not yet sent to the slices
		failedIDs map[string]bool
		nFailed   int
		firstFail string
		firstStop string // the first data ID whose program a stop signal ended
	)
	for _, b := range p.stages {
		t0 := time.Now()
		name := b.spec.Name
		if serialErr == nil && b.spec.Event != nil {
			evProps, err := p.waitEvent(ctx, b.spec.Event, visit)
			if err != nil {
				serialErr = fmt.Errorf("stage %q: %w", name, err)
			} else {
				for k, v := range evProps {
					if k == events.PropVisit {
						continue
					}
					cb.Put(k, v)
					if pending == nil {
						pending = map[string]any{}
					}
					pending[k] = v
				}
			}
		}
		if serialErr == nil && b.pre != nil {
			cx := p.context(ctx, visit, name, nil)
			if err := p.call(cx, "Preprocess", func() error { return b.pre.Preprocess(cx, cb) }); err != nil {
				serialErr = fmt.Errorf("stage %q: preprocess: %w", name, err)
			}
		}
		var outcomes []Outcome
		if b.proc != nil {
			msg := stageMsg{Skip: serialErr != nil}
			if !msg.Skip {
				msg.Props, msg.Shared, pending = pending, cb.takeShared(), nil
			}
			var data []byte
			if !msg.empty() {
				if data, err = encode(msg); err != nil {
					return err
				}
			}
			if _, err := p.c.Bcast(0, data); err != nil {
				return err
			}
			if msg.Skip {
				break
			}
			if b.spec.Exchange != nil {
				if err := p.pipelineExchange(); err != nil {
					return err
				}
			}
			parts, err := p.c.Gather(0, nil)
			if err != nil {
				return err
			}
			gathered := map[string][]any(nil)
			for rk := 1; rk < len(parts); rk++ {
				if len(parts[rk]) == 0 {
					continue
				}
				var rep sliceReport
				if err := decode(parts[rk], &rep); err != nil {
					return fmt.Errorf("harness: report of slice %d: %w", rk, err)
				}
				for _, f := range rep.Failures {
					if f.Stopped {
						if firstStop == "" {
							firstStop = fmt.Sprintf("stage %q, slice %d, data ID %s: %s", name, rk, f.DataID, f.Err)
						}
						continue
					}
					outcomes = append(outcomes, Outcome{Slice: rk, DataID: f.DataID, Err: f.Err})
					if failedIDs == nil {
						failedIDs = map[string]bool{}
					}
					failedIDs[f.DataID] = true
					nFailed++
					if firstFail == "" {
						firstFail = fmt.Sprintf("stage %q, slice %d, data ID %s: %s", name, rk, f.DataID, f.Err)
					}
					if err := p.cfg.Recorder.SliceFailed(SliceFailure{Visit: visit, Stage: name, Slice: rk, DataID: f.DataID, Err: f.Err}); err != nil {
						return fmt.Errorf("harness: recording a slice failure: %w", err)
					}
				}
				for _, s := range rep.Shared {
					outcomes = append(outcomes, Outcome{Slice: rk, DataID: s.DataID, Shared: s.Items})
					for k, v := range s.Items {
						if gathered == nil {
							gathered = map[string][]any{}
						}
						gathered[k] = append(gathered[k], v)
					}
				}
			}
			for k, vs := range gathered {
				cb.Put(k, vs)
			}
		}
		if serialErr == nil && b.post != nil {
			cx := p.context(ctx, visit, name, nil)
			cx.outcomes = outcomes
			if err := p.call(cx, "Postprocess", func() error { return b.post.Postprocess(cx, cb) }); err != nil {
				serialErr = fmt.Errorf("stage %q: postprocess: %w", name, err)
			}
		}
		if serialErr == nil {
			if err := rec.StageDone(visit, name, time.Since(t0)); err != nil {
				return fmt.Errorf("harness: recording stage %s of visit %s: %w", name, visit, err)
			}
		}
	}
	p.clearEarly(visit)

	res := VisitResult{FailedSlices: nFailed, Took: time.Since(start)}
	switch {
	case ctx.Err() != nil:
		res.Interrupted = true
		res.Err = "interrupted"
	case firstStop != "":
		// The job is being stopped, and a slice's program died of it:
		// run the visit again, as if the stop had come before it.
		res.Interrupted = true
		res.Err = "interrupted by a stop signal: " + firstStop
	case serialErr != nil:
		res.Failed, res.Err = true, serialErr.Error()
	case nFailed > 0 && p.sliceRuleFails(len(failedIDs)):
		res.Failed = true
		res.Err = fmt.Sprintf("%d of %d data IDs failed (failure rule %s); first: %s", len(failedIDs), p.totalIDs, p.cfg.Policy.Failure, firstFail)
	}
	ended = true
	if err := rec.VisitEnded(visit, res); err != nil {
		return fmt.Errorf("harness: recording the end of visit %s: %w", visit, err)
	}
	switch {
	case res.Interrupted:
		p.log.Warn("visit interrupted", "visit", visit, "took", res.Took)
	case res.Failed:
		p.log.Error("visit failed", "visit", visit, "err", res.Err, "took", res.Took)
	default:
		p.log.Info("visit done", "visit", visit, "failedSlices", nFailed, "took", res.Took)
	}
	return nil
}

// cutShort records a visit that err ended before its end as interrupted,
// as best it can: the run ends with err whatever happens here.
func (p *pipeline) cutShort(visit string, start time.Time, err error) {
	p.log.Warn("visit interrupted", "visit", visit, "err", err)
	res := VisitResult{Interrupted: true, Err: "interrupted: " + err.Error(), Took: time.Since(start)}
	if rerr := p.cfg.Recorder.VisitEnded(visit, res); rerr != nil {
		p.log.Error("could not record the visit as interrupted", "visit", visit, "err", rerr)
	}
}

func (p *pipeline) sliceRuleFails(failed int) bool {
	switch p.cfg.Policy.Failure {
	case Never:
		return false
	case AllSlices:
		return failed >= p.totalIDs
	default:
		return failed > 0
	}
}

// waitEvent waits for the next event on w.Topic for this visit (or naming
// no visit), up to w.Timeout. Events naming a later visit are kept for it.
func (p *pipeline) waitEvent(ctx context.Context, w *WaitSpec, visit string) (map[string]any, error) {
	if q := p.early[w.Topic][visit]; len(q) > 0 {
		e := q[0]
		p.early[w.Topic][visit] = q[1:]
		p.nEarly--
		return e.Properties, nil
	}
	wctx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	sub := p.waits[w.Topic]
	for {
		e, err := sub.Next(wctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				return nil, fmt.Errorf("no event on topic %q within %s", w.Topic, w.Timeout)
			}
			return nil, fmt.Errorf("waiting for topic %q: %w", w.Topic, err)
		}
		if !w.Selects(e) {
			p.skip(e, "", "not selected by the stage's event.select")
			continue
		}
		switch e.Kind {
		case events.KindShutdown:
			p.requestStop("shutdown event")
			continue
		case events.KindNoMoreData:
			continue
		case "", events.KindData:
		default:
			p.drop(e, fmt.Sprintf("unknown kind %q", e.Kind))
			continue
		}
		if why := w.malformed(e.Properties); why != "" {
			p.drop(e, why)
			continue
		}
		if v, ok := e.Visit(); ok && v != visit {
			p.keepEarly(w.Topic, v, e)
			continue
		}
		return e.Properties, nil
	}
}

func (p *pipeline) keepEarly(topic, visit string, e events.Event) {
	if p.nEarly >= maxEarly {
		p.log.Warn("dropped an event for another visit: too many kept", "topic", topic, "eventVisit", visit)
		return
	}
	if p.early[topic] == nil {
		p.early[topic] = map[string][]events.Event{}
	}
	p.early[topic][visit] = append(p.early[topic][visit], e)
	p.nEarly++
}

func (p *pipeline) clearEarly(visit string) {
	for _, m := range p.early {
		p.nEarly -= len(m[visit])
		delete(m, visit)
	}
}

// ---- Slice (ranks 1..N) ----

func (r *rank) sliceLoop(ctx context.Context, ids []mapper.DataID) error {
	var queue, next []*Clipboard
	for {
		data, err := r.c.Bcast(0, nil)
		if err != nil {
			return err
		}
		var vm visitMsg
		if err := decodeVisit(data, &vm); err != nil {
			return err
		}
		if vm.Stop {
			return nil
		}
		queue = queue[:0]
		for _, id := range ids {
			cb := NewClipboard()
			cb.dataID = id
			cb.Put(KeyVisit, vm.Visit)
			for k, v := range vm.Props {
				if k != events.PropVisit {
					cb.Put(k, v)
				}
			}
			cb.Put(KeyDataID, id)
			for k, v := range id {
				cb.Put(k, v)
			}
			queue = append(queue, cb)
		}
		for _, b := range r.parallel {
			data, err := r.c.Bcast(0, nil)
			if err != nil {
				return err
			}
			var sm stageMsg
			if err := decode(data, &sm); err != nil {
				return err
			}
			if sm.Skip {
				break
			}
			var rep sliceReport
			next = next[:0]
			for _, cb := range queue {
				for k, v := range sm.Props {
					cb.Put(k, v)
				}
				for k, v := range sm.Shared {
					cb.Put(k, v)
				}
				cx := r.context(ctx, vm.Visit, b.spec.Name, cb.dataID)
				if err := r.call(cx, "Process", func() error { return b.proc.Process(cx, cb) }); err != nil {
					if errors.Is(err, ErrKilled) && r.cfg.StopSignals.Arrived(StopGrace) {
						cx.Logger().Warn("slice stopped: its program was ended by the job's stop signal", "err", err)
						rep.Failures = append(rep.Failures, failureMsg{DataID: cb.dataID.String(), Err: err.Error(), Stopped: true})
						continue
					}
					cx.Logger().Error("slice failed", "err", err)
					rep.Failures = append(rep.Failures, failureMsg{DataID: cb.dataID.String(), Err: err.Error()})
					continue
				}
				if cx.emitCalled {
					next = append(next, cx.emitted...)
				} else {
					next = append(next, cb)
				}
			}
			if b.spec.Exchange != nil {
				if next, err = r.sliceExchange(b, vm.Visit, next, &rep); err != nil {
					return err
				}
			}
			for _, cb := range next {
				if sh := cb.takeShared(); sh != nil {
					rep.Shared = append(rep.Shared, sharedMsg{DataID: cb.dataID.String(), Items: sh})
				}
			}
			var out []byte
			if !rep.empty() {
				if out, err = encode(rep); err != nil {
					// A value that cannot cross: fail it here rather
					// than lose the whole run.
					rep.Shared = nil
					rep.Failures = append(rep.Failures, failureMsg{DataID: "", Err: err.Error()})
					if out, err = encode(rep); err != nil {
						return err
					}
				}
			}
			if _, err := r.c.Gather(0, out); err != nil {
				return err
			}
			queue, next = next, queue
		}
		// Release the visit's clipboards: nothing of it survives.
		clear(queue[:cap(queue)])
		clear(next[:cap(next)])
	}
}
