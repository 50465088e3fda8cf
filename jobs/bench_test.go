package jobs

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/input"
	"github.com/dpsbatch/dpsbatch/input/inputtest"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/site"
	"github.com/dpsbatch/dpsbatch/state"
)

// The benchmarks the batch front end is held to, at a scale this machine
// cannot host, by simulation: a partition of 10,000 nodes planned on
// paper, and a run of a million visits whose state file is real but whose
// Slurm is the scripted fakeBackend.

// BenchmarkPlanRun10kNodes1MIDs plans a run of one slice per data ID over
// a million data IDs on a partition of 10,000 nodes of 128 CPUs: the slice
// count (the range mapper's million IDs, counted), PlanAllocation, and the
// dry assignment of every data ID to the slices laid out as planned
// (mapper.AssignDry: the range mapper's DryAssign checks its values for a
// repeat without making the data IDs).
func BenchmarkPlanRun10kNodes1MIDs(b *testing.B) {
	dir := b.TempDir()
	s, err := site.Parse(filepath.Join(dir, "site.yaml"), fmt.Appendf(nil, `runs_root: %s
partitions:
  - {name: huge, cpus_per_node: 128, memory: 512G, nodes: 10000, max_time: "2-00:00:00"}
`, filepath.Join(dir, "runs")))
	if err != nil {
		b.Fatal(err)
	}
	policy := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(policy, []byte(`pipeline: wide
slices: per-data-id
mapper: {type: range, settings: {key: ccd, from: 1, to: 1000000}}
events: {trigger: {topic: visits}}
stages:
  - {name: work, type: noop}
`), 0o644); err != nil {
		b.Fatal(err)
	}
	p, err := harness.Load(policy, harness.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var pl *RunPlan
	for i := 0; i < b.N; i++ {
		pl, err = planSteps(s, p.Name, policy, []input.Step{{Policy: p}}, rundir.Request{})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if pl.Steps[0].Slices != 1_000_000 || pl.Plan.Tasks != 1_000_001 || pl.Plan.Nodes != 7813 {
		b.Fatalf("planned %d slices, %d tasks on %d nodes; want 1000000, 1000001 on 7813", pl.Steps[0].Slices, pl.Plan.Tasks, pl.Plan.Nodes)
	}
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/plan")
	b.ReportMetric(float64(pl.Plan.Nodes), "nodes")
}

// The million-visit run of the status and resume benchmarks, built once
// per process: submitted through Submit (a fake backend, job 1001), then
// its visits recorded through the state API as rank 0 would: by seq
// modulo 100, 60% done, 5% failed, 1% left running by the dead job, 34%
// pending.
const benchVisits = 1_000_000

var benchRun struct {
	once  sync.Once
	base  string // removed by TestMain
	dir   string // the run directory
	site  *site.Site
	bin   string
	build time.Duration
	err   error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchRun.base != "" {
		os.RemoveAll(benchRun.base)
	}
	os.Exit(code)
}

func benchRunDir(b *testing.B) string {
	b.Helper()
	benchRun.once.Do(buildBenchRun)
	if benchRun.err != nil {
		b.Fatal(benchRun.err)
	}
	return benchRun.dir
}

func buildBenchRun() {
	start := time.Now()
	r := &benchRun
	r.base, r.err = os.MkdirTemp("", "jobs-bench-")
	if r.err != nil {
		return
	}
	fail := func(err error) { r.err = err }
	pipe := filepath.Join(r.base, "pipe")
	if err := os.MkdirAll(pipe, 0o755); err != nil {
		fail(err)
		return
	}
	r.site, r.err = site.Parse(filepath.Join(r.base, "site.yaml"), fmt.Appendf(nil, siteYAML, filepath.Join(r.base, "runs")))
	if r.err != nil {
		return
	}
	policy := filepath.Join(pipe, "pipeline.yaml")
	visits := filepath.Join(pipe, "visits.csv")
	r.bin = filepath.Join(pipe, "dpsbatch")
	var csv strings.Builder
	csv.WriteString("visitId\n")
	for i := range benchVisits {
		fmt.Fprintf(&csv, "visit=%07d\n", i+1)
	}
	for path, text := range map[string]string{policy: inputtest.TinyPolicy, visits: csv.String(), r.bin: "#!/bin/sh\n"} {
		if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
			fail(err)
			return
		}
	}
	sub, err := Submit(context.Background(), SubmitOptions{Site: r.site, Backend: newFake(), Policy: policy, Visits: visits,
		Name: "big", Binary: r.bin})
	if err != nil {
		fail(err)
		return
	}
	r.dir = sub.Dir
	st, err := state.Open(rundir.Layout{Dir: r.dir}.State())
	if err != nil {
		fail(err)
		return
	}
	defer st.Close()
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range benchVisits {
		seq := i + 1
		m := seq % 100
		if m >= 66 {
			continue // pending
		}
		id := fmt.Sprintf("visit=%07d", seq)
		at = at.Add(time.Millisecond)
		if err := st.VisitStarted(id, "1001", at); err != nil {
			fail(err)
			return
		}
		end := state.Done
		switch {
		case m >= 65:
			continue // running
		case m >= 60:
			end = state.Failed
		}
		if err := st.VisitEnded(id, end, "", at.Add(500*time.Microsecond)); err != nil {
			fail(err)
			return
		}
	}
	r.build = time.Since(start)
}

// copyRun copies the run directory into a new folder of parent and
// returns it.
func copyRun(b *testing.B, src, parent string) string {
	b.Helper()
	dst, err := os.MkdirTemp(parent, "big-")
	if err != nil {
		b.Fatal(err)
	}
	err = filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		b.Fatal(err)
	}
	return dst
}

// BenchmarkStatus1M is `dpsbatch status` of a run of a million visits
// whose job Slurm has forgotten (one squeue and one sacct call): its
// 10,000 visits recorded running read as interrupted.
func BenchmarkStatus1M(b *testing.B) {
	dir := benchRunDir(b)
	f := newFake()
	f.forget("1001", "NODE_FAIL")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rs, err := Status(context.Background(), f, []string{dir})
		if err != nil {
			b.Fatal(err)
		}
		if rs[0].Visits != benchVisits || rs[0].Counts["done"] != 600_000 || rs[0].Counts["running"] != 0 || rs[0].Counts["interrupted"] != 10_000 || rs[0].Outcome != "unfinished" {
			b.Fatalf("status %+v", rs[0])
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/status")
	b.ReportMetric(benchRun.build.Seconds(), "s-to-build-the-run")
}

// BenchmarkResumePlanning1M is `dpsbatch resume` of that run after its
// job died: status, the policy and plan, the 10,000 running visits
// interrupted, the 60,000 failed and interrupted ones retried, the
// 400,000 runnable ones listed, the script rendered and submitted to the
// fake. Each iteration resumes a fresh copy (the copy is not timed).
func BenchmarkResumePlanning1M(b *testing.B) {
	src := benchRunDir(b)
	parent := b.TempDir()
	var res *ResumeResult
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := copyRun(b, src, parent)
		f := newFake()
		f.next = 1002
		f.forget("1001", "NODE_FAIL")
		b.StartTimer()
		var err error
		res, err = Resume(context.Background(), ResumeOptions{Site: benchRun.site, Backend: f, Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if res.Visits != 400_000 || res.Retried != 60_000 || len(res.Jobs) != 1 {
			b.Fatalf("resume %+v; want 400000 visits, 60000 retried, one job", res)
		}
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/resume")
}

// BenchmarkSubmit1MVisits is `dpsbatch submit` of a run of a million
// visits (a visit file of visit IDs only) to the scripted fakeBackend: the visit
// file read and checked, the plan, the run directory and its state file
// with every visit pending. bench/submit-hold.sh measures the real
// binary against the local cluster.
func BenchmarkSubmit1MVisits(b *testing.B) {
	dir := b.TempDir()
	s, err := site.Parse(filepath.Join(dir, "site.yaml"), fmt.Appendf(nil, siteYAML, filepath.Join(dir, "runs")))
	if err != nil {
		b.Fatal(err)
	}
	policy, visits, bin := filepath.Join(dir, "pipeline.yaml"), filepath.Join(dir, "visits.csv"), filepath.Join(dir, "dpsbatch")
	var csv strings.Builder
	csv.WriteString("visitId\n")
	for i := range benchVisits {
		fmt.Fprintf(&csv, "v%07d\n", i+1)
	}
	for path, text := range map[string]string{policy: inputtest.TinyPolicy, visits: csv.String(), bin: "#!/bin/sh\n"} {
		if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sub, err := Submit(context.Background(), SubmitOptions{Site: s, Backend: newFake(), Policy: policy, Visits: visits,
			Name: fmt.Sprintf("big%d", i), Binary: bin, Hold: true})
		if err != nil {
			b.Fatal(err)
		}
		if sub.Visits != benchVisits {
			b.Fatalf("submitted %d visits, want %d", sub.Visits, benchVisits)
		}
		b.StopTimer()
		os.RemoveAll(sub.Dir)
		b.StartTimer()
	}
}
