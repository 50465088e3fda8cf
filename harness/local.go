package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness/comm"
	"github.com/dpsbatch/dpsbatch/mapper"
)

// runPipeline runs rank 0 of a run: it publishes
// the visits on cfg.Broker (an in-memory broker when nil) unless the caller
// feeds them, records progress in a Summary (and cfg.Recorder, when set),
// and turns the outcome into the run's error: ErrVisitsFailed,
// ErrInterrupted when a stop left visits unrun, or Run's own error.
func runPipeline(ctx context.Context, cfg config, feed bool, visits []Visit) (*Summary, error) {
	start := time.Now()
	if cfg.Broker == nil {
		mem := events.NewMemory()
		defer mem.Close()
		cfg.Broker = mem
	}
	if !feed {
		if err := publishVisits(ctx, cfg.Broker, cfg.Policy.Trigger.Topic, cfg.RunID, visits); err != nil {
			cfg.Comm.Abort(err) // the slices are waiting for the first visit
			return nil, err
		}
	}
	sum := newSummary()
	if cfg.Recorder != nil {
		cfg.Recorder = teeRecorder{sum, cfg.Recorder}
	} else {
		cfg.Recorder = sum
	}
	err := rankLoop(ctx, cfg)
	sum.Elapsed = time.Since(start)
	switch {
	case err != nil:
		return sum, err
	case sum.Failed > 0:
		return sum, fmt.Errorf("%w: %d of %d visits", ErrVisitsFailed, sum.Failed, sum.Visits)
	case sum.DataIDs[VisitFailed] > 0:
		return sum, fmt.Errorf("%w: %d data IDs failed (their visits carried on)", ErrVisitsFailed, sum.DataIDs[VisitFailed])
	case !feed && sum.Stopped != "" && sum.Done+sum.Failed < len(visits):
		return sum, fmt.Errorf("%w: %s after %d of %d visits", ErrInterrupted, sum.Stopped, sum.Done+sum.Failed, len(visits))
	}
	return sum, nil
}

// runWorld runs fn on every endpoint of a local communicator of size
// ranks, each on its own goroutine, closes the endpoints, and returns the
// error that tells the outcome: rank 0's, unless rank 0 was only aborted
// and another rank's error is the cause.
func runWorld(size int, fn func(comm.Comm) error) error {
	eps := comm.NewLocal(size)
	errs := make([]error, size)
	var wg sync.WaitGroup
	for r, c := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = fn(c)
			c.Close()
		}()
	}
	wg.Wait()
	first := errs[0]
	for _, err := range errs[1:] {
		if err != nil && (first == nil || errors.Is(first, comm.ErrAborted) && !errors.Is(err, comm.ErrAborted)) {
			first = err
		}
	}
	return first
}

// publishVisits publishes one trigger event per visit on topic, then
// no-more-data, so that a Pipeline runs them all and ends.
func publishVisits(ctx context.Context, b events.Broker, topic, runID string, vs []Visit) error {
	for _, v := range vs {
		if err := b.Publish(ctx, v.Event(topic, runID)); err != nil {
			return fmt.Errorf("harness: publishing visit %s: %w", v.ID, err)
		}
	}
	if err := b.Publish(ctx, events.Event{Topic: topic, RunID: runID, Kind: events.KindNoMoreData}); err != nil {
		return fmt.Errorf("harness: publishing no-more-data: %w", err)
	}
	return nil
}

// teeRecorder reports to two recorders, the first one first.
type teeRecorder struct{ a, b Recorder }

func (t teeRecorder) VisitStarted(v string, at time.Time) error {
	return errors.Join(t.a.VisitStarted(v, at), t.b.VisitStarted(v, at))
}
func (t teeRecorder) StageDone(v, s string, d time.Duration) error {
	return errors.Join(t.a.StageDone(v, s, d), t.b.StageDone(v, s, d))
}
func (t teeRecorder) SliceFailed(f SliceFailure) error {
	return errors.Join(t.a.SliceFailed(f), t.b.SliceFailed(f))
}
func (t teeRecorder) VisitEnded(v string, r VisitResult) error {
	return errors.Join(t.a.VisitEnded(v, r), t.b.VisitEnded(v, r))
}
func (t teeRecorder) EventDropped(topic, why string) {
	t.events(func(r EventRecorder) { r.EventDropped(topic, why) })
}
func (t teeRecorder) EventsUndecodable(n int) {
	t.events(func(r EventRecorder) { r.EventsUndecodable(n) })
}
func (t teeRecorder) EventSkipped(topic, visit, why string) {
	t.events(func(r EventRecorder) { r.EventSkipped(topic, visit, why) })
}
func (t teeRecorder) Heartbeat(at time.Time, visit string) {
	t.events(func(r EventRecorder) { r.Heartbeat(at, visit) })
}
func (t teeRecorder) RunStopped(why string) {
	t.events(func(r EventRecorder) { r.RunStopped(why) })
}

// events tells each recorder that is an EventRecorder, in order.
func (t teeRecorder) events(tell func(EventRecorder)) {
	for _, r := range []Recorder{t.a, t.b} {
		if e, ok := r.(EventRecorder); ok {
			tell(e)
		}
	}
}

// AdmitVisit asks the recorders that are VisitGates, in order; the first
// no wins.
func (t teeRecorder) AdmitVisit(visit string) (bool, string, error) {
	for _, r := range []Recorder{t.a, t.b} {
		if g, ok := r.(VisitGate); ok {
			if run, why, err := g.AdmitVisit(visit); err != nil || !run {
				return run, why, err
			}
		}
	}
	return true, "", nil
}

// TimeForVisit asks the recorders that are VisitGates, in order; the
// first reason to stop wins.
func (t teeRecorder) TimeForVisit(visit string) string {
	for _, r := range []Recorder{t.a, t.b} {
		if g, ok := r.(VisitGate); ok {
			if why := g.TimeForVisit(visit); why != "" {
				return why
			}
		}
	}
	return ""
}

// DoneDataIDs asks the first recorder that is a VisitGate.
func (t teeRecorder) DoneDataIDs(visit string) ([]string, error) {
	for _, r := range []Recorder{t.a, t.b} {
		if g, ok := r.(VisitGate); ok {
			return g.DoneDataIDs(visit)
		}
	}
	return nil, nil
}

// thisMachine describes this machine as a mapper.HostInfo: host name, CPUs
// and total memory. Rank is set by Run.
func thisMachine() mapper.HostInfo {
	h, _ := os.Hostname()
	return mapper.HostInfo{Host: h, Node: h, CPUs: runtime.NumCPU(), MemoryMB: memTotalMB()}
}

// memTotalMB reads MemTotal from /proc/meminfo, or 0 where there is none.
func memTotalMB() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			return kb / 1024
		}
	}
	return 0
}
