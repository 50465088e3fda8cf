package state

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// A job's usage is stored with its steps in their order, replaced whole
// when stored again, and read back by job in the order the jobs were
// recorded; the file holds only jobs whose usage was stored.
func TestUsage(t *testing.T) {
	inModes(t, func(t *testing.T) {
		s, err := Create(filepath.Join(t.TempDir(), "state.db"), Run{ID: "r"})
		must(t, err)
		defer s.Close()
		must(t, s.AddJob(Job{ID: "12", Attempt: 1, State: JobSubmitted}))
		must(t, s.AddJob(Job{ID: "9", Attempt: 2, State: JobSubmitted}))
		must(t, s.AddJob(Job{ID: "15", Attempt: 3, State: JobSubmitted}))
		at := time.Unix(100, 0)
		second := JobUsage{Job: "9", State: "COMPLETED", Elapsed: 7 * time.Second, CPUs: 2, ReqMemMB: 200, SliceMemMB: 100, Recorded: at,
			Steps: []StepUsage{
				{Step: "batch", Name: "batch", State: "COMPLETED", Elapsed: 7 * time.Second, CPU: 559 * time.Millisecond, Tasks: 1},
				{Step: "0", Name: "dpsbatch", State: "COMPLETED", Elapsed: 5 * time.Second, CPU: 5621 * time.Millisecond, Tasks: 3,
					MaxRSS: 136172 << 10, MaxRSSNode: "n1"},
			}}
		first := JobUsage{Job: "12", State: "CANCELLED", Recorded: at}
		must(t, s.SetUsage(second))
		must(t, s.SetUsage(JobUsage{Job: "12", State: "FAILED", Recorded: at,
			Steps: []StepUsage{{Step: "batch", State: "FAILED"}}}))
		must(t, s.SetUsage(first))
		got, err := s.Usage()
		must(t, err)
		if want := []JobUsage{first, second}; !reflect.DeepEqual(got, want) {
			t.Errorf("Usage() =\n%+v\nwant\n%+v", got, want)
		}
		if got[1].CPU() != 6180*time.Millisecond || got[1].Peak().Step != "0" || got[0].Peak().Step != "" {
			t.Errorf("job 9: CPU %v, peak step %q; job 12 peak step %q", got[1].CPU(), got[1].Peak().Step, got[0].Peak().Step)
		}
	})
}
