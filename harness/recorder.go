package harness

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// Recorder is the progress store the Pipeline reports to: `state`
// satisfies it for batch runs, Summary for local ones. Only the Pipeline
// (rank 0) calls it, one call at a time (from its loop goroutine; with
// visits in flight from several, serialised), in this order per visit:
// VisitStarted, then StageDone and SliceFailed as stages finish, then
// VisitEnded. With visits in flight, different visits' calls interleave. An error from a Recorder stops the run: progress that cannot
// be recorded must not be done.
type Recorder interface {
	VisitStarted(visit string, at time.Time) error
	StageDone(visit, stage string, took time.Duration) error
	SliceFailed(f SliceFailure) error
	VisitEnded(visit string, r VisitResult) error
}

// EventRecorder is an optional extra of a Recorder: it hears what the
// Pipeline does with events, and with the run, besides its visits.
type EventRecorder interface {
	// EventDropped: a malformed trigger event the Pipeline dropped
	// (logged either way).
	EventDropped(topic, why string)
	// EventSkipped: a well-formed event the Pipeline passed over, with
	// why: not selected by the policy, or (visit set) a trigger the
	// VisitGate refused.
	EventSkipped(topic, visit, why string)
	// EventsUndecodable: when the Pipeline ends, how many messages its
	// subscriptions dropped because they could not be decoded as events
	// (events.Subscription's Dropped; the broker logs each), unless there
	// were none.
	EventsUndecodable(n int)
	// Heartbeat: with RunOptions.Heartbeat set, the Pipeline's heartbeat,
	// with the visit in flight ("" between visits). It is called on the
	// heartbeat's own goroutine, concurrently with the other methods.
	Heartbeat(at time.Time, visit string)
	// RunStopped: why a run stopped before its data ran out (a shutdown
	// event, a stop request, the VisitGate's answer).
	RunStopped(why string)
}

// VisitGate is an optional extra of a Recorder that the Pipeline asks
// before each visit. Without it, every trigger runs and every visit
// starts.
type VisitGate interface {
	// AdmitVisit: whether to run a visit a trigger event names. A batch
	// run's recorder says no for a visit its state file records done (a
	// trigger delivered again after a restart: the state, not the broker,
	// says what is done) and adds a visit it has not heard of to the file.
	AdmitVisit(visit string) (run bool, why string, err error)
	// TimeForVisit: once the visit is admitted, whether there is time for
	// it. A non-empty why stops the run at this visit boundary, as a stop
	// request does, with why as the reason: the visit stays to be run by a
	// later job. A batch job's recorder answers from the job's end time and
	// the time visits take.
	TimeForVisit(visit string) (why string)
	// DoneDataIDs: once the visit has time, its data IDs (as
	// mapper.DataID.String) recorded done by an earlier attempt: the
	// Slices leave them out of this one, unless the policy redoes whole
	// visits (failure.redo: visit).
	DoneDataIDs(visit string) ([]string, error)
}

// SliceFailure is one slice clipboard that failed at one stage of a visit.
type SliceFailure struct {
	Visit  string
	Stage  string
	Slice  int    // rank
	DataID string // mapper.DataID.String
	Err    string
	// Capture is the failed call's freeze-dried input (package capture),
	// relative to the run directory; "" when none was written.
	Capture string
}

// VisitResult is how a visit ended.
type VisitResult struct {
	Outcome      VisitOutcome
	Err          string // why it failed (a serial stage's error, or a summary of slice failures) or was interrupted
	FailedSlices int    // slice clipboards that failed
	Took         time.Duration
	// DataIDs is the outcome of each data ID the visit ran (by
	// mapper.DataID.String; those left out as done before are not in
	// it), whatever the visit's: done, failed (its SliceFailure says
	// why), interrupted, or DataIDSkipped (the visit failed on the
	// Pipeline before it was done). It is read-only: visits whose data
	// IDs were all done may share one map.
	DataIDs map[string]VisitOutcome
	// Capture, for a visit that failed on the Pipeline, is the failed
	// call's freeze-dried input, relative to the run directory.
	Capture string
	// Outputs are the files the data IDs' exec stages declared they
	// write (settings.outputs), by data ID and absolute path, with their
	// sizes in bytes once the program had ended; a data ID that failed
	// before them has none.
	Outputs map[string]map[string]int64
}

// VisitOutcome is how a visit ended: one of the three below.
type VisitOutcome string

// The visit outcomes.
const (
	VisitDone        VisitOutcome = "done"
	VisitFailed      VisitOutcome = "failed"
	VisitInterrupted VisitOutcome = "interrupted" // the run was interrupted during the visit: run it again
	// DataIDSkipped is a data ID's outcome only: its visit failed on the
	// Pipeline before the data ID was done.
	DataIDSkipped VisitOutcome = "skipped"
)

// Summary is a Recorder that keeps counts and the failures of a run in
// memory, for `dpsbatch local` and tests. Its memory grows with failures,
// not with visits. It is safe for concurrent use.
type Summary struct {
	mu                sync.Mutex
	Visits            int
	Done              int
	Failed            int
	Interrupted       int
	FailedVisits      []string
	Reasons           map[string]string                  // by failed visit
	SliceFailures     []SliceFailure                     // at most maxKept
	SliceFailureCount int                                // all slice failures, kept or not
	DataIDs           map[VisitOutcome]int               // data IDs by outcome, over the visits' attempts
	FailedDataIDs     []SliceFailure                     // each failed data ID's first failure, at most maxKept
	unended           map[string]map[string]SliceFailure // by visit and data ID: the first failures of visits not ended
	stages            map[string]*stageTotal             // by name (StageDone; Stage)
	stageOrder        []string
	Malformed         int // events dropped as malformed
	Undecodable       int // messages dropped because they were not events (did not decode)
	Skipped           int // well-formed events passed over (not selected; visit already done)
	Stopped           string
	Elapsed           time.Duration
}

const maxKept = 1000

// newSummary returns an empty Summary.
func newSummary() *Summary {
	return &Summary{Reasons: map[string]string{}, DataIDs: map[VisitOutcome]int{}, stages: map[string]*stageTotal{}}
}

func (s *Summary) VisitStarted(string, time.Time) error {
	s.mu.Lock()
	s.Visits++
	s.mu.Unlock()
	return nil
}

// stageTotal is one stage's calls and time so far.
type stageTotal struct {
	calls int
	took  time.Duration
}

// StageDone adds to the stage's total: one map lookup a stage, as it is
// called once a stage on the Pipeline's loop.
func (s *Summary) StageDone(_, stage string, took time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.stages[stage]
	if t == nil {
		t = &stageTotal{}
		s.stages[stage] = t
		s.stageOrder = append(s.stageOrder, stage)
	}
	t.calls++
	t.took += took
	return nil
}

// Stage is how many times the stage named name has ended so far (once
// in each visit that ran it) and the total time it took.
func (s *Summary) Stage(name string) (calls int, took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.stages[name]; t != nil {
		return t.calls, t.took
	}
	return 0, 0
}

func (s *Summary) SliceFailed(f SliceFailure) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.SliceFailureCount++
	if len(s.SliceFailures) < maxKept {
		s.SliceFailures = append(s.SliceFailures, f)
	}
	if s.unended == nil {
		s.unended = map[string]map[string]SliceFailure{}
	}
	if s.unended[f.Visit] == nil {
		s.unended[f.Visit] = map[string]SliceFailure{}
	}
	if _, ok := s.unended[f.Visit][f.DataID]; !ok {
		s.unended[f.Visit][f.DataID] = f
	}
	return nil
}

// countDataIDs adds the outcomes of the visit's data IDs. s.mu is held.
func (s *Summary) countDataIDs(visit string, r VisitResult) {
	failures := s.unended[visit]
	delete(s.unended, visit)
	if s.DataIDs == nil {
		s.DataIDs = map[VisitOutcome]int{}
	}
	var ids []string // the failed ones
	for id, o := range r.DataIDs {
		s.DataIDs[o]++
		if o == VisitFailed {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		if len(s.FailedDataIDs) < maxKept {
			s.FailedDataIDs = append(s.FailedDataIDs, failures[id])
		}
	}
}

func (s *Summary) VisitEnded(visit string, r VisitResult) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.countDataIDs(visit, r)
	switch r.Outcome {
	case VisitInterrupted:
		s.Interrupted++
	case VisitFailed:
		s.Failed++
		if len(s.FailedVisits) < maxKept {
			s.FailedVisits = append(s.FailedVisits, visit)
			s.Reasons[visit] = r.Err
		}
	default:
		s.Done++
	}
	return nil
}

// Print writes a human summary: counts, per-stage mean times, failures.
func (s *Summary) Print(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(w, "visits: %d run, %d done, %d failed", s.Visits, s.Done, s.Failed)
	if s.Interrupted > 0 {
		fmt.Fprintf(w, ", %d interrupted", s.Interrupted)
	}
	if s.SliceFailureCount > 0 {
		fmt.Fprintf(w, "; %d slice failures", s.SliceFailureCount)
	}
	if s.Malformed > 0 {
		fmt.Fprintf(w, "; %d malformed events dropped", s.Malformed)
	}
	if s.Undecodable > 0 {
		fmt.Fprintf(w, "; %d undecodable messages dropped", s.Undecodable)
	}
	if s.Skipped > 0 {
		fmt.Fprintf(w, "; %d events skipped", s.Skipped)
	}
	fmt.Fprintf(w, " (%s)\n", s.Elapsed.Round(time.Millisecond))
	s.printDataIDs(w)
	if s.Stopped != "" {
		fmt.Fprintf(w, "stopped early: %s\n", s.Stopped)
	}
	if len(s.stageOrder) > 0 {
		fmt.Fprintln(w, "stages (mean time per visit):")
		for _, st := range s.stageOrder {
			fmt.Fprintf(w, "  %-20s %10s\n", st, (s.stages[st].took / time.Duration(s.stages[st].calls)).Round(time.Microsecond))
		}
	}
	if len(s.FailedVisits) > 0 {
		fmt.Fprintln(w, "failed visits:")
		vs := append([]string(nil), s.FailedVisits...)
		sort.Strings(vs)
		for _, v := range vs {
			fmt.Fprintf(w, "  %s: %s\n", v, firstLine(s.Reasons[v]))
		}
	}
	if len(s.SliceFailures) > 0 {
		fmt.Fprintln(w, "slice failures:")
		for _, f := range s.SliceFailures {
			fmt.Fprintf(w, "  visit %s stage %s slice %d %s: %s\n", f.Visit, f.Stage, f.Slice, f.DataID, firstLine(f.Err))
		}
		if s.SliceFailureCount > len(s.SliceFailures) {
			fmt.Fprintf(w, "  ... and %d more\n", s.SliceFailureCount-len(s.SliceFailures))
		}
	}
}

// printDataIDs writes the data IDs' counts by outcome and the failed
// ones, each with its visit, stage and error. s.mu is held.
func (s *Summary) printDataIDs(w io.Writer) {
	line := ""
	for _, o := range []VisitOutcome{VisitDone, VisitFailed, VisitInterrupted, DataIDSkipped} {
		if n := s.DataIDs[o]; n > 0 || o == VisitDone {
			line += fmt.Sprintf(", %d %s", n, o)
		}
	}
	fmt.Fprintf(w, "data IDs: %s\n", line[2:])
	if len(s.FailedDataIDs) == 0 {
		return
	}
	fmt.Fprintln(w, "failed data IDs:")
	for _, f := range s.FailedDataIDs {
		fmt.Fprintf(w, "  visit %s data ID %s stage %s: %s\n", f.Visit, f.DataID, f.Stage, strings.ReplaceAll(f.Err, "\n", "\n    "))
	}
	if n := s.DataIDs[VisitFailed]; n > len(s.FailedDataIDs) {
		fmt.Fprintf(w, "  ... and %d more\n", n-len(s.FailedDataIDs))
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// EventDropped counts a malformed trigger event.
func (s *Summary) EventDropped(topic, why string) {
	s.mu.Lock()
	s.Malformed++
	s.mu.Unlock()
}

// EventsUndecodable counts the messages dropped as undecodable.
func (s *Summary) EventsUndecodable(n int) {
	s.mu.Lock()
	s.Undecodable += n
	s.mu.Unlock()
}

// EventSkipped counts an event passed over.
func (s *Summary) EventSkipped(topic, visit, why string) {
	s.mu.Lock()
	s.Skipped++
	s.mu.Unlock()
}

// Heartbeat is not counted.
func (s *Summary) Heartbeat(time.Time, string) {}

// RunStopped notes why the run stopped early.
func (s *Summary) RunStopped(why string) {
	s.mu.Lock()
	s.Stopped = why
	s.mu.Unlock()
}

var (
	_ Recorder      = (*Summary)(nil)
	_ EventRecorder = (*Summary)(nil)
)
