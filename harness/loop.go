package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness/comm"
	"github.com/dpsbatch/dpsbatch/mapper"
)

// config is what one rank needs to run a pipeline (RunOptions has the
// fields' story). Every rank of a run gets the same Policy, RunID and
// RunDir; Broker, Recorder, Stop and Heartbeat are the Pipeline's (rank 0).
type config struct {
	Policy *Policy
	RunID  string
	RunDir string // absolute; relative locations resolve against it
	Comm   comm.Comm
	Host   mapper.HostInfo // this rank's; Rank is set by Run
	Logger *slog.Logger    // nil discards

	Broker      events.Broker // Pipeline: trigger, waited-for and published events
	Recorder    Recorder      // Pipeline: progress; nil records nothing
	Stop        <-chan struct{}
	StopSignals *StopSignals
	Heartbeat   time.Duration
	FreezeDry   []string // stages captured at entry besides the policy's
}

// rankLoop runs the pipeline on one rank until no-more-data, a shutdown or
// an error: the Pipeline on rank 0, a Slice on every other. Every rank of
// the communicator calls it, each on its own goroutine (or process). A
// fatal error on any rank aborts the communicator so no rank waits forever.
func rankLoop(ctx context.Context, cfg config) (err error) {
	c := cfg.Comm
	r := newRank(cfg)
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
	if c.Rank() == 0 {
		return r.pipelineLoop(ctx)
	}
	r.setNeighbours(mapped)
	r.idKeys = boxKeys(ids)
	if r.concurrent {
		return r.flightLoop(ctx, ids)
	}
	return r.sliceLoop(ctx, ids)
}

// newRank is a rank's state before its stages are built: cfg with its
// defaults (a Recorder that records nothing, one whose calls are
// serialised with visits in flight), the run's names and locations, and
// the rank's logger.
func newRank(cfg config) *rank {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Recorder == nil {
		cfg.Recorder = nopRecorder{}
	}
	concurrent := cfg.Policy.InFlight > 1
	if concurrent {
		cfg.Recorder = &lockedRecorder{r: cfg.Recorder}
	}
	r := &rank{cfg: cfg, c: cfg.Comm, concurrent: concurrent, fz: newFreezer(cfg)}
	static := map[string]string{"run": cfg.RunID, "pipeline": cfg.Policy.Name, "pipelinedir": cfg.Policy.Dir}
	r.info = &runInfo{id: cfg.RunID, pipeline: cfg.Policy.Name, static: static, trigger: cfg.Policy.Trigger.Properties,
		locs: newLocations(cfg.RunDir, cfg.Policy.Locations, static), log: cfg.Logger.With(slog.String("run", cfg.RunID))}
	r.log = r.info.log
	if r.c.Rank() > 0 {
		r.log = r.log.With(slog.Int("slice", r.c.Rank()))
	} else {
		r.info.publish = cfg.Broker.Publish
	}
	return r
}

// setNeighbours is the end of step 3 on a Slice: each exchanging stage's
// neighbour ranks, worked out here for a ring, or as the Pipeline
// assigned them (mapped) for the mapper topology.
func (r *rank) setNeighbours(mapped []int) {
	for _, b := range r.parallel {
		switch x := b.spec.Exchange; {
		case x == nil:
		case x.Topology == topologyRing:
			b.neighbours = ringNeighbours(r.c.Rank(), r.c.Size()-1)
		case x.Topology == topologyMapper:
			b.neighbours = mapped
		}
	}
}

// rank is the state of one rank's loop.
type rank struct {
	cfg      config
	c        comm.Comm
	info     *runInfo
	log      *slog.Logger
	stages   []*built
	parallel []*built
	cx       Context // reused for every stage call on this rank, unless concurrent
	// concurrent: visits run concurrently (the policy's in_flight above
	// 1): every stage call gets a Context of its own, and stages not
	// declared safe for it are called one at a time (exclusive).
	concurrent bool
	fz         *freezer
	allIDs     []string // Pipeline: the data IDs assigned over all slices (mapper.DataID.String)
	// allDone: Pipeline: every data ID of allIDs done, the DataIDs of
	// every visit that ran them all without a failure (dataIDOutcomes),
	// one map for all such visits.
	allDone map[string]VisitOutcome
	// idKeys: Slice: the keys of each assigned data ID, in the order
	// of the data IDs, put on its clipboard every visit (visitClipboards).
	idKeys [][]idKey
}

// idKey is a key of a data ID and its value, made an `any` once for
// every visit's clipboard.
type idKey struct {
	key string
	val any
}

// boxKeys is the keys of each data ID of ids, sorted by key.
func boxKeys(ids []mapper.DataID) [][]idKey {
	out := make([][]idKey, len(ids))
	for i, id := range ids {
		for _, k := range slices.Sorted(maps.Keys(id)) {
			out[i] = append(out[i], idKey{k, id[k]})
		}
	}
	return out
}

type nopRecorder struct{}

func (nopRecorder) VisitStarted(string, time.Time) error          { return nil }
func (nopRecorder) StageDone(string, string, time.Duration) error { return nil }
func (nopRecorder) SliceFailed(SliceFailure) error                { return nil }
func (nopRecorder) VisitEnded(string, VisitResult) error          { return nil }

// context resets the reused Context for one call (a new one when visits
// run concurrently).
func (r *rank) context(ctx context.Context, visit, stage string, id mapper.DataID) *Context {
	cx := &r.cx
	if r.concurrent {
		cx = &Context{}
	}
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

// exclusive holds stage b for one call (or a Slice's queue) when visits
// run concurrently and b's type did not declare itself safe for it
// (Type.Concurrent), so b runs for one visit at a time on this rank. The
// returned function lets go.
func (r *rank) exclusive(b *built) (release func()) {
	if !r.concurrent || b.concurrent {
		return func() {}
	}
	b.mu.Lock()
	return b.mu.Unlock
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
		hosts, err := decodeHosts(all)
		if err != nil {
			return nil, nil, err
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
			r.keepAssigned(ids)
			r.logAssigned(ids)
		}
	}
	part, err := r.c.Scatter(0, parts)
	if err != nil {
		return nil, nil, err
	}
	if r.c.Rank() == 0 {
		return nil, nil, assignErr
	}
	return readAssignment(part)
}

// decodeHosts decodes the Slices' HostInfo from the gathered parts (the
// Pipeline's own, all[0], is not passed to the mapper).
func decodeHosts(all [][]byte) ([]mapper.HostInfo, error) {
	hosts := make([]mapper.HostInfo, 0, len(all)-1)
	for i := 1; i < len(all); i++ {
		var h mapper.HostInfo
		if err := decode(all[i], &h); err != nil {
			return nil, err
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// readAssignment decodes a Slice's assignMsg: its data IDs and neighbour
// ranks, or the Pipeline's error.
func readAssignment(part []byte) ([]mapper.DataID, []int, error) {
	var m assignMsg
	if err := decode(part, &m); err != nil {
		return nil, nil, err
	}
	if m.Err != "" {
		return nil, nil, fmt.Errorf("the Pipeline could not assign data: %s", m.Err)
	}
	return m.IDs, m.Neighbours, nil
}

// keepAssigned keeps, on the Pipeline, the data IDs the mapper assigned
// (allIDs) and the outcomes of a visit that did them all (allDone).
func (r *rank) keepAssigned(ids [][]mapper.DataID) {
	for _, s := range ids {
		for _, id := range s {
			r.allIDs = append(r.allIDs, id.String())
		}
	}
	r.allDone = make(map[string]VisitOutcome, len(r.allIDs))
	for _, id := range r.allIDs {
		r.allDone[id] = VisitDone
	}
}

// logAssigned notes the mapper's assignment, and warns when it leaves
// slices without a data ID: they sit idle for the whole run.
func (r *rank) logAssigned(ids [][]mapper.DataID) {
	r.log.Info("data assigned", "slices", len(ids), "dataIds", len(r.allIDs))
	idle := 0
	for _, s := range ids {
		if len(s) == 0 {
			idle++
		}
	}
	if idle > 0 {
		r.log.Warn("slices have no data ID and stay idle for the whole run: ask for as many slices as the mapper has data IDs",
			"idle", idle, "slices", len(ids), "dataIds", len(r.allIDs))
	}
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
	fly      *flight // with visits in flight (in_flight above 1); nil with one

	mu     sync.Mutex // guards flying and ended, read by the heartbeat
	flying []string   // the visits in flight, oldest first
	ended  int        // visits ended

	// spare: with one visit in flight, the clipboard of the visit before,
	// released at its end (step 13), for the next (visitClipboard).
	spare *Clipboard
	// run: with one visit in flight, the visit's state (visit).
	run visitRun
}

const maxEarly = 10000

// pipelineLoop is the Pipeline's side from step 4 of the protocol
// (protocol.go) to the end: it subscribes, watches for stop requests,
// beats its heartbeat if asked, and runs the visit loop.
func (r *rank) pipelineLoop(ctx context.Context) error {
	p := &pipeline{rank: r, waits: map[string]events.Subscription{}, early: map[string]map[string][]events.Event{}, stopCh: make(chan struct{})}
	b := r.cfg.Broker
	if b == nil {
		return errors.New("harness: the Pipeline needs an event broker")
	}
	closeSubs, err := p.subscribe(ctx, b)
	defer closeSubs()
	if err != nil {
		return err
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

	loop := p.loop
	if r.concurrent {
		loop = p.flyLoop
	}
	if err := loop(ctx, triggerCtx); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ErrInterrupted
	}
	return nil
}

// subscribe is step 4's subscriptions: the trigger topic and each topic a
// stage waits for, before the first visit, so nothing published meanwhile
// is missed. closeAll closes what it opened, in reverse order, also after
// an error.
func (p *pipeline) subscribe(ctx context.Context, b events.Broker) (closeAll func(), err error) {
	var subs []events.Subscription
	closeAll = func() {
		for i := len(subs) - 1; i >= 0; i-- {
			subs[i].Close()
		}
	}
	if p.trigger, err = b.Subscribe(ctx, p.cfg.Policy.Trigger.Topic, p.cfg.RunID); err != nil {
		return closeAll, fmt.Errorf("harness: subscribe to trigger topic: %w", err)
	}
	subs = append(subs, p.trigger)
	for _, st := range p.stages {
		if w := st.spec.Event; w != nil && p.waits[w.Topic] == nil {
			if p.waits[w.Topic], err = b.Subscribe(ctx, w.Topic, p.cfg.RunID); err != nil {
				return closeAll, fmt.Errorf("harness: subscribe to %q: %w", w.Topic, err)
			}
			subs = append(subs, p.waits[w.Topic])
		}
	}
	return closeAll, nil
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
	if u, ok := p.cfg.Recorder.(EventRecorder); ok {
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
	hr, _ := p.cfg.Recorder.(EventRecorder)
	tick := time.NewTicker(every)
	defer tick.Stop()
	failing := false
	for {
		visit, ended := p.oldest()
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

// enter and leave keep the visits in flight for the heartbeat, which
// names the oldest (oldest).
func (p *pipeline) enter(visit string) {
	p.mu.Lock()
	p.flying = append(p.flying, visit)
	p.mu.Unlock()
}

func (p *pipeline) leave(visit string) {
	p.mu.Lock()
	if i := slices.Index(p.flying, visit); i >= 0 {
		p.flying = slices.Delete(p.flying, i, i+1)
		p.ended++
	}
	p.mu.Unlock()
}

// oldest is the oldest visit in flight ("" between visits) and the
// number of visits ended.
func (p *pipeline) oldest() (visit string, ended int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.flying) > 0 {
		visit = p.flying[0]
	}
	return visit, p.ended
}

func (p *pipeline) requestStop(why string) {
	p.stopOnce.Do(func() {
		p.log.Info("stopping at the next visit boundary", "reason", why)
		if s, ok := p.cfg.Recorder.(EventRecorder); ok {
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

// loop is the Pipeline's visit loop, steps 5 to 14 of the protocol
// (protocol.go): it runs each visit the trigger topic names until the
// loop is to end, and then (step 14) tells the Slices to stop, once,
// however it ends.
func (p *pipeline) loop(ctx, triggerCtx context.Context) error {
	defer p.bcastStop()
	for {
		visit, props, err := p.nextVisit(ctx, triggerCtx)
		if err != nil || visit == "" {
			return err
		}
		if err := p.visit(ctx, visit, props); err != nil {
			return err
		}
	}
}

// nextVisit is step 5, the trigger: it reads trigger events until one
// names a visit to run, and returns its ID and properties; "" when the
// loop is to end (a stop asked for, an interrupt, no more data, a
// shutdown event, or no time left for the visit).
func (p *pipeline) nextVisit(ctx, triggerCtx context.Context) (string, map[string]any, error) {
	for !p.stopping() && ctx.Err() == nil {
		e, err := p.trigger.Next(triggerCtx)
		if err != nil {
			if triggerCtx.Err() != nil {
				return "", nil, nil // stop asked for, or interrupted
			}
			return "", nil, fmt.Errorf("harness: reading trigger topic: %w", err)
		}
		visit, end := p.triggerVisit(e)
		if end {
			return "", nil, nil
		}
		if visit == "" {
			continue
		}
		run, err := p.admit(e, visit)
		if err != nil {
			return "", nil, err
		}
		if !run {
			continue
		}
		if b, ok := p.cfg.Recorder.(VisitGate); ok {
			if why := b.TimeForVisit(visit); why != "" {
				p.requestStop(why)
				return "", nil, nil
			}
		}
		return visit, e.Properties, nil
	}
	return "", nil, nil
}

// triggerVisit is step 5 for one trigger event: the visit it names, or ""
// when it is passed over (not selected, of an unknown kind, malformed,
// with no or an unsafe visit ID). end says it ends the loop (no more
// data, a shutdown event).
func (p *pipeline) triggerVisit(e events.Event) (visit string, end bool) {
	trig := &p.cfg.Policy.Trigger
	if !trig.Selects(e) {
		p.skip(e, "", "not selected by events.trigger.select")
		return "", false
	}
	switch e.Kind {
	case events.KindNoMoreData:
		p.log.Info("no more data: ending the run")
		return "", true
	case events.KindShutdown:
		p.requestStop("shutdown event")
		return "", true
	case "", events.KindData:
	default:
		p.drop(e, fmt.Sprintf("unknown kind %q", e.Kind))
		return "", false
	}
	if why := trig.malformed(e.Properties); why != "" {
		p.drop(e, why)
		return "", false
	}
	visit, ok := e.Visit()
	if !ok {
		p.drop(e, "no "+events.PropVisit+" property")
		return "", false
	}
	if err := CheckVisitID(visit); err != nil {
		p.drop(e, err.Error()) // it would go into paths and commands
		return "", false
	}
	return visit, false
}

// admit is the end of step 5: it asks the VisitGate, if the Recorder
// has one, whether to run the visit, and passes over e if not.
func (p *pipeline) admit(e events.Event, visit string) (bool, error) {
	a, ok := p.cfg.Recorder.(VisitGate)
	if !ok {
		return true, nil
	}
	run, why, err := a.AdmitVisit(visit)
	if err != nil {
		return false, fmt.Errorf("harness: admitting visit %s: %w", visit, err)
	}
	if !run {
		p.skip(e, visit, why)
	}
	return run, nil
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
	if s, ok := p.cfg.Recorder.(EventRecorder); ok {
		s.EventSkipped(e.Topic, visit, why)
	}
}

func (p *pipeline) drop(e events.Event, why string) {
	p.log.Warn("dropped malformed event", "topic", e.Topic, "reason", why, "kind", e.Kind, "sender", e.Sender,
		"pipeline", e.Pipeline, "properties", e.Properties)
	if d, ok := p.cfg.Recorder.(EventRecorder); ok {
		d.EventDropped(e.Topic, why)
	}
}

func (p *pipeline) bcastStop() {
	if data, err := encodeVisit(visitMsg{Stop: true}); err == nil {
		if err := p.bcast(flightStop, "", data); err != nil {
			p.log.Error("could not tell the slices to stop", "err", err)
		}
	}
}

// bcast is every Bcast of the Pipeline's visit loop: data as it is with
// one visit in flight; with several, wrapped in a flightMsg that names
// the step and the visit (only the driver calls it then).
func (p *pipeline) bcast(step flightStep, visit string, data []byte) error {
	if p.fly != nil {
		data = encodeFlight(flightMsg{Step: step, Visit: visit, Body: data})
	}
	_, err := p.c.Bcast(0, data)
	return err
}

// visitRun is one visit on the Pipeline, from its start (step 6) to its
// end (step 13).
type visitRun struct {
	id      string
	start   time.Time
	mark    time.Duration // since start: when the last stage ended (stageTook)
	cb      *Clipboard
	started bool // VisitStarted recorded
	ended   bool // VisitEnded recorded (or tried)

	serialErr error          // the visit failed on the Pipeline
	capture   string         // serialErr's capture, if one was written
	pending   map[string]any // event properties not yet sent to the slices
	failedIDs map[string]bool
	stopped   map[string]bool // data IDs whose program a stop signal ended
	skip      map[string]bool // data IDs done by an earlier attempt, left out
	nFailed   int
	firstFail string
	firstStop string                      // the first data ID whose program a stop signal ended
	outputs   map[string]map[string]int64 // declared files made, by data ID and path (addOutputs)
	// begun: the visitMsg began the first stage (canBegin): its steps 7
	// and 8 are done.
	begun bool
	// inStage: the Slices have gathered a stage's reports and wait for
	// the stageMsg of a later one (one visit in flight); an error that
	// ends the visit then sends them Skip (releaseSlices).
	inStage bool
}

// visit runs one visit on the Pipeline, steps 6 to 13 of the protocol.
// Only errors that must end the run (communication, recording) are
// returned; stage failures are recorded. A visit that such an error cuts
// short (a slice died: killed by the job's stop, or lost) is recorded as
// interrupted, to be run again.
func (p *pipeline) visit(ctx context.Context, visit string, props map[string]any) error {
	p.enter(visit)
	defer p.leave(visit)
	v := &p.run // one at a time: its state is new for each visit
	*v = visitRun{id: visit, start: time.Now()}
	if err := p.begin(v, props); err != nil {
		return err
	}
	return p.runVisit(ctx, v)
}

// begin is step 6, startVisit, for a visit that ends the run if it
// fails: a visit recorded as started is then recorded interrupted.
func (p *pipeline) begin(v *visitRun, props map[string]any) error {
	err := p.startVisit(v, props)
	if err != nil && v.started {
		p.cutShort(v, err)
	}
	return err
}

// runVisit is steps 7 to 13 of a visit that has started, on the Pipeline:
// its stages in policy order, then its end. An error cuts it short.
func (p *pipeline) runVisit(ctx context.Context, v *visitRun) (err error) {
	defer func() {
		if err != nil && !v.ended {
			p.releaseSlices(v)
			p.cutShort(v, err)
		}
	}()
	v.mark = time.Since(v.start)
	sent := v.begun // the stage's stageMsg went out ahead (the visitMsg's Begin, sendAhead)
	for i, b := range p.stages {
		var skipped bool
		sent, skipped, err = p.runStage(ctx, v, b, p.after(i), sent)
		if err != nil {
			return err
		}
		if skipped {
			break
		}
	}
	p.clearEarly(v.id)
	return p.endVisit(ctx, v)
}

// addOutputs keeps the declared files a stage's data IDs made; one made
// again by a later stage keeps the later size. A data ID that fails in a
// later stage keeps what its earlier stages made.
func (v *visitRun) addOutputs(made []outputMsg) {
	for _, o := range made {
		if v.outputs == nil {
			v.outputs = map[string]map[string]int64{}
		}
		if v.outputs[o.DataID] == nil {
			v.outputs[o.DataID] = map[string]int64{}
		}
		v.outputs[o.DataID][o.Path] = o.Size
	}
}

// releaseSlices sends the Slices Skip when they wait for a stageMsg of
// visit v that an error (a Recorder's, between stages) will not send:
// they leave the visit, as after a failure on the Pipeline, and are then
// where the Stop that ends the run finds them.
func (p *pipeline) releaseSlices(v *visitRun) {
	if !v.inStage {
		return
	}
	v.inStage = false
	data, err := encode(stageMsg{Skip: true})
	if err == nil {
		err = p.bcast(flightStage, v.id, data)
	}
	if err != nil {
		p.log.Error("could not tell the slices to leave the visit", "visit", v.id, "err", err)
	}
}

// startVisit is step 6: it records VisitStarted, Bcasts the visitMsg and
// makes the Pipeline's clipboard.
func (p *pipeline) startVisit(v *visitRun, props map[string]any) error {
	if err := p.cfg.Recorder.VisitStarted(v.id, v.start); err != nil {
		return fmt.Errorf("harness: recording visit %s: %w", v.id, err)
	}
	v.started = true
	done, err := p.doneDataIDs(v.id)
	if err != nil {
		return err
	}
	v.skip = p.known(done)
	v.begun = p.canBegin()
	data, err := encodeVisit(visitMsg{Visit: v.id, Props: props, Done: done, Begin: v.begun})
	if err != nil {
		return err
	}
	if err := p.bcast(flightStart, v.id, data); err != nil {
		return err
	}
	v.cb = p.visitClipboard()
	v.cb.Put(KeyVisit, v.id)
	for k, val := range props {
		if k != events.PropVisit {
			v.cb.Put(k, val)
		}
	}
	return nil
}

// visitClipboard is a new visit's clipboard on the Pipeline: with one
// visit in flight, the previous visit's, emptied (reset), which spares a
// map a visit on the path between two visits; with several, a new one.
func (p *pipeline) visitClipboard() *Clipboard {
	if p.fly != nil {
		return newClipboard()
	}
	if p.spare == nil {
		p.spare = newClipboard()
	} else {
		p.spare.reset()
	}
	return p.spare
}

// runStage runs stage b of the visit on the Pipeline, steps 7 to 12:
// wait for its event and Preprocess (7); if it is parallel, Bcast its
// stageMsg (8), Exchange if it exchanges (10) and gather the Slices'
// reports (11); then Postprocess and StageDone (12). skipped says the
// stageMsg had Skip: the visit is left at once (step 13).
//
// sent says that steps 7 and 8 of b were already done by the stage
// before it (sendAhead); next is the stage after b, nil for the last.
// nextSent says that runStage has done next's steps 7 and 8 itself.
func (p *pipeline) runStage(ctx context.Context, v *visitRun, b, next *built, sent bool) (nextSent, skipped bool, err error) {
	if !sent {
		p.waitStageEvent(ctx, v, b)
		p.preprocess(ctx, v, b)
	}
	var outcomes []Outcome
	if b.proc != nil {
		if !sent {
			if skipped, err := p.sendStage(v); err != nil || skipped {
				return false, skipped, err
			}
		}
		if outcomes, err = p.collectStage(v, b); err != nil {
			return false, false, err
		}
		if p.canSendAhead(v, b, next) {
			return true, false, p.sendAhead(v, b, next)
		}
	}
	return false, false, p.postprocess(ctx, v, b, outcomes)
}

// opensAtOnce says whether stage b's steps 7 and 8 are its Bcast alone:
// it is parallel, with no event to wait for and no Preprocess, so that
// nothing runs on the Pipeline before its stageMsg goes out. canBegin
// and canSendAhead send it early, with one visit in flight.
func opensAtOnce(b *built) bool {
	return b != nil && b.proc != nil && b.pre == nil && b.spec.Event == nil
}

// canBegin says whether a visit's visitMsg can begin its first stage
// (Begin): the first stage opens at once, and its stageMsg would be empty
// (nothing shared is on a new visit's clipboard, no event properties
// wait). The Slices are spared one Bcast per visit.
func (p *pipeline) canBegin() bool {
	return p.fly == nil && len(p.stages) > 0 && opensAtOnce(p.stages[0])
}

// canSendAhead says whether next's stageMsg can go out before b's step
// 12: when b has no Postprocess and next opens at once, so that steps 12
// of b and 7 of next do nothing to the visit but record b's StageDone,
// and next's stageMsg is the same before it as after it.
func (p *pipeline) canSendAhead(v *visitRun, b, next *built) bool {
	return p.fly == nil && v.serialErr == nil && b.post == nil && opensAtOnce(next)
}

// sendAhead is step 12 of b and steps 7 and 8 of next when canSendAhead:
// the Slices get next's stageMsg first and b's StageDone is recorded
// while they run next, so that the Recorder's time is not spent on the
// path every stage's synchronisation waits for. If recording fails, next
// is collected before the error ends the visit, so that the Slices are
// where they would have been had the error come before next began.
func (p *pipeline) sendAhead(v *visitRun, b, next *built) error {
	took := v.stageTook()
	if _, err := p.broadcastStage(v); err != nil {
		return err
	}
	err := p.recordStage(v, b.spec.Name, took)
	if err != nil {
		if _, cerr := p.collect(v, next); cerr != nil {
			return errors.Join(err, cerr)
		}
	}
	return err
}

// after is the stage after stage i, nil for the last.
func (p *pipeline) after(i int) *built {
	if i+1 < len(p.stages) {
		return p.stages[i+1]
	}
	return nil
}

// waitStageEvent is the first half of step 7: unless the visit has failed
// on the Pipeline, it waits for stage b's event, if it has an event
// section, and puts its properties on the clipboard and in the pending
// properties for the next stageMsg. A failure fails the visit.
func (p *pipeline) waitStageEvent(ctx context.Context, v *visitRun, b *built) {
	if v.serialErr != nil || b.spec.Event == nil {
		return
	}
	evProps, err := p.waitEvent(ctx, b.spec.Event, v.id)
	if err != nil {
		v.serialErr = fmt.Errorf("stage %q: %w", b.spec.Name, err)
		return
	}
	for k, val := range evProps {
		if k == events.PropVisit {
			continue
		}
		v.cb.Put(k, val)
		if v.pending == nil {
			v.pending = map[string]any{}
		}
		v.pending[k] = val
	}
}

// preprocess is the second half of step 7: stage b's Preprocess, unless
// the visit has failed on the Pipeline. A failure fails the visit.
func (p *pipeline) preprocess(ctx context.Context, v *visitRun, b *built) {
	if v.serialErr != nil || b.pre == nil {
		return
	}
	defer p.exclusive(b)()
	cx := p.context(ctx, v.id, b.spec.Name, nil)
	v.cb.Put(KeyDataIDs, p.dataIDsItem(v))
	in := p.fz.snapshot(v.cb)
	p.fz.entryCall(cx, b, in, "Preprocess")
	if err := p.call(cx, "Preprocess", func() error { return b.pre.Preprocess(cx, v.cb) }); err != nil {
		v.serialErr = fmt.Errorf("stage %q: preprocess: %w", b.spec.Name, err)
		v.capture = p.fz.failed(cx, b, in, "Preprocess", err)
	}
}

// broadcastStage is step 8: it Bcasts a parallel stage's stageMsg, with
// Skip if the visit has failed on the Pipeline (and then says skipped),
// else with the pending event properties and the shared items changed
// since the last one.
func (p *pipeline) broadcastStage(v *visitRun) (skipped bool, err error) {
	msg := stageMsg{Skip: v.serialErr != nil}
	if !msg.Skip {
		msg.Props, msg.Shared, v.pending = v.pending, v.cb.takeShared(), nil
	}
	var data []byte
	if !msg.empty() {
		if data, err = encode(msg); err != nil {
			return false, err
		}
	}
	v.inStage = false
	if err := p.bcast(flightStage, v.id, data); err != nil {
		return false, err
	}
	return msg.Skip, nil
}

// sendStage is step 8 for runStage: broadcastStage, which the driver
// makes with visits in flight.
func (p *pipeline) sendStage(v *visitRun) (skipped bool, err error) {
	if p.fly == nil {
		return p.broadcastStage(v)
	}
	a := p.fly.ask(v, nil)
	return a.skipped, a.err
}

// collectStage is steps 10 and 11 for runStage: collect, which the
// driver makes with visits in flight.
func (p *pipeline) collectStage(v *visitRun, b *built) ([]Outcome, error) {
	if p.fly == nil {
		return p.collect(v, b)
	}
	a := p.fly.ask(v, b)
	return a.outcomes, a.err
}

// collect is steps 10 and 11 on the Pipeline, for parallel stage b of
// visit v: Exchange if b exchanges, then gather.
func (p *pipeline) collect(v *visitRun, b *built) ([]Outcome, error) {
	if b.spec.Exchange != nil {
		if err := p.pipelineExchange(); err != nil {
			return nil, err
		}
	}
	return p.gather(v, b)
}

// gather is step 11 on the Pipeline: it gathers the Slices' reports for
// parallel stage b, reads them in rank order, records their failures,
// puts each shared key on the clipboard as its values by data ID (and
// the keys b declares shared that no data ID sent, empty), and returns
// the failures and shared items as the stage's outcomes for Postprocess.
func (p *pipeline) gather(v *visitRun, b *built) ([]Outcome, error) {
	parts, err := p.c.Gather(0, nil)
	if err != nil {
		return nil, err
	}
	v.inStage = p.fly == nil && b != p.parallel[len(p.parallel)-1]
	var outcomes []Outcome
	var shared byDataID // made for the first shared item
	for rk := 1; rk < len(parts); rk++ {
		if len(parts[rk]) == 0 {
			continue
		}
		var rep sliceReport
		if err := decode(parts[rk], &rep); err != nil {
			return nil, fmt.Errorf("harness: report of slice %d: %w", rk, err)
		}
		if outcomes, err = p.recordFailures(v, b.spec.Name, rk, rep.Failures, outcomes); err != nil {
			return nil, err
		}
		for _, s := range rep.Shared {
			outcomes = append(outcomes, Outcome{Slice: rk, DataID: s.DataID, Shared: s.Items})
			if shared == nil {
				shared = byDataID{}
			}
			shared.add(s.DataID, s.Items)
		}
		v.addOutputs(rep.Outputs)
	}
	shared.putOn(v.cb, b.shares)
	return outcomes, nil
}

// recordFailures is part of step 11: it records slice rk's failures in
// stage name (Recorder.SliceFailed) and appends them to outcomes; a
// Stopped failure is only noted, for the visit's end.
func (p *pipeline) recordFailures(v *visitRun, name string, rk int, failures []failureMsg, outcomes []Outcome) ([]Outcome, error) {
	for _, f := range failures {
		if f.Stopped {
			if v.stopped == nil {
				v.stopped = map[string]bool{}
			}
			v.stopped[f.DataID] = true
			if v.firstStop == "" {
				v.firstStop = fmt.Sprintf("stage %q, slice %d, data ID %s: %s", name, rk, f.DataID, f.Err)
			}
			continue
		}
		outcomes = append(outcomes, Outcome{Slice: rk, DataID: f.DataID, Err: f.Err})
		if v.failedIDs == nil {
			v.failedIDs = map[string]bool{}
		}
		v.failedIDs[f.DataID] = true
		v.nFailed++
		if v.firstFail == "" {
			v.firstFail = fmt.Sprintf("stage %q, slice %d, data ID %s: %s", name, rk, f.DataID, f.Err)
		}
		if err := p.cfg.Recorder.SliceFailed(SliceFailure{Visit: v.id, Stage: name, Slice: rk, DataID: f.DataID, Err: f.Err, Capture: f.Capture}); err != nil {
			return outcomes, fmt.Errorf("harness: recording a slice failure: %w", err)
		}
	}
	return outcomes, nil
}

// postprocess is step 12: unless the visit has failed on the Pipeline,
// stage b's Postprocess with the stage's outcomes, then StageDone with
// the stage's time (stageTook). A Postprocess failure fails the visit.
func (p *pipeline) postprocess(ctx context.Context, v *visitRun, b *built, outcomes []Outcome) error {
	name := b.spec.Name
	if v.serialErr == nil && b.post != nil {
		release := p.exclusive(b)
		cx := p.context(ctx, v.id, name, nil)
		cx.outcomes = outcomes
		v.cb.Put(KeyDataIDs, p.dataIDsItem(v))
		in := p.fz.snapshot(v.cb)
		if b.pre == nil && b.proc == nil {
			p.fz.entryCall(cx, b, in, "Postprocess")
		}
		if err := p.call(cx, "Postprocess", func() error { return b.post.Postprocess(cx, v.cb) }); err != nil {
			v.serialErr = fmt.Errorf("stage %q: postprocess: %w", name, err)
			v.capture = p.fz.failed(cx, b, in, "Postprocess", err)
		}
		release()
	}
	took := v.stageTook()
	if v.serialErr != nil {
		return nil
	}
	return p.recordStage(v, name, took)
}

// recordStage records the end of stage name of the visit (StageDone).
func (p *pipeline) recordStage(v *visitRun, name string, took time.Duration) error {
	if err := p.cfg.Recorder.StageDone(v.id, name, took); err != nil {
		return fmt.Errorf("harness: recording stage %s of visit %s: %w", name, v.id, err)
	}
	return nil
}

// stageTook is the time of the stage that ends now: since the previous
// stage ended, or since runVisit began the first. One clock reading per
// stage, and a monotonic one (half the cost of time.Now): the stage loop
// reads the clock on the path every stage's synchronisation waits for.
func (v *visitRun) stageTook() time.Duration {
	now := time.Since(v.start)
	took := now - v.mark
	v.mark = now
	return took
}

// endVisit is step 13 on the Pipeline: it decides the visit's outcome,
// records VisitEnded and logs it.
func (p *pipeline) endVisit(ctx context.Context, v *visitRun) error {
	res := p.outcome(ctx, v)
	res.DataIDs = p.dataIDOutcomes(v, res.Outcome)
	res.Outputs = v.outputs
	v.ended = true
	if err := p.cfg.Recorder.VisitEnded(v.id, res); err != nil {
		return fmt.Errorf("harness: recording the end of visit %s: %w", v.id, err)
	}
	switch res.Outcome {
	case VisitInterrupted:
		p.log.Warn("visit interrupted", "visit", v.id, "took", res.Took)
	case VisitFailed:
		p.log.Error("visit failed", "visit", v.id, "err", res.Err, "took", res.Took)
	default:
		// Asked first: the arguments cost allocations whether or not
		// the line is written, on the path between two visits.
		if p.log.Enabled(ctx, slog.LevelInfo) {
			p.log.Info("visit done", "visit", v.id, "failedSlices", v.nFailed, "took", res.Took)
		}
	}
	return nil
}

// outcome is the visit's result (step 13), first match wins: interrupted
// (the run's context was cancelled), interrupted (a Stopped failure),
// failed (a failure on the Pipeline), failed (the failure rule over the
// failed data IDs), done.
func (p *pipeline) outcome(ctx context.Context, v *visitRun) VisitResult {
	res := VisitResult{Outcome: VisitDone, FailedSlices: v.nFailed, Took: time.Since(v.start)}
	switch {
	case ctx.Err() != nil:
		res.Outcome, res.Err = VisitInterrupted, "interrupted"
	case v.firstStop != "":
		// The job is being stopped, and a slice's program died of it:
		// run the visit again, as if the stop had come before it.
		res.Outcome, res.Err = VisitInterrupted, "interrupted by a stop signal: "+v.firstStop
	case v.serialErr != nil && v.nFailed > 0:
		// The Pipeline's failure may be the data IDs' (a later stage
		// missing what they would have made): name theirs first.
		res.Outcome, res.Capture = VisitFailed, v.capture
		res.Err = fmt.Sprintf("%d of %d data IDs failed; first: %s; then %s", len(v.failedIDs), p.ranIDs(v), v.firstFail, v.serialErr)
	case v.serialErr != nil:
		res.Outcome, res.Err, res.Capture = VisitFailed, v.serialErr.Error(), v.capture
	case v.nFailed > 0 && p.sliceRuleFails(len(v.failedIDs), p.ranIDs(v)):
		res.Outcome = VisitFailed
		res.Err = fmt.Sprintf("%d of %d data IDs failed (failure rule %s); first: %s", len(v.failedIDs), p.ranIDs(v), p.cfg.Policy.Failure, v.firstFail)
	}
	return res
}

// cutShort records a visit that err ended before its end as interrupted,
// as best it can: the run ends with err whatever happens here.
func (p *pipeline) cutShort(v *visitRun, err error) {
	p.log.Warn("visit interrupted", "visit", v.id, "err", err)
	res := VisitResult{Outcome: VisitInterrupted, Err: "interrupted: " + err.Error(), Took: time.Since(v.start)}
	res.DataIDs = p.dataIDOutcomes(v, res.Outcome)
	if rerr := p.cfg.Recorder.VisitEnded(v.id, res); rerr != nil {
		p.log.Error("could not record the visit as interrupted", "visit", v.id, "err", rerr)
	}
}

func (p *pipeline) sliceRuleFails(failed, ran int) bool {
	switch p.cfg.Policy.Failure {
	case never:
		return false
	case allSlices:
		return failed >= ran
	default:
		return failed > 0
	}
}

// waitEvent waits for the next event on w.Topic for this visit (or naming
// no visit), up to w.Timeout. Events naming a later visit are kept for it.
func (p *pipeline) waitEvent(ctx context.Context, w *waitSpec, visit string) (map[string]any, error) {
	if p.fly != nil {
		return p.takeEvent(ctx, w, visit)
	}
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
			return nil, waitFailed(ctx, w, err)
		}
		if !p.selects(w, e) || !p.waitedKind(e) || !p.wellFormed(w, e) {
			continue
		}
		if v, ok := e.Visit(); ok && v != visit {
			p.keepEarly(w.Topic, v, e)
			continue
		}
		return e.Properties, nil
	}
}

// waitFailed is the error of a wait for w's event that ended with err:
// its timeout, or the run's end.
func waitFailed(ctx context.Context, w *waitSpec, err error) error {
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("no event on topic %q within %s", w.Topic, w.Timeout)
	}
	return fmt.Errorf("waiting for topic %q: %w", w.Topic, err)
}

// selects says whether w's select takes e, and passes over e if not.
func (p *pipeline) selects(w *waitSpec, e events.Event) bool {
	if !w.Selects(e) {
		p.skip(e, "", "not selected by the stage's event.select")
		return false
	}
	return true
}

// waitedKind says whether e, on a topic a stage waits for, is of a kind
// a stage takes; a shutdown event stops the run, a no-more-data event is
// passed over, an unknown kind dropped.
func (p *pipeline) waitedKind(e events.Event) bool {
	switch e.Kind {
	case events.KindShutdown:
		p.requestStop("shutdown event")
		return false
	case events.KindNoMoreData:
		return false
	case "", events.KindData:
		return true
	default:
		p.drop(e, fmt.Sprintf("unknown kind %q", e.Kind))
		return false
	}
}

// wellFormed says whether e carries what w asks for, and drops it if not.
func (p *pipeline) wellFormed(w *waitSpec, e events.Event) bool {
	if why := w.malformed(e.Properties); why != "" {
		p.drop(e, why)
		return false
	}
	return true
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
	if p.fly != nil {
		p.fly.box.forget(visit)
		return
	}
	for _, m := range p.early {
		p.nEarly -= len(m[visit])
		delete(m, visit)
	}
}

// ---- Slice (ranks 1..N) ----

// sliceLoop is a Slice's visit loop, steps 6 to 14 of the protocol
// (protocol.go) from its side: it waits for each visit, runs the visit's
// parallel stages on its data IDs, and returns at the Stop visitMsg.
func (r *rank) sliceLoop(ctx context.Context, ids []mapper.DataID) error {
	var queue, next, own []*Clipboard // own: the visit's clipboards, reused by the next
	for {
		vm, err := r.awaitVisit()
		if err != nil || vm.Stop {
			return err
		}
		queue = r.visitClipboards(queue[:0], own, vm, ids)
		own = append(own[:0], queue...)
		for i, b := range r.parallel {
			var skipped bool
			begun := i == 0 && vm.Begin
			next, skipped, err = r.sliceStage(ctx, vm.Visit, b, begun, queue, next[:0])
			if err != nil {
				return err
			}
			if skipped {
				break
			}
			queue, next = next, queue
		}
		// Step 13: release the visit's clipboards: nothing of it survives.
		clear(queue[:cap(queue)])
		clear(next[:cap(next)])
	}
}

// awaitVisit is step 6 (or 14) on a Slice: it receives the next visitMsg.
func (r *rank) awaitVisit() (visitMsg, error) {
	data, err := r.c.Bcast(0, nil)
	if err != nil {
		return visitMsg{}, err
	}
	return decodeVisit(data)
}

// visitClipboards is the rest of step 6 on a Slice: it appends to queue
// one clipboard per data ID, holding visitId, the other trigger
// properties, dataId and each key of the data ID. The clipboards of
// reuse, released by the visit before (step 13), are emptied and used
// first: a map less per data ID and visit with one visit in flight.
func (r *rank) visitClipboards(queue, reuse []*Clipboard, vm visitMsg, ids []mapper.DataID) []*Clipboard {
	var done map[string]bool
	if len(vm.Done) > 0 {
		done = make(map[string]bool, len(vm.Done))
		for _, id := range vm.Done {
			done[id] = true
		}
	}
	visit := any(vm.Visit) // made an any once for every clipboard
	for i, id := range ids {
		if len(done) > 0 && done[id.String()] {
			continue // done by an earlier attempt of the visit
		}
		var cb *Clipboard
		if n := len(queue); n < len(reuse) {
			cb = reuse[n]
			cb.reset()
		} else {
			cb = newClipboard()
		}
		cb.dataID = id
		cb.Put(KeyVisit, visit)
		for k, v := range vm.Props {
			if k != events.PropVisit {
				cb.Put(k, v)
			}
		}
		cb.Put(KeyDataID, id)
		for _, kv := range r.idKeys[i] {
			cb.Put(kv.key, kv.val)
		}
		queue = append(queue, cb)
	}
	return queue
}

// sliceStage runs parallel stage b of the visit on a Slice, steps 8 to
// 11: receive the stageMsg (8; begun: the visitMsg began the stage, and
// its stageMsg is empty), Process the queue into next (9), Exchange if
// the stage exchanges (10), and report (11). It returns the next stage's
// queue; skipped says the stageMsg had Skip: the visit is left at once
// (step 13).
func (r *rank) sliceStage(ctx context.Context, visit string, b *built, begun bool, queue, next []*Clipboard) (_ []*Clipboard, skipped bool, err error) {
	var sm stageMsg
	if !begun {
		if sm, err = r.receiveStage(); err != nil || sm.Skip {
			return next, sm.Skip, err
		}
	}
	var rep sliceReport
	next = r.process(ctx, visit, b, sm, queue, next, &rep)
	if b.spec.Exchange != nil {
		if next, err = r.sliceExchange(b, visit, next, &rep); err != nil {
			return next, false, err
		}
	}
	return next, false, r.report(next, &rep)
}

// receiveStage is step 8 on a Slice: it receives the stage's stageMsg.
func (r *rank) receiveStage() (stageMsg, error) {
	data, err := r.c.Bcast(0, nil)
	if err != nil {
		return stageMsg{}, err
	}
	return decodeStage(data)
}

// process is step 9: it puts the stageMsg's properties and shared items
// on each clipboard of queue and runs b's Process on it, in order,
// appending to next what goes on (the clipboard, or what it emitted)
// and to rep's failures each clipboard that failed.
func (r *rank) process(ctx context.Context, visit string, b *built, sm stageMsg, queue, next []*Clipboard, rep *sliceReport) []*Clipboard {
	for _, cb := range queue {
		for k, v := range sm.Props {
			cb.Put(k, v)
		}
		for k, v := range sm.Shared {
			cb.Put(k, v)
		}
		cx := r.context(ctx, visit, b.spec.Name, cb.dataID)
		in := r.fz.snapshot(cb)
		r.fz.entryCall(cx, b, in, "Process")
		if err := r.call(cx, "Process", func() error { return b.proc.Process(cx, cb) }); err != nil {
			if errors.Is(err, ErrKilled) && r.cfg.StopSignals.Arrived(stopGrace) {
				cx.Logger().Warn("slice stopped: its program was ended by the job's stop signal", "err", err)
				rep.Failures = append(rep.Failures, failureMsg{DataID: cb.dataID.String(), Err: err.Error(), Stopped: true})
				continue
			}
			cx.Logger().Error("slice failed", "err", err)
			rep.Failures = append(rep.Failures, failureMsg{DataID: cb.dataID.String(), Err: err.Error(), Capture: r.fz.failed(cx, b, in, "Process", err)})
			continue
		}
		if cx.emitCalled {
			next = append(next, cx.emitted...)
		} else {
			next = append(next, cb)
		}
		if len(cx.outputs) > 0 {
			rep.Outputs = appendOutputs(rep.Outputs, cb.dataID.String(), cx.outputs)
		}
	}
	return next
}

// appendOutputs adds the files a call for data ID id made (madeOutputs)
// to a report's outputs, in path order.
func appendOutputs(out []outputMsg, id string, made map[string]int64) []outputMsg {
	for _, p := range slices.Sorted(maps.Keys(made)) {
		out = append(out, outputMsg{DataID: id, Path: p, Size: made[p]})
	}
	return out
}

// report is step 11 on a Slice: it adds the shared items next's
// clipboards set in the stage to rep and sends it by Gather. A report
// that cannot be encoded loses its shared items and gains a failure with
// an empty data ID instead.
func (r *rank) report(next []*Clipboard, rep *sliceReport) error {
	for _, cb := range next {
		if sh := cb.takeShared(); sh != nil {
			rep.Shared = append(rep.Shared, sharedMsg{DataID: cb.dataID.String(), Items: sh})
		}
	}
	var out []byte
	if !rep.empty() {
		var err error
		if out, err = encode(*rep); err != nil {
			// A value that cannot cross: fail it here rather than lose
			// the whole run.
			rep.Shared = nil
			rep.Failures = append(rep.Failures, failureMsg{DataID: "", Err: err.Error()})
			if out, err = encode(*rep); err != nil {
				return err
			}
		}
	}
	_, err := r.c.Gather(0, out)
	return err
}
