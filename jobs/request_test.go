package jobs

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
)

// settingsOf reads the run settings of the state file in dir.
func settingsOf(t *testing.T, dir string) rundir.Settings {
	t.Helper()
	_, set, err := rundir.ReadSettings(rundir.Layout{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// resume --time, --mem-per-slice, --slices and --partition change what
// the next job asks for; the run keeps the new request, so the resume
// after plans with it, and status shows it.
func TestResumeChangesRequest(t *testing.T) {
	e := newEnv(t, 6)
	dir := deadRun(t, e)
	o := e.resumeOpts(dir)
	o.Change = RequestChange{Time: 30 * time.Minute, MemPerSliceMB: 700, Slices: 3}
	res, err := Resume(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Plan.Time != 30*time.Minute || res.Plan.MemPerCPUMB != 700 || res.Plan.Tasks != 4 {
		t.Errorf("plan %+v; want 30m, 700 MB per CPU, 4 tasks", res.Plan)
	}
	script := e.fake.submits[1].Script
	for _, want := range []string{"--time=00:30:00", "--mem-per-cpu=700M", "--ntasks=4"} {
		if !bytes.Contains(script, []byte(want)) {
			t.Errorf("attempt 2's script lacks %s:\n%s", want, script)
		}
	}
	want := rundir.Request{Slices: 3, MemPerSliceMB: 700, Time: 30 * time.Minute}
	if got := settingsOf(t, dir).Request; got != want {
		t.Errorf("recorded request %+v; want %+v", got, want)
	}
	rs, err := Status(context.Background(), e.fake, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if r := rs[0].Request; r.Time != 30*time.Minute || r.MemPerSliceMB != 700 || r.Slices != 3 {
		t.Errorf("status request %+v", r)
	}

	// The next resume, changing only the partition, keeps the rest.
	e.fake.forget("1002", "TIMEOUT")
	o.Change = RequestChange{Partition: "long"}
	if res, err = Resume(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if p := res.Plan; p.Partition != "long" || p.Time != 30*time.Minute || p.MemPerCPUMB != 700 || p.Tasks != 4 {
		t.Errorf("second resume's plan %+v; want long, the first change kept", p)
	}
	rs, _ = Status(context.Background(), e.fake, []string{dir})
	if rs[0].Partition != "long" {
		t.Errorf("status partition %q; want long", rs[0].Partition)
	}
}

// A change over the partition's limits, or to a partition the site does
// not have, is bad input naming the flag and the limit: nothing is
// submitted, and neither the visits nor the request change.
func TestResumeChangeOverLimits(t *testing.T) {
	for _, c := range []struct {
		change RequestChange
		want   []string
	}{
		{RequestChange{Time: 2 * time.Hour}, []string{"--time 02:00:00", "max_time 01:00:00"}},
		{RequestChange{MemPerSliceMB: 3000}, []string{"--mem-per-slice 3000M", "a node has 2000 MB"}},
		{RequestChange{Slices: 40}, []string{"--slices 40", "max_nodes is 4"}},
		{RequestChange{Partition: "debgu"}, []string{"--partition debgu", `unknown partition "debgu"`}},
		{RequestChange{Partition: "long", MemPerSliceMB: 100, Time: -time.Minute}, []string{"values must be positive"}},
	} {
		t.Run(c.change.flags(), func(t *testing.T) {
			e := newEnv(t, 6)
			dir := deadRun(t, e)
			before, set := visitStates(t, dir), settingsOf(t, dir)
			o := e.resumeOpts(dir)
			o.Change = c.change
			_, err := Resume(context.Background(), o)
			if !errors.Is(err, conf.ErrInvalid) {
				t.Fatalf("Resume: %v; want bad input", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if _, _, n := e.fake.calls(); n != 1 {
				t.Errorf("%d submissions; want only the first job's", n)
			}
			if after := visitStates(t, dir); !slices.Equal(before, after) {
				t.Errorf("visits changed:\n%+v\n%+v", before, after)
			}
			if got := settingsOf(t, dir); got.Request != set.Request {
				t.Errorf("request changed to %+v", got.Request)
			}
			if js := runtest.JobsOf(t, dir); len(js) != 1 {
				t.Errorf("jobs %+v; want the first alone", js)
			}
		})
	}
}
