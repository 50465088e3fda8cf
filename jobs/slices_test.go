package jobs

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/injob"
	"github.com/dpsbatch/dpsbatch/input/inputtest"
	"github.com/dpsbatch/dpsbatch/internal/testenv"
	"github.com/dpsbatch/dpsbatch/rundir"
)

// The number of slices asked for is what rank 0 compares with the
// communicator: submit --slices, a production entry's slices, else the
// policy's count. It warns only when they differ, naming who asked.
func TestAskedSlices(t *testing.T) {
	e := newEnv(t, 2)
	o := e.opts("asked")
	o.Request.Slices = 3 // the policy says 2
	sub, err := Submit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	_, set, err := rundir.ReadSettings(rundir.Layout{Dir: sub.Dir})
	if err != nil {
		t.Fatal(err)
	}
	if n, from := set.AskedSlices(); n != 3 || from != "submit --slices" {
		t.Errorf("asked %d by %q; want 3 by submit --slices", n, from)
	}
	_, plain, err := rundir.ReadSettings(rundir.Layout{Dir: e.submit("plain")})
	if err != nil {
		t.Fatal(err)
	}
	if n, from := plain.AskedSlices(); n != 0 {
		t.Errorf("a run without --slices: asked %d by %q; want 0 (the policy's)", n, from)
	}

	pe, file := prodEnv(t, inputtest.ChainProduction)
	l := rundir.Layout{Dir: pe.submitProd(file, "night1").Dir}
	for _, tc := range []struct {
		pipeline string
		n        int
		from     string
	}{
		{"detect", 2, "the policy's slices"},
		{"moving", 4, `the slices of production entry "moving"`},
	} {
		_, set, err := rundir.ReadSettings(l.Pipeline(tc.pipeline))
		if err != nil {
			t.Fatal(err)
		}
		if n, from := set.AskedSlices(); n != tc.n || from != tc.from {
			t.Errorf("pipeline %s: asked %d by %q; want %d by %q", tc.pipeline, n, from, tc.n, tc.from)
		}
	}

	// A whole run of the --slices 3 run: 3 slices, as asked, warn of
	// nothing; 2 slices warn, naming submit --slices.
	for _, tc := range []struct {
		size int
		warn bool
	}{{4, false}, {3, true}} {
		dir := sub.Dir
		if tc.warn {
			o.Name = "asked-2"
			s2, err := Submit(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			dir = s2.Dir
		}
		l := rundir.Layout{Dir: dir}
		var logs testenv.SyncBuffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		serveRun(t, l.State(), "local", 0)
		j := &injob.InJob{StatePath: l.State(), JobID: "local", Logger: log}
		dr := harness.RunOptions{PolicyPath: l.Policy(), RunID: "asked", RunDir: dir, Rank0: j.Hook, Logger: log}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		dr.Ranks, dr.Size = harness.CommLocal, tc.size
		sum, err := harness.Run(ctx, dr)
		cancel()
		if endErr := j.End(sum, err); endErr != nil {
			t.Fatal(endErr)
		}
		if err != nil {
			t.Fatal(err)
		}
		warned := strings.Contains(logs.String(), "number of slices")
		switch {
		case warned != tc.warn:
			t.Errorf("%d slices, 3 asked: warned %v, want %v; log:\n%s", tc.size-1, warned, tc.warn, logs.String())
		case tc.warn && !strings.Contains(logs.String(), `askedBy="submit --slices"`):
			t.Errorf("the warning does not name submit --slices:\n%s", logs.String())
		}
	}
}
