package harness

// Visits in flight: the loops that run several visits at once when the
// policy's in_flight is above 1. protocol.go ("Visits in flight") has the
// design; here are the Pipeline's driver, feeder and visit goroutines,
// the box that matches waited-for events to their visits, the lock on the
// Recorder, and the Slice's loop.

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/mapper"
)

// flight is the Pipeline's state with visits in flight. The driver (the
// Pipeline's loop goroutine, in drive) is the one goroutine that makes
// collective calls; it hears the feeder and the visit goroutines on in.
type flight struct {
	in       chan note
	more     chan struct{} // the driver's leave to the feeder to read one more visit
	box      *eventBox
	stopFeed context.CancelFunc

	// The driver's own.
	feeding  bool   // the feeder has not ended
	granted  bool   // the feeder has leave to read a visit
	free     int    // in_flight less the visits in flight and granted
	active   int    // visit goroutines running
	collects []*ask // collects asked for, oldest first
	err      error  // the first error that ends the run

	mu      sync.Mutex
	running map[string]chan struct{} // by visit ID: closed when that visit ends
}

// note is one thing the driver hears: a visit to start (visit, props:
// from the feeder), the feeder's end (fed, with its error), a visit
// goroutine's ask (a), or its end (v, with its error).
type note struct {
	visit string
	props map[string]any
	fed   bool
	a     *ask
	v     *visitRun
	err   error
}

// ask is a visit goroutine's request to the driver: Bcast v's next
// stageMsg (b nil: step 8), or collect v's parallel stage b (steps 10
// and 11).
type ask struct {
	v     *visitRun
	b     *built
	reply chan answer
}

type answer struct {
	skipped  bool
	outcomes []Outcome
	err      error
}

func newFlight(k int, stopFeed context.CancelFunc) *flight {
	return &flight{in: make(chan note), more: make(chan struct{}, 1), box: newEventBox(),
		stopFeed: stopFeed, feeding: true, free: k, running: map[string]chan struct{}{}}
}

// flyLoop is the Pipeline's visit loop with visits in flight, steps 5 to
// 14 of the protocol: the feeder reads triggers while fewer than
// in_flight visits run, each visit runs its stages on a goroutine of its
// own (runVisit), and this goroutine, the driver, makes every collective
// call; at the end (step 14), once every visit in flight has ended, it
// Bcasts the Stop, however the loop ends.
func (p *pipeline) flyLoop(ctx, triggerCtx context.Context) error {
	feedCtx, stopFeed := context.WithCancel(triggerCtx)
	defer stopFeed()
	p.fly = newFlight(p.cfg.Policy.InFlight, stopFeed)
	defer p.bcastStop()
	stopReading := p.readWaited(ctx)
	defer stopReading()
	go p.feed(ctx, feedCtx, p.fly)
	return p.drive(ctx, p.fly)
}

// drive is the driver: it serves what it hears until the feeder has
// ended and no visit is in flight. Starts and stageMsgs go first; while
// visits wait for a collect and nothing else is asked for, it polls the
// Slices and collects what every Slice has processed (collectReady), so
// it never waits for a Slice's Process longer than pollWait.
func (p *pipeline) drive(ctx context.Context, f *flight) error {
	for f.feeding || f.active > 0 {
		f.grant()
		select {
		case n := <-f.in:
			p.hear(ctx, f, n)
			continue
		default:
		}
		if len(f.collects) > 0 {
			p.collectReady(f)
			continue
		}
		p.hear(ctx, f, <-f.in)
	}
	return f.err
}

// grant gives the feeder leave to read one more visit, when fewer than
// in_flight are in flight.
func (f *flight) grant() {
	if f.feeding && !f.granted && f.free > 0 && f.err == nil {
		f.granted = true
		f.free--
		f.more <- struct{}{}
	}
}

// hear is the driver's answer to one note.
func (p *pipeline) hear(ctx context.Context, f *flight, n note) {
	switch {
	case n.a != nil && n.a.b == nil:
		p.serveStage(f, n.a)
	case n.a != nil:
		f.collects = append(f.collects, n.a)
	case n.v != nil:
		f.active--
		f.free++
		f.fail(n.err)
	case n.fed:
		f.granted, f.feeding = false, false
		f.fail(n.err)
	default:
		f.granted = false
		p.launch(ctx, f, n.visit, n.props)
	}
}

// fail keeps the first error that ends the run and stops the feeder.
// Visits in flight then get it in answer to their asks.
func (f *flight) fail(err error) {
	if err != nil && f.err == nil {
		f.err = err
		f.stopFeed()
	}
}

// launch is step 6 for the feeder's next visit (begin), after which the
// visit runs its stages on a goroutine of its own. Once the run is
// ending or a stop was asked for (while the feeder waited for a visit of
// the same ID), the visit is not started: it stays to be run.
func (p *pipeline) launch(ctx context.Context, f *flight, visit string, props map[string]any) {
	v := &visitRun{id: visit, start: time.Now()}
	started := f.err == nil && !p.stopping()
	if started {
		p.enter(visit)
		if err := p.begin(v, props); err != nil {
			p.leave(visit)
			f.fail(err)
			started = false
		}
	}
	if !started {
		f.release(visit)
		f.free++
		return
	}
	f.active++
	go func() {
		err := p.runVisit(ctx, v)
		p.leave(visit)
		f.release(visit)
		f.in <- note{v: v, err: err}
	}()
}

// serveStage is step 8 for an ask: broadcastStage, unless the run is
// ending.
func (p *pipeline) serveStage(f *flight, a *ask) {
	if f.err != nil {
		a.reply <- answer{err: f.err}
		return
	}
	skipped, err := p.broadcastStage(a.v)
	f.fail(err)
	a.reply <- answer{skipped: skipped, err: err}
}

// collectReady polls the Slices (pipeline.poll) and collects, oldest
// first, the visits waiting for a collect that every Slice has
// processed; once the run is ending, it answers them all with its error.
func (p *pipeline) collectReady(f *flight) {
	var ready map[string]bool
	if f.err == nil {
		var err error
		ready, err = p.poll(f.collects)
		f.fail(err)
	}
	waiting := f.collects[:0]
	for _, a := range f.collects {
		if f.err == nil && !ready[a.v.id] {
			waiting = append(waiting, a)
			continue
		}
		p.serveCollect(f, a)
	}
	clear(f.collects[len(waiting):])
	f.collects = waiting
}

// poll is the flightPoll step: it Bcasts the poll and gathers from each
// Slice the visits it has processed the running stage of; it returns
// those of asks every Slice named.
func (p *pipeline) poll(asks []*ask) (map[string]bool, error) {
	if err := p.bcast(flightPoll, "", nil); err != nil {
		return nil, err
	}
	parts, err := p.c.Gather(0, nil)
	if err != nil {
		return nil, err
	}
	named := map[string]int{}
	for rk := 1; rk < len(parts); rk++ {
		ids, err := decodeIDs(parts[rk])
		if err != nil {
			return nil, fmt.Errorf("harness: poll answer of slice %d: %w", rk, err)
		}
		for _, id := range ids {
			named[id]++
		}
	}
	ready := map[string]bool{}
	for _, a := range asks {
		ready[a.v.id] = named[a.v.id] == len(parts)-1
	}
	return ready, nil
}

// serveCollect is steps 10 and 11 for a collect asked for: the flightMsg
// that announces it, then collect; unless the run is ending.
func (p *pipeline) serveCollect(f *flight, a *ask) {
	if f.err != nil {
		a.reply <- answer{err: f.err}
		return
	}
	err := p.bcast(flightCollect, a.v.id, nil)
	var outcomes []Outcome
	if err == nil {
		outcomes, err = p.collect(a.v, a.b)
	}
	f.fail(err)
	a.reply <- answer{outcomes: outcomes, err: err}
}

// ask sends a visit goroutine's request to the driver and waits for the
// answer.
func (f *flight) ask(v *visitRun, b *built) answer {
	a := &ask{v: v, b: b, reply: make(chan answer, 1)}
	f.in <- note{a: a}
	return <-a.reply
}

// feed is the feeder, on a goroutine of its own: whenever the driver
// gives it leave (a visit fewer than in_flight is in flight), it reads
// the next visit to run (step 5: nextVisit, the VisitGate included) and
// hands it to the driver, once a visit of the same ID still in flight
// has ended (claim); when the loop is to end it tells the driver, once.
func (p *pipeline) feed(ctx, feedCtx context.Context, f *flight) {
	for {
		select {
		case <-f.more:
		case <-feedCtx.Done():
			f.in <- note{fed: true}
			return
		}
		visit, props, err := p.nextVisit(ctx, feedCtx)
		if err != nil || visit == "" {
			f.in <- note{fed: true, err: err}
			return
		}
		f.claim(visit)
		f.in <- note{visit: visit, props: props}
	}
}

// claim marks visit in flight, after waiting for a visit of the same ID
// in flight to end: the Slices and the events box know a visit by its ID.
func (f *flight) claim(visit string) {
	for {
		f.mu.Lock()
		ended, busy := f.running[visit]
		if !busy {
			f.running[visit] = make(chan struct{})
		}
		f.mu.Unlock()
		if !busy {
			return
		}
		<-ended
	}
}

// release ends claim's mark of visit.
func (f *flight) release(visit string) {
	f.mu.Lock()
	close(f.running[visit])
	delete(f.running, visit)
	f.mu.Unlock()
}

// ---- events waited for, with visits in flight ----

// eventBox holds, with visits in flight, the events of the topics stages
// wait for: a reader per topic (readTopic) files each under the visit it
// names ("" for none) until a stage of that visit takes it (takeEvent).
// It keeps at most maxEarly events; a visit's are forgotten at its end.
// As with one visit in flight, a topic is read only while a stage waits
// there (demand): what nobody waits for stays with the broker, for the
// visit that will, in this job or the next one.
type eventBox struct {
	mu      sync.Mutex
	kept    map[string]map[string][]events.Event // by topic, by visit; oldest first
	n       int
	arrived map[string]chan struct{} // by topic: closed when an event is filed there
	failed  map[string]error         // by topic: why its reader stopped
	demands map[string]*demand       // by topic
}

// demand is how many stages wait on a topic: on is closed when the first
// starts waiting, off when the last stops; then both are made anew.
type demand struct {
	n       int
	on, off chan struct{}
}

func newEventBox() *eventBox {
	return &eventBox{kept: map[string]map[string][]events.Event{}, arrived: map[string]chan struct{}{}, failed: map[string]error{},
		demands: map[string]*demand{}}
}

// demand is topic's; the caller holds x.mu.
func (x *eventBox) demand(topic string) *demand {
	d := x.demands[topic]
	if d == nil {
		d = &demand{on: make(chan struct{}), off: make(chan struct{})}
		x.demands[topic] = d
	}
	return d
}

// want tells topic's reader that a stage waits there, until done.
func (x *eventBox) want(topic string) (done func()) {
	x.mu.Lock()
	d := x.demand(topic)
	if d.n++; d.n == 1 {
		close(d.on)
	}
	x.mu.Unlock()
	return func() {
		x.mu.Lock()
		if d.n--; d.n == 0 {
			close(d.off)
			d.on, d.off = make(chan struct{}), make(chan struct{})
		}
		x.mu.Unlock()
	}
}

// wanted waits until a stage waits on topic, and returns a context that
// ends with ctx or once no stage waits there any more.
func (x *eventBox) wanted(ctx context.Context, topic string) (context.Context, context.CancelFunc) {
	x.mu.Lock()
	d := x.demand(topic)
	on, off := d.on, d.off
	x.mu.Unlock()
	wctx, cancel := context.WithCancel(ctx)
	select {
	case <-on:
	case <-ctx.Done():
		return wctx, cancel
	}
	go func() {
		select {
		case <-off:
			cancel()
		case <-wctx.Done():
		}
	}()
	return wctx, cancel
}

// readWaited starts a reader for each topic a stage waits for; stop ends
// them and waits for them.
func (p *pipeline) readWaited(ctx context.Context) (stop func()) {
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for topic, sub := range p.waits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.readTopic(rctx, topic, sub)
		}()
	}
	return func() { cancel(); wg.Wait() }
}

// readTopic is one topic's reader: while a stage waits on the topic
// (wanted), it files each event of a kind stages take (waitedKind: a
// shutdown event stops the run) until its subscription ends, and then
// fails the waits on the topic.
func (p *pipeline) readTopic(ctx context.Context, topic string, sub events.Subscription) {
	for {
		wctx, cancel := p.fly.box.wanted(ctx, topic)
		var e events.Event
		err := wctx.Err() // a Subscription may hand out what it holds regardless
		if err == nil {
			e, err = sub.Next(wctx)
		}
		cancel()
		if err != nil && wctx.Err() != nil && ctx.Err() == nil {
			continue // no stage waits there any more
		}
		if err != nil {
			p.fly.box.stop(topic, fmt.Errorf("waiting for topic %q: %w", topic, err))
			return
		}
		if p.waitedKind(e) {
			p.fly.box.file(p.log, topic, e)
		}
	}
}

func (x *eventBox) file(log *slog.Logger, topic string, e events.Event) {
	visit, _ := e.Visit()
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.n >= maxEarly {
		log.Warn("dropped an event for another visit: too many kept", "topic", topic, "eventVisit", visit)
		return
	}
	if x.kept[topic] == nil {
		x.kept[topic] = map[string][]events.Event{}
	}
	x.kept[topic][visit] = append(x.kept[topic][visit], e)
	x.n++
	x.wake(topic)
}

func (x *eventBox) stop(topic string, err error) {
	x.mu.Lock()
	x.failed[topic] = err
	x.wake(topic)
	x.mu.Unlock()
}

// wake tells the stages waiting on topic that something changed there.
func (x *eventBox) wake(topic string) {
	if ch := x.arrived[topic]; ch != nil {
		close(ch)
		delete(x.arrived, topic)
	}
}

// forget drops what the box holds for visit, at its end.
func (x *eventBox) forget(visit string) {
	x.mu.Lock()
	for _, byVisit := range x.kept {
		x.n -= len(byVisit[visit])
		delete(byVisit, visit)
	}
	x.mu.Unlock()
}

// takeEvent is waitEvent with visits in flight: the first event filed
// for visit on w's topic, else the first naming no visit, that w selects
// and that carries what w asks for (pick passes over or drops the
// others), waiting up to w.Timeout for one to be filed.
func (p *pipeline) takeEvent(ctx context.Context, w *waitSpec, visit string) (map[string]any, error) {
	wctx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	var unwanted func()
	defer func() {
		if unwanted != nil {
			unwanted()
		}
	}()
	for {
		e, arrived, err := p.fly.box.pick(p, w, visit)
		switch {
		case err != nil:
			return nil, err
		case e != nil:
			return e.Properties, nil
		}
		if unwanted == nil {
			unwanted = p.fly.box.want(w.Topic)
		}
		select {
		case <-arrived:
		case <-wctx.Done():
			return nil, waitFailed(ctx, w, wctx.Err())
		}
	}
}

// pick takes the event takeEvent looks for, if the box has it; if not,
// it returns the reader's error, or a channel closed when the topic has
// news.
func (x *eventBox) pick(p *pipeline, w *waitSpec, visit string) (*events.Event, <-chan struct{}, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	byVisit := x.kept[w.Topic]
	for _, key := range []string{visit, ""} {
		for len(byVisit[key]) > 0 {
			e := byVisit[key][0]
			byVisit[key] = byVisit[key][1:]
			x.n--
			if p.selects(w, e) && p.wellFormed(w, e) {
				return &e, nil, nil
			}
		}
		delete(byVisit, key)
	}
	if err := x.failed[w.Topic]; err != nil {
		return nil, nil, err
	}
	ch := x.arrived[w.Topic]
	if ch == nil {
		ch = make(chan struct{})
		x.arrived[w.Topic] = ch
	}
	return nil, ch, nil
}

// ---- the Recorder, with visits in flight ----

// lockedRecorder serialises the calls to a Recorder and its optional
// extras with visits in flight, when the driver, the feeder, the visit
// goroutines and the event readers all report: the Recorder hears one
// call at a time, as it does with one visit in flight, each visit's in
// the order Recorder says. Heartbeat, which it hears concurrently
// anyway, passes straight through. What the Recorder does not implement
// of EventRecorder and VisitGate answers as its absence would.
type lockedRecorder struct {
	mu sync.Mutex
	r  Recorder
}

func (l *lockedRecorder) lock() (unlock func()) {
	l.mu.Lock()
	return l.mu.Unlock
}

func (l *lockedRecorder) VisitStarted(v string, at time.Time) error {
	defer l.lock()()
	return l.r.VisitStarted(v, at)
}

func (l *lockedRecorder) StageDone(v, stage string, took time.Duration) error {
	defer l.lock()()
	return l.r.StageDone(v, stage, took)
}

func (l *lockedRecorder) SliceFailed(f SliceFailure) error {
	defer l.lock()()
	return l.r.SliceFailed(f)
}

func (l *lockedRecorder) VisitEnded(v string, res VisitResult) error {
	defer l.lock()()
	return l.r.VisitEnded(v, res)
}

func (l *lockedRecorder) events(fn func(EventRecorder)) {
	if e, ok := l.r.(EventRecorder); ok {
		defer l.lock()()
		fn(e)
	}
}

func (l *lockedRecorder) EventDropped(topic, why string) {
	l.events(func(e EventRecorder) { e.EventDropped(topic, why) })
}

func (l *lockedRecorder) EventSkipped(topic, visit, why string) {
	l.events(func(e EventRecorder) { e.EventSkipped(topic, visit, why) })
}

func (l *lockedRecorder) EventsUndecodable(n int) {
	l.events(func(e EventRecorder) { e.EventsUndecodable(n) })
}

func (l *lockedRecorder) RunStopped(why string) {
	l.events(func(e EventRecorder) { e.RunStopped(why) })
}

func (l *lockedRecorder) Heartbeat(at time.Time, visit string) {
	if e, ok := l.r.(EventRecorder); ok {
		e.Heartbeat(at, visit)
	}
}

func (l *lockedRecorder) AdmitVisit(v string) (bool, string, error) {
	g, ok := l.r.(VisitGate)
	if !ok {
		return true, "", nil
	}
	defer l.lock()()
	return g.AdmitVisit(v)
}

func (l *lockedRecorder) TimeForVisit(v string) string {
	g, ok := l.r.(VisitGate)
	if !ok {
		return ""
	}
	defer l.lock()()
	return g.TimeForVisit(v)
}

func (l *lockedRecorder) DoneDataIDs(v string) ([]string, error) {
	g, ok := l.r.(VisitGate)
	if !ok {
		return nil, nil
	}
	defer l.lock()()
	return g.DoneDataIDs(v)
}

var (
	_ Recorder      = (*lockedRecorder)(nil)
	_ EventRecorder = (*lockedRecorder)(nil)
	_ VisitGate     = (*lockedRecorder)(nil)
)

// ---- Slice, with visits in flight ----

// pollWait is how long a Slice may hold its answer to a poll while none
// of its visits' running stages has processed its queue: the longest the
// driver waits for a Slice instead of serving the visits.
const pollWait = 5 * time.Millisecond

// sliceFlight is a Slice's visits in flight.
type sliceFlight struct {
	open map[string]*sliceVisit
	// processed is nudged when a stage has processed a visit's queue.
	processed chan struct{}
}

// sliceVisit is one visit in flight on a Slice.
type sliceVisit struct {
	id    string
	at    int          // index in rank.parallel of the stage running, or next
	queue []*Clipboard // the stage's input
	next  []*Clipboard // what the stage running passes on
	rep   sliceReport
	done  chan struct{} // closed when the stage running has processed its queue; nil between stages
}

// flightLoop is a Slice's loop with visits in flight, steps 6 to 14 from
// its side: it receives each flightMsg and does what it announces: a
// start makes the visit's clipboards (openVisit), a stage starts Process
// on the visit's queue and goes on at once (startStage), a poll says
// which visits' stages have been processed (answerPoll), a collect
// exchanges and reports (collectStage), and the Stop ends the loop once
// no Process runs.
func (r *rank) flightLoop(ctx context.Context, ids []mapper.DataID) error {
	sf := &sliceFlight{open: map[string]*sliceVisit{}, processed: make(chan struct{}, 1)}
	defer sf.settle()
	for {
		m, err := r.awaitFlight()
		if err != nil {
			return err
		}
		switch m.Step {
		case flightStop:
			return nil
		case flightStart:
			err = r.openVisit(sf, m, ids)
		case flightStage:
			err = r.startStage(ctx, sf, m)
		case flightPoll:
			err = r.answerPoll(sf)
		case flightCollect:
			err = r.collectStage(sf, m)
		}
		if err != nil {
			return err
		}
	}
}

// awaitFlight receives the next flightMsg.
func (r *rank) awaitFlight() (flightMsg, error) {
	data, err := r.c.Bcast(0, nil)
	if err != nil {
		return flightMsg{}, err
	}
	return decodeFlight(data)
}

// settle waits for the Process of every visit still running one.
func (sf *sliceFlight) settle() {
	for _, sv := range sf.open {
		if sv.done != nil {
			<-sv.done
		}
	}
}

// visit is the visit m is about.
func (sf *sliceFlight) visit(m flightMsg) (*sliceVisit, error) {
	sv := sf.open[m.Visit]
	if sv == nil {
		return nil, fmt.Errorf("harness: a message for visit %s, which is not in flight on this slice", m.Visit)
	}
	return sv, nil
}

// openVisit is step 6 for a flightStart: the visit's clipboards
// (visitClipboards). With no parallel stage nothing of it is kept.
func (r *rank) openVisit(sf *sliceFlight, m flightMsg, ids []mapper.DataID) error {
	vm, err := decodeVisit(m.Body)
	if err != nil {
		return err
	}
	if sf.open[m.Visit] != nil {
		return fmt.Errorf("harness: visit %s started while in flight", m.Visit)
	}
	if vm.Begin {
		return fmt.Errorf("harness: visit %s: a visit in flight cannot begin its first stage with its start", m.Visit)
	}
	if len(r.parallel) > 0 {
		sf.open[m.Visit] = &sliceVisit{id: m.Visit, queue: r.visitClipboards(nil, nil, vm, ids)}
	}
	return nil
}

// startStage is steps 8 and 9 for a flightStage: with Skip the visit is
// left (step 13); otherwise Process runs on the visit's queue on a
// goroutine of its own, for one visit at a time if the stage's type is
// not declared concurrent (exclusive).
func (r *rank) startStage(ctx context.Context, sf *sliceFlight, m flightMsg) error {
	sv, err := sf.visit(m)
	if err != nil {
		return err
	}
	sm, err := decodeStage(m.Body)
	if err != nil {
		return err
	}
	if sm.Skip {
		delete(sf.open, sv.id)
		return nil
	}
	if sv.done != nil {
		return fmt.Errorf("harness: visit %s: a stage started before the last one was collected", sv.id)
	}
	b := r.parallel[sv.at]
	sv.rep, sv.next, sv.done = sliceReport{}, nil, make(chan struct{})
	go func() {
		defer sf.nudge()
		defer close(sv.done)
		defer r.exclusive(b)()
		sv.next = r.process(ctx, sv.id, b, sm, sv.queue, nil, &sv.rep)
	}()
	return nil
}

func (sf *sliceFlight) nudge() {
	select {
	case sf.processed <- struct{}{}:
	default:
	}
}

// answerPoll is the flightPoll step on a Slice: it sends by Gather the
// visits whose running stage has processed its queue, once there is one
// or pollWait has passed.
func (r *rank) answerPoll(sf *sliceFlight) error {
	select {
	case <-sf.processed: // an old nudge: look again below
	default:
	}
	ids, running := sf.ready()
	if len(ids) == 0 && running {
		t := time.NewTimer(pollWait)
		select {
		case <-sf.processed:
		case <-t.C:
		}
		t.Stop()
		ids, _ = sf.ready()
	}
	_, err := r.c.Gather(0, encodeIDs(ids))
	return err
}

// ready lists the visits whose running stage has processed its queue,
// and says whether any other is running.
func (sf *sliceFlight) ready() (ids []string, running bool) {
	for id, sv := range sf.open {
		if sv.done == nil {
			continue
		}
		select {
		case <-sv.done:
			ids = append(ids, id)
		default:
			running = true
		}
	}
	return ids, running
}

// collectStage is steps 10 and 11 for a flightCollect: once the visit's
// Process has run, Exchange if the stage exchanges, and report. After
// the visit's last parallel stage the visit is left (step 13).
func (r *rank) collectStage(sf *sliceFlight, m flightMsg) error {
	sv, err := sf.visit(m)
	if err != nil {
		return err
	}
	if sv.done == nil {
		return fmt.Errorf("harness: visit %s: a collect with no stage running", sv.id)
	}
	<-sv.done
	sv.done = nil
	if b := r.parallel[sv.at]; b.spec.Exchange != nil {
		if sv.next, err = r.sliceExchange(b, sv.id, sv.next, &sv.rep); err != nil {
			return err
		}
	}
	if err := r.report(sv.next, &sv.rep); err != nil {
		return err
	}
	sv.queue, sv.next = sv.next, nil
	if sv.at++; sv.at == len(r.parallel) {
		delete(sf.open, sv.id)
	}
	return nil
}
