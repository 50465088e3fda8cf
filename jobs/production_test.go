package jobs

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dpsbatch/dpsbatch/input"
	"github.com/dpsbatch/dpsbatch/input/inputtest"
	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/mapper"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/site"
)

// prodSite is the test site (siteYAML): debug has 4 nodes of 4 CPUs and
// 2000 MB.
func prodSite(t *testing.T) *site.Site {
	t.Helper()
	s, err := site.Parse(filepath.Join(t.TempDir(), "site.yaml"), fmt.Appendf(nil, siteYAML, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func loadChain(t *testing.T, prod string, extra map[string]string) *input.Production {
	t.Helper()
	files := inputtest.ChainFiles(prod)
	for k, v := range extra {
		files[k] = v
	}
	dir := inputtest.Dir(t, files)
	p, err := input.LoadProduction(filepath.Join(dir, "prod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlanProduction(t *testing.T) {
	s := prodSite(t)
	prod := loadChain(t, inputtest.ChainProduction, nil)
	pl, err := planProduction(s, prod, rundir.Request{})
	if err != nil {
		t.Fatal(err)
	}
	// detect 2 slices (policy), association 1 (policy), moving 4 (the
	// file's slices over the policy's 3).
	wantSteps := []StepPlan{{"detect", 2, 3}, {"association", 1, 2}, {"moving", 4, 5}}
	if !slices.Equal(pl.Steps, wantSteps) {
		t.Errorf("Steps = %+v, want %+v", pl.Steps, wantSteps)
	}
	total := 0
	for _, st := range pl.Steps {
		total += st.Tasks
	}
	if pl.Plan.Tasks != total || total != 10 {
		t.Errorf("Plan.Tasks = %d, steps' tasks %d; want 10 both", pl.Plan.Tasks, total)
	}
	if pl.Plan.Partition != "debug" || pl.Plan.Nodes != 3 || !slices.Equal(pl.Plan.Layout, []int{4, 4, 2}) || pl.Plan.CPUsPerTask != 1 {
		t.Errorf("Plan = %+v; want debug, 3 nodes, layout [4 4 2], 1 CPU a task", pl.Plan)
	}

}

func TestPlanProductionCPUs(t *testing.T) {
	s := prodSite(t)
	prod := loadChain(t, "production: p\npipelines:\n  - {policy: detect/pipeline.yaml, visits: detect/visits.csv}\n  - {policy: assoc/pipeline.yaml}\n", nil)
	pl, err := planProduction(s, prod, rundir.Request{CPUsPerSlice: 2, MemPerSliceMB: 900})
	if err != nil {
		t.Fatal(err)
	}
	// 3 + 2 tasks of 2 CPUs and 900 MB: two a node.
	if pl.Plan.Tasks != 5 || pl.Plan.CPUsPerTask != 2 || pl.Plan.MemPerCPUMB != 450 || !slices.Equal(pl.Plan.Layout, []int{2, 2, 1}) {
		t.Errorf("Plan = %+v; want 5 tasks of 2 CPUs, 450 MB a CPU, layout [2 2 1]", pl.Plan)
	}
}

func TestPlanProductionNoFit(t *testing.T) {
	s := prodSite(t)
	prod := loadChain(t, strings.Replace(inputtest.ChainProduction, "slices: 4", "slices: 12", 1), nil)
	_, err := planProduction(s, prod, rundir.Request{})
	if !errors.Is(err, scheduler.ErrNoFit) || !errors.Is(err, conf.ErrInvalid) {
		t.Fatalf("err = %v; want ErrNoFit", err)
	}
	for _, w := range []string{"production nightly needs 18 tasks at once", "detect 3", "association 2", "moving 13",
		"the run does not fit partition debug"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

func TestPlanProductionBadRequest(t *testing.T) {
	s := prodSite(t)
	prod := loadChain(t, inputtest.ChainProduction, nil)
	_, err := input.ReadInput(prod.File, input.InputOptions{Slices: 3})
	inputtest.WantInvalid(t, "--slices", err, "is a production: --slices (give each pipeline its slices in the file) do not apply")
	_, err = planProduction(s, prod, rundir.Request{Partition: "nope"})
	inputtest.WantInvalid(t, "partition", err, "nope")
}

// planProduction plans the steps of prod as Submit does.
func planProduction(s *site.Site, prod *input.Production, r rundir.Request) (*RunPlan, error) {
	steps := make([]input.Step, len(prod.Pipelines))
	for i, pp := range prod.Pipelines {
		steps[i] = input.Step{Name: pp.Name, Policy: pp.Policy, Slices: pp.Slices}
	}
	return planSteps(s, prod.Name, prod.File, steps, r)
}

// assignLog records the slices each dry assignment of the prodtest
// mapper saw; a mapper with fail set refuses when asked for more than one
// slice.
var assignLog struct {
	sync.Mutex
	calls [][]mapper.HostInfo
}

type prodtestMapper struct{ fail bool }

func (m prodtestMapper) Assign(hosts []mapper.HostInfo) ([][]mapper.DataID, error) {
	assignLog.Lock()
	assignLog.calls = append(assignLog.calls, slices.Clone(hosts))
	assignLog.Unlock()
	if m.fail && len(hosts) > 1 {
		return nil, fmt.Errorf("cannot place %d slices", len(hosts))
	}
	return make([][]mapper.DataID, len(hosts)), nil
}

func init() {
	mapper.Register("prodtest", mapper.Factory{
		Settings: []mapper.Setting{{Key: "fail", Kind: mapper.Bool}},
		New:      func(v mapper.Values) (mapper.DataMapper, error) { return prodtestMapper{fail: v.Bool("fail")}, nil },
	})
}

// TestPlanProductionDryAssign: each pipeline's mapper is asked, dry, for
// its own slices, laid out where its step's tasks fall in the plan.
func TestPlanProductionDryAssign(t *testing.T) {
	s := prodSite(t)
	withMapper := func(policy, fail string) string {
		return strings.Replace(policy, "{type: range, settings: {key: ccd, from: 1, to: 4}}", "{type: prodtest, settings: {fail: "+fail+"}}", 1)
	}
	prod := loadChain(t, "production: p\npipelines:\n  - {policy: detect/pipeline.yaml, visits: detect/visits.csv, slices: 5}\n  - {policy: d2.yaml, name: d2, visits: detect/visits.csv}\n",
		map[string]string{"detect/pipeline.yaml": withMapper(inputtest.DetectPolicy, "false"), "d2.yaml": withMapper(strings.Replace(inputtest.DetectPolicy, "topic: visits", "topic: v2", 1), "false")})
	assignLog.Lock()
	assignLog.calls = nil
	assignLog.Unlock()
	pl, err := planProduction(s, prod, rundir.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pl.Plan.Layout, []int{4, 4, 1}) {
		t.Fatalf("layout %v, want [4 4 1]", pl.Plan.Layout)
	}
	assignLog.Lock()
	calls := assignLog.calls
	assignLog.Unlock()
	if len(calls) != 2 || len(calls[0]) != 5 || len(calls[1]) != 2 {
		t.Fatalf("dry assignments %v; want 5 slices then 2", calls)
	}
	// detect: tasks 0..5, rank 0 on the first node with 3 slices, 2 on
	// the next; d2: tasks 6..8, its rank 0 and one slice on the second
	// node (its first), one on the third.
	var nodes []string
	for _, c := range calls {
		for _, h := range c {
			nodes = append(nodes, fmt.Sprintf("%d@%s", h.Rank, h.Node))
		}
	}
	want := []string{"1@node1", "2@node1", "3@node1", "4@node2", "5@node2", "1@node1", "2@node2"}
	if !slices.Equal(nodes, want) {
		t.Errorf("slices placed %v, want %v", nodes, want)
	}

	prod = loadChain(t, "production: p\npipelines:\n  - {policy: detect/pipeline.yaml, visits: detect/visits.csv}\n",
		map[string]string{"detect/pipeline.yaml": withMapper(inputtest.DetectPolicy, "true")})
	_, err = planProduction(s, prod, rundir.Request{})
	inputtest.WantInvalid(t, "failing mapper", err, "mapper prodtest with 2 slices: mapper: cannot place 2 slices")
}

func TestStepPlan(t *testing.T) {
	plan := scheduler.Plan{Tasks: 10, Nodes: 3, TasksPerNode: 4, Layout: []int{4, 4, 2}, CPUsPerTask: 2}
	for _, c := range []struct {
		offset, tasks int
		layout        []int
		perNode       int
	}{
		{0, 3, []int{3}, 3},
		{3, 2, []int{1, 1}, 1},
		{5, 5, []int{3, 2}, 3},
		{0, 10, []int{4, 4, 2}, 4},
	} {
		sp := stepPlan(plan, c.offset, c.tasks)
		if sp.Tasks != c.tasks || sp.Nodes != len(c.layout) || !slices.Equal(sp.Layout, c.layout) || sp.TasksPerNode != c.perNode || sp.CPUsPerTask != 2 {
			t.Errorf("stepPlan(%d, %d) = %+v; want layout %v", c.offset, c.tasks, sp, c.layout)
		}
	}
}
