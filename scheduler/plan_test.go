package scheduler_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/site"
)

// debug is the local cluster's partition: 4 nodes of 4 CPUs and 2000 MB.
var debug = site.Partition{Name: "debug", CPUsPerNode: 4, MemoryMB: 2000, Nodes: 4}

// gpus is debug as scripts/cluster.sh sets it up: n3 and n4 have two GPUs
// each.
var gpus = site.Partition{Name: "debug", CPUsPerNode: 4, MemoryMB: 2000, Nodes: 4, NodeList: "n[1-4]",
	GPUsPerNode: 2, GPUNodes: "n[3-4]"}

func TestPlanAllocation(t *testing.T) {
	limited := debug
	limited.MaxTime = 2 * time.Hour
	for _, tc := range []struct {
		name   string
		p      site.Partition
		n      scheduler.Needs
		layout []int
		cpus   int // CPUs per task
		mem    int // MB per CPU
		time   time.Duration
		opts   string
	}{
		{
			name: "pack one node", p: debug, n: scheduler.Needs{Slices: 3},
			layout: []int{4}, cpus: 1,
			opts: "--partition=debug --nodes=1 --ntasks=4 --ntasks-per-node=4 --cpus-per-task=1 --time=infinite",
		},
		{
			name: "pack spills onto a second node", p: debug, n: scheduler.Needs{Slices: 4},
			layout: []int{4, 1}, cpus: 1,
			opts: "--partition=debug --nodes=2 --ntasks=5 --cpus-per-task=1 --time=infinite",
		},
		{
			name: "pack two full nodes", p: debug, n: scheduler.Needs{Slices: 7, Strategy: scheduler.Pack},
			layout: []int{4, 4}, cpus: 1,
			opts: "--partition=debug --nodes=2 --ntasks=8 --ntasks-per-node=4 --cpus-per-task=1 --time=infinite",
		},
		{
			name: "pack whole cluster", p: debug, n: scheduler.Needs{Slices: 15},
			layout: []int{4, 4, 4, 4}, cpus: 1,
			opts: "--partition=debug --nodes=4 --ntasks=16 --ntasks-per-node=4 --cpus-per-task=1 --time=infinite",
		},
		{
			name: "pack with two CPUs a slice", p: debug, n: scheduler.Needs{Slices: 4, CPUsPerSlice: 2},
			layout: []int{2, 2, 1}, cpus: 2,
			opts: "--partition=debug --nodes=3 --ntasks=5 --cpus-per-task=2 --time=infinite",
		},
		{
			name: "pack limited by GPUs", p: gpus, n: scheduler.Needs{Slices: 2, GPUsPerSlice: 1},
			layout: []int{2, 1}, cpus: 1,
			opts: "--partition=debug --nodes=2 --ntasks=3 --cpus-per-task=1 --gpus-per-task=1 --time=infinite",
		},
		{
			name: "pack limited by memory", p: debug, n: scheduler.Needs{Slices: 3, MemPerSliceMB: 900},
			layout: []int{2, 2}, cpus: 1, mem: 900,
			opts: "--partition=debug --nodes=2 --ntasks=4 --ntasks-per-node=2 --cpus-per-task=1 --mem-per-cpu=900M --time=infinite",
		},
		{
			name: "memory per CPU rounds up", p: debug, n: scheduler.Needs{Slices: 1, CPUsPerSlice: 3, MemPerSliceMB: 1000},
			layout: []int{1, 1}, cpus: 3, mem: 334,
			opts: "--partition=debug --nodes=2 --ntasks=2 --ntasks-per-node=1 --cpus-per-task=3 --mem-per-cpu=334M --time=infinite",
		},
		{
			name: "pipeline memory alone is asked for every task", p: debug, n: scheduler.Needs{Slices: 1, PipelineMemMB: 1500},
			layout: []int{1, 1}, cpus: 1, mem: 1500,
			opts: "--partition=debug --nodes=2 --ntasks=2 --ntasks-per-node=1 --cpus-per-task=1 --mem-per-cpu=1500M --time=infinite",
		},
		{
			name: "pipeline CPUs raise every task's", p: debug, n: scheduler.Needs{Slices: 2, PipelineCPUs: 2},
			layout: []int{2, 1}, cpus: 2,
			opts: "--partition=debug --nodes=2 --ntasks=3 --cpus-per-task=2 --time=infinite",
		},
		{
			name: "time defaults to the partition's max", p: limited, n: scheduler.Needs{Slices: 1},
			layout: []int{2}, cpus: 1, time: 2 * time.Hour,
			opts: "--partition=debug --nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --time=02:00:00",
		},
		{
			name: "time asked", p: limited, n: scheduler.Needs{Slices: 1, Time: 90 * time.Minute},
			layout: []int{2}, cpus: 1, time: 90 * time.Minute,
			opts: "--partition=debug --nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --time=01:30:00",
		},
		{
			name: "time under an unlimited partition", p: debug, n: scheduler.Needs{Slices: 1, Time: 26 * time.Hour},
			layout: []int{2}, cpus: 1, time: 26 * time.Hour,
			opts: "--partition=debug --nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --time=1-02:00:00",
		},
		{
			name: "spread one slice", p: debug, n: scheduler.Needs{Slices: 1, Strategy: scheduler.Spread},
			layout: []int{2}, cpus: 1,
			opts: "--partition=debug --nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --time=infinite",
		},
		{
			name: "spread pipeline shares the first node", p: debug, n: scheduler.Needs{Slices: 4, Strategy: scheduler.Spread},
			layout: []int{2, 1, 1, 1}, cpus: 1,
			opts: "--partition=debug --nodes=4 --ntasks=5 --cpus-per-task=1 --time=infinite",
		},
		{
			name: "spread with whole-node slices gives the pipeline its own node", p: debug,
			n:      scheduler.Needs{Slices: 3, CPUsPerSlice: 4, Strategy: scheduler.Spread},
			layout: []int{1, 1, 1, 1}, cpus: 4,
			opts: "--partition=debug --nodes=4 --ntasks=4 --ntasks-per-node=1 --cpus-per-task=4 --time=infinite",
		},
		{
			name: "spread with memory for one task a node", p: debug,
			n:      scheduler.Needs{Slices: 2, MemPerSliceMB: 1200, Strategy: scheduler.Spread},
			layout: []int{1, 1, 1}, cpus: 1, mem: 1200,
			opts: "--partition=debug --nodes=3 --ntasks=3 --ntasks-per-node=1 --cpus-per-task=1 --mem-per-cpu=1200M --time=infinite",
		},
		{
			name: "max_nodes above the node count", p: site.Partition{Name: "big", CPUsPerNode: 4, Nodes: 2, MaxNodes: 10},
			n:      scheduler.Needs{Slices: 5},
			layout: []int{4, 2}, cpus: 1,
			opts: "--partition=big --nodes=2 --ntasks=6 --cpus-per-task=1 --time=infinite",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := scheduler.PlanAllocation(tc.p, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			strategy := tc.n.Strategy
			if strategy == "" {
				strategy = scheduler.Pack
			}
			want := scheduler.Plan{
				Partition: tc.p.Name, Strategy: strategy, Nodes: len(tc.layout), Tasks: tc.n.Slices + 1,
				TasksPerNode: slices.Max(tc.layout), CPUsPerTask: tc.cpus, MemPerCPUMB: tc.mem, Time: tc.time,
				Layout: tc.layout,
			}
			if !equalPlan(p, want) {
				t.Errorf("plan\n got %+v\nwant %+v", p, want)
			}
			sum := 0
			for _, n := range p.Layout {
				sum += n
			}
			if sum != p.Tasks {
				t.Errorf("layout %v holds %d tasks, want %d", p.Layout, sum, p.Tasks)
			}
			if got := strings.Join(p.SbatchOptions(), " "); got != tc.opts {
				t.Errorf("SbatchOptions\n got %s\nwant %s", got, tc.opts)
			}
		})
	}
}

func equalPlan(a, b scheduler.Plan) bool {
	return a.Partition == b.Partition && a.Strategy == b.Strategy && a.Nodes == b.Nodes && a.Tasks == b.Tasks &&
		a.TasksPerNode == b.TasksPerNode && a.CPUsPerTask == b.CPUsPerTask && a.MemPerCPUMB == b.MemPerCPUMB &&
		a.Time == b.Time && slices.Equal(a.Layout, b.Layout)
}

func TestPlanAllocationNoFit(t *testing.T) {
	wide := site.Partition{Name: "wide", CPUsPerNode: 4, MemoryMB: 2000, Nodes: 8, MaxNodes: 4, MaxTime: 2 * time.Hour}
	for _, tc := range []struct {
		name string
		p    site.Partition
		n    scheduler.Needs
		want string // the whole message
	}{
		{
			name: "spread over max_nodes", p: wide, n: scheduler.Needs{Slices: 6, Strategy: scheduler.Spread},
			want: "scheduler: the run does not fit partition wide: spread needs 6 nodes, max_nodes is 4 (2 over)",
		},
		{
			name: "spread over the partition's nodes", p: debug, n: scheduler.Needs{Slices: 5, Strategy: scheduler.Spread},
			want: "scheduler: the run does not fit partition debug: spread needs 5 nodes, the partition has 4 (1 over)",
		},
		{
			name: "spread whole-node slices count the pipeline's node", p: debug,
			n:    scheduler.Needs{Slices: 4, CPUsPerSlice: 3, Strategy: scheduler.Spread},
			want: "scheduler: the run does not fit partition debug: spread needs 5 nodes, the partition has 4 (1 over)",
		},
		{
			name: "pack over the partition's nodes", p: debug, n: scheduler.Needs{Slices: 16},
			want: "scheduler: the run does not fit partition debug: pack needs 5 nodes, the partition has 4 (1 over)",
		},
		{
			name: "pack over max_nodes by memory", p: wide, n: scheduler.Needs{Slices: 9, MemPerSliceMB: 1000},
			want: "scheduler: the run does not fit partition wide: pack needs 5 nodes, max_nodes is 4 (1 over)",
		},
		{
			name: "task CPUs over a node's", p: debug, n: scheduler.Needs{Slices: 2, CPUsPerSlice: 6},
			want: "scheduler: the run does not fit partition debug: a task needs 6 CPUs, a node has 4 (2 over)",
		},
		{
			name: "pipeline CPUs over a node's", p: debug, n: scheduler.Needs{Slices: 2, PipelineCPUs: 5},
			want: "scheduler: the run does not fit partition debug: a task needs 5 CPUs, a node has 4 (1 over)",
		},
		{
			name: "task memory over a node's", p: debug, n: scheduler.Needs{Slices: 2, MemPerSliceMB: 2500},
			want: "scheduler: the run does not fit partition debug: a task needs 2500 MB of memory, a node has 2000 MB (500 over)",
		},
		{
			name: "pipeline memory over a node's", p: debug, n: scheduler.Needs{Slices: 2, PipelineMemMB: 2001},
			want: "scheduler: the run does not fit partition debug: a task needs 2001 MB of memory, a node has 2000 MB (1 over)",
		},
		{
			name: "time over max_time", p: wide, n: scheduler.Needs{Slices: 1, Time: 3*time.Hour + 30*time.Minute},
			want: "scheduler: the run does not fit partition wide: time 03:30:00 is over max_time 02:00:00 (01:30:00 over)",
		},
		{
			name: "every limit at once", p: wide, n: scheduler.Needs{Slices: 1, CPUsPerSlice: 8, MemPerSliceMB: 4000, Time: 3 * time.Hour},
			want: "scheduler: the run does not fit partition wide: time 03:00:00 is over max_time 02:00:00 (01:00:00 over); " +
				"a task needs 8 CPUs, a node has 4 (4 over); a task needs 4000 MB of memory, a node has 2000 MB (2000 over)",
		},
		{
			name: "GPUs of a partition without", p: debug, n: scheduler.Needs{Slices: 2, GPUsPerSlice: 1},
			want: "scheduler: the run does not fit partition debug: a slice needs 1 GPUs, the partition has none (the site file gives it no gpus_per_node)",
		},
		{
			name: "more GPUs than a node has", p: gpus, n: scheduler.Needs{Slices: 1, GPUsPerSlice: 3},
			want: "scheduler: the run does not fit partition debug: a task needs 3 GPUs, a node has 2 (1 over)",
		},
		{
			name: "more GPU tasks than GPU nodes hold", p: gpus, n: scheduler.Needs{Slices: 4, GPUsPerSlice: 1},
			want: "scheduler: the run does not fit partition debug: pack needs 3 nodes, the partition has 2 GPU nodes (gpu_nodes n[3-4]) (1 over)",
		},
		{
			name: "spread with two GPUs a slice", p: gpus, n: scheduler.Needs{Slices: 2, GPUsPerSlice: 2, Strategy: scheduler.Spread},
			want: "scheduler: the run does not fit partition debug: spread needs 3 nodes, the partition has 2 GPU nodes (gpu_nodes n[3-4]) (1 over)",
		},
		{
			name: "a partition without CPUs", p: site.Partition{Name: "odd", Nodes: 2}, n: scheduler.Needs{Slices: 1},
			want: "scheduler: the run does not fit partition odd: the partition has no CPUs per node",
		},
		{
			name: "a partition without nodes", p: site.Partition{Name: "none", CPUsPerNode: 4}, n: scheduler.Needs{Slices: 1},
			want: "scheduler: the run does not fit partition none: pack needs 1 nodes, the partition has no nodes (1 over)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := scheduler.PlanAllocation(tc.p, tc.n)
			if err == nil {
				t.Fatalf("got plan %+v, want an error", p)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %s\nwant %s", err, tc.want)
			}
			if !errors.Is(err, scheduler.ErrNoFit) || !errors.Is(err, conf.ErrInvalid) {
				t.Errorf("error %v: errors.Is ErrNoFit %v, conf.ErrInvalid %v; want both", err,
					errors.Is(err, scheduler.ErrNoFit), errors.Is(err, conf.ErrInvalid))
			}
		})
	}
}

func TestPlanAllocationBadNeeds(t *testing.T) {
	for _, tc := range []struct {
		n    scheduler.Needs
		want string
	}{
		{scheduler.Needs{}, "scheduler: bad needs: slices must be at least 1 (got 0): invalid input"},
		{scheduler.Needs{Slices: 1, CPUsPerSlice: -1, MemPerSliceMB: -2},
			"scheduler: bad needs: cpus_per_slice must not be negative (got -1); mem_per_slice_mb must not be negative (got -2): invalid input"},
		{scheduler.Needs{Slices: 1, PipelineCPUs: -1, PipelineMemMB: -1, Time: -time.Second},
			"scheduler: bad needs: pipeline_cpus must not be negative (got -1); pipeline_mem_mb must not be negative (got -1); time must not be negative (got -1s): invalid input"},
		{scheduler.Needs{Slices: 1, GPUsPerSlice: -1}, "scheduler: bad needs: gpus_per_slice must not be negative (got -1): invalid input"},
		{scheduler.Needs{Slices: 1, Strategy: "spred"},
			`scheduler: bad needs: unknown strategy "spred" (did you mean "spread"?) (have: pack, spread): invalid input`},
		{scheduler.Needs{Slices: 1, Strategy: "round-robin"},
			`scheduler: bad needs: unknown strategy "round-robin" (have: pack, spread): invalid input`},
	} {
		p, err := scheduler.PlanAllocation(debug, tc.n)
		if err == nil {
			t.Errorf("PlanAllocation(%+v) = %+v, want an error", tc.n, p)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("PlanAllocation(%+v) error\n got %s\nwant %s", tc.n, err, tc.want)
		}
		if !errors.Is(err, conf.ErrInvalid) || errors.Is(err, scheduler.ErrNoFit) {
			t.Errorf("error %v: want conf.ErrInvalid and not ErrNoFit", err)
		}
	}
}

// BenchmarkPlan plans a million slices on a synthetic partition of 10,000
// nodes of 128 CPUs: pack fits them on 7,813 nodes; spread needs a node a
// slice and fails, having checked every limit.
func BenchmarkPlan(b *testing.B) {
	big := site.Partition{Name: "big", CPUsPerNode: 128, MemoryMB: 512000, Nodes: 10000, MaxTime: 48 * time.Hour}
	for _, tc := range []struct {
		strategy scheduler.Strategy
		fits     bool
	}{{scheduler.Pack, true}, {scheduler.Spread, false}} {
		b.Run(string(tc.strategy), func(b *testing.B) {
			n := scheduler.Needs{Slices: 1_000_000, MemPerSliceMB: 2000, Time: time.Hour, Strategy: tc.strategy}
			var p scheduler.Plan
			var err error
			start := time.Now()
			for b.Loop() {
				p, err = scheduler.PlanAllocation(big, n)
			}
			if (err == nil) != tc.fits {
				b.Fatalf("fits %v, want %v: %v", err == nil, tc.fits, err)
			}
			b.ReportMetric(time.Since(start).Seconds()*1e3/float64(b.N), "ms/plan")
			b.ReportMetric(float64(p.Nodes), "nodes")
		})
	}
}
