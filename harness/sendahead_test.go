package harness

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/harness/comm"
)

// tracedRecorder writes the Pipeline's records into its rank's trace, so
// that the order of records and collectives on rank 0 can be read as
// one line. failStage makes StageDone of that stage fail.
type tracedRecorder struct {
	openGate
	c         *tracingComm
	failStage string
	done      map[string][]string // by visit: data IDs an earlier attempt did
}

func (r *tracedRecorder) DoneDataIDs(visit string) ([]string, error) { return r.done[visit], nil }

func (r *tracedRecorder) VisitStarted(v string, _ time.Time) error {
	r.c.note("start:%s", v)
	return nil
}

func (r *tracedRecorder) StageDone(_, stage string, _ time.Duration) error {
	r.c.note("done:%s", stage)
	if stage == r.failStage {
		return errors.New("the recorder's disk is full")
	}
	return nil
}

func (r *tracedRecorder) SliceFailed(SliceFailure) error { return nil }

func (r *tracedRecorder) VisitEnded(v string, res VisitResult) error {
	r.c.note("end:%s:%s", v, res.Outcome)
	return nil
}

// twoSlices is a policy of two slices over the rank mapper with stages
// (YAML list items).
func twoSlices(stages string) string {
	return "pipeline: t\nslices: 2\nmapper: {type: rank}\nstages:\n" + stages
}

// runTraced runs the visits of policy on size ranks over local
// communicators, rank 0 tracing its collectives and its records, and
// returns rank 0's trace after the HostInfo Gather and each rank's error.
func runTraced(t *testing.T, policy string, size int, visits []string, failStage string) (string, []error) {
	t.Helper()
	return runTracedWith(t, policy, size, visits, &tracedRecorder{failStage: failStage})
}

// runTracedWith is runTraced with rec as the Recorder; its comm is set.
func runTracedWith(t *testing.T, policy string, size int, visits []string, rec *tracedRecorder) (string, []error) {
	t.Helper()
	eps := comm.NewLocal(size)
	c0 := &tracingComm{Comm: eps[0]}
	mk := func(r int) (comm.Comm, error) {
		if r == 0 {
			return c0, nil
		}
		return eps[r], nil
	}
	rec.c = c0
	errs := runRanksRecorded(t, policy, size, visits, mk, rec)
	return strings.Join(c0.trace[1:], " "), errs
}

// TestStageSentAheadOfItsRecord pins the Pipeline's order between a
// parallel stage's Gather and the next stage's Bcast: when nothing runs
// on the Pipeline between them (no Postprocess, no Preprocess, no event
// to wait for), the next stageMsg goes out first and the stage's
// StageDone is recorded while the Slices run the next stage; where a
// Pipeline-side stage comes between, the records come first, as before.
// What crosses the wire is unchanged (TestWireOrder). The first stage
// has no stageMsg of its own: the visitMsg began it (Begin;
// TestVisitBeginsFirstStage).
func TestStageSentAheadOfItsRecord(t *testing.T) {
	policy := twoSlices(`  - {name: a, type: noop}
  - {name: b, type: noop}
  - {name: hook, type: test-hook}
  - {name: c, type: noop}
  - {name: d, type: noop}
`)
	got, errs := runTraced(t, policy, 3, []string{"1"}, "")
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	want := "start:1 B15 G0[0,0,0] B0 done:a G0[0,0,0] done:b done:hook B0 G0[0,0,0] B0 done:c G0[0,0,0] done:d end:1:done B4"
	if got != want {
		t.Errorf("rank 0 called and recorded\n%s\nwant\n%s", got, want)
	}
}

// TestStageRecordFailsAfterNextWentOut: when the StageDone recorded after
// the next stage went out fails, the Pipeline still gathers that stage
// (the Slices are running it), then sends them Skip (they wait for the
// third stage's stageMsg; before, they read the Stop visitMsg as one and
// failed with a gob error that named nothing of the cause), records the
// visit interrupted and ends the run with the recording error. Every
// rank ends; a Slice either saw the Stop or was aborted with rank 0's
// error.
func TestStageRecordFailsAfterNextWentOut(t *testing.T) {
	policy := twoSlices(`  - {name: a, type: noop}
  - {name: b, type: noop}
  - {name: c, type: noop}
`)
	got, errs := runTraced(t, policy, 3, []string{"1", "2"}, "a")
	if errs[0] == nil || !strings.Contains(errs[0].Error(), "recording stage a of visit 1") || !strings.Contains(errs[0].Error(), "disk is full") {
		t.Fatalf("rank 0 ended with %v; want the recording error of stage a", errs[0])
	}
	for r, err := range errs[1:] {
		if err != nil && !(errors.Is(err, comm.ErrAborted) && strings.Contains(err.Error(), "disk is full")) {
			t.Errorf("slice %d: %v; want no error, or the abort that names rank 0's", r+1, err)
		}
	}
	skip, err := encode(stageMsg{Skip: true})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("start:1 B15 G0[0,0,0] B0 done:a G0[0,0,0] B%d end:1:interrupted B4", len(skip))
	if got != want {
		t.Errorf("rank 0 called and recorded\n%s\nwant\n%s", got, want)
	}
}

// TestVisitBeginsFirstStage: a visit whose first stage is parallel, with
// no Preprocess and no event to wait for, begins it with its visitMsg
// (Begin), one Bcast less per visit; a first stage with a Preprocess
// (test-share) gets its own stageMsg, which carries what the Preprocess
// shared. The Slices run the first stage either way, also for a visit
// whose earlier attempt did some of its data IDs (the visitMsg in gob).
func TestVisitBeginsFirstStage(t *testing.T) {
	for _, tc := range []struct {
		name, stages string
		begins       bool
	}{
		{"noop first", "  - {name: a, type: noop}\n  - {name: b, type: noop}\n", true},
		{"preprocess first", "  - {name: s, type: test-share}\n  - {name: b, type: noop}\n", false},
		{"serial first", "  - {name: h, type: test-hook}\n  - {name: b, type: noop}\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policy := twoSlices(tc.stages)
			rec := &tracedRecorder{done: map[string][]string{"2": {"rank=1"}}}
			got, errs := runTracedWith(t, policy, 3, []string{"1", "2"}, rec)
			for r, err := range errs {
				if err != nil {
					t.Fatalf("rank %d: %v", r, err)
				}
			}
			calls := strings.Fields(got)
			for i, c := range calls {
				if !strings.HasPrefix(c, "start:") {
					continue
				}
				next := calls[i+2] // after the visitMsg's Bcast
				if begun := strings.HasPrefix(next, "G"); begun != tc.begins {
					t.Errorf("visit %s: the visitMsg's Bcast is followed by %s; want the first stage begun %v\n%s", c, next, tc.begins, got)
				}
			}
			if n := strings.Count(got, "end:"); n != 2 || strings.Count(got, ":done") != 2 {
				t.Errorf("visits ended: %s", got)
			}
		})
	}
}
