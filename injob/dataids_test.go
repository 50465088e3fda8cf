package injob

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/state"
)

// The recorder writes each data ID's outcome with its visit's end, a
// failed one with its slice failure's stage and error even when the
// visit is done, and answers the Pipeline's question of which data IDs
// of a visit are done.
func TestRecorderDataIDs(t *testing.T) {
	b, _, _ := feedBroker(t, nil, false)
	r := &recorder{st: b.st, job: "1001", now: runtest.FixedNow, log: slog.New(slog.DiscardHandler)}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.VisitStarted("v001", runtest.FixedNow()))
	must(r.SliceFailed(harness.SliceFailure{Visit: "v001", Stage: "measure", Slice: 2, DataID: "ccd=2", Err: "exec: sh exited with status 1"}))
	must(r.VisitEnded("v001", harness.VisitResult{Outcome: harness.VisitDone, FailedSlices: 1, Took: time.Second,
		DataIDs: map[string]harness.VisitOutcome{"ccd=1": harness.VisitDone, "ccd=2": harness.VisitFailed}}))

	done, err := r.DoneDataIDs("v001")
	must(err)
	if !slices.Equal(done, []string{"ccd=1"}) {
		t.Errorf("done data IDs %v; want ccd=1", done)
	}
	failed, err := b.st.DataIDsWith(state.DataIDFailed, 0)
	must(err)
	if len(failed) != 1 || failed[0].Visit != "v001" || failed[0].DataID != "ccd=2" || failed[0].Stage != "measure" ||
		failed[0].Err != "exec: sh exited with status 1" {
		t.Errorf("failed data IDs %+v; want v001 ccd=2 at measure with its error", failed)
	}
	if s, _ := b.st.VisitState("v001"); s != state.Done {
		t.Errorf("v001 is %s; want done (its failure rule let it carry on)", s)
	}
}
