package scheduler

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/internal/slurmtime"
	"github.com/dpsbatch/dpsbatch/site"
)

// Strategy says how the tasks of a run are laid out over nodes.
type Strategy string

const (
	// Pack puts the run on the fewest nodes: every node holds as many
	// tasks as its CPUs (and memory, when asked) allow, the last one the
	// rest.
	Pack Strategy = "pack"
	// Spread gives every Slice a node of its own, for data locality; the
	// Pipeline (rank 0) shares the first node with Slice 1 (see Plan for
	// when Slurm may place the shared node elsewhere). When a node cannot
	// hold two tasks, the Pipeline gets a node of its own.
	Spread Strategy = "spread"
)

var strategies = []string{string(Pack), string(Spread)}

// ErrNoFit is matched (errors.Is) by every error of PlanAllocation saying
// that a run does not fit its partition. It wraps conf.ErrInvalid: the
// run, as asked, is bad input.
var ErrNoFit = fmt.Errorf("scheduler: the run does not fit the partition: %w", conf.ErrInvalid)

// Needs is what a run asks of the cluster.
type Needs struct {
	Slices        int // parallel workers (ranks 1..Slices), at least 1
	CPUsPerSlice  int // default 1
	MemPerSliceMB int // memory per Slice in megabytes; 0: do not ask
	PipelineCPUs  int // CPUs of the Pipeline (rank 0), default 1
	PipelineMemMB int // memory of the Pipeline in megabytes; 0: do not ask
	// GPUsPerSlice is how many GPUs each Slice needs; 0: none. The
	// Pipeline gets as many (Slurm gives every task the same).
	GPUsPerSlice int
	// Time is the run's time limit; 0 asks for the partition's maximum.
	Time     time.Duration
	Strategy Strategy // default Pack
}

// Plan is an allocation for a run: what sbatch is asked for. Rank 0 is the
// Pipeline, ranks 1..Tasks-1 the Slices. Layout is the layout the plan is
// sized for, Layout[0] ranks on the first node and so on. Slurm gives
// exactly it when it is uniform (--ntasks-per-node); otherwise Slurm keeps
// Nodes and Tasks (at least one task a node) and places the rest by free
// CPUs: on an idle cluster it gives Layout, on a busy one it may not (a
// planned [4 1] came out [2 3]). The Pipeline learns the real layout at
// start from its Slices' host info.
type Plan struct {
	Partition    string        `json:"partition"`
	Strategy     Strategy      `json:"strategy"`
	Nodes        int           `json:"nodes"`
	Tasks        int           `json:"tasks"`        // Slices+1: rank 0 is the Pipeline
	TasksPerNode int           `json:"tasksPerNode"` // most tasks on a node
	CPUsPerTask  int           `json:"cpusPerTask"`
	MemPerCPUMB  int           `json:"memPerCpuMB"`           // 0: memory not asked for
	GPUsPerTask  int           `json:"gpusPerTask,omitempty"` // 0: no GPUs asked for
	Time         time.Duration `json:"time"`                  // 0: infinite (the partition has no limit)
	Layout       []int         `json:"layout"`                // tasks per node, len(Layout) == Nodes
}

// noFit is an error of PlanAllocation for a run over one or more limits of
// its partition.
type noFit struct {
	partition string
	limits    []string
}

func (e *noFit) Error() string {
	return fmt.Sprintf("scheduler: the run does not fit partition %s: %s", e.partition, strings.Join(e.limits, "; "))
}

func (e *noFit) Is(target error) bool { return target == ErrNoFit || target == conf.ErrInvalid }

// PlanAllocation sizes the allocation of a run on partition p. Pure logic:
// it looks at nothing but its arguments, and is safe to call from any
// goroutine.
//
// Slurm gives every task of a job the same --cpus-per-task, so the rule for
// the Pipeline is the simplest sound one: every task gets
// max(CPUsPerSlice, PipelineCPUs) CPUs and max(MemPerSliceMB,
// PipelineMemMB) of memory (asked as --mem-per-cpu, rounded up to whole
// megabytes per CPU), and GPUsPerSlice GPUs (--gpus-per-task; only the
// partition's GPU nodes hold such tasks, GPUsPerNode/GPUsPerSlice each).
// With the defaults (one CPU, no memory asked for the Pipeline) that is
// exactly what a Slice needs.
//
// A run that does not fit gets an error matching ErrNoFit (and
// conf.ErrInvalid) that names every limit it is over and by how much;
// needs that make no sense (no slices, negative values, an unknown
// strategy) get an error matching conf.ErrInvalid.
func PlanAllocation(p site.Partition, n Needs) (Plan, error) {
	if err := n.check(); err != nil {
		return Plan{}, err
	}
	strategy := n.Strategy
	if strategy == "" {
		strategy = Pack
	}
	cpus := max(n.CPUsPerSlice, n.PipelineCPUs, 1)
	taskMem := max(n.MemPerSliceMB, n.PipelineMemMB)
	memPerCPU := 0
	if taskMem > 0 {
		memPerCPU = (taskMem + cpus - 1) / cpus
		taskMem = memPerCPU * cpus
	}
	plan := Plan{
		Partition:   p.Name,
		Strategy:    strategy,
		Tasks:       n.Slices + 1,
		CPUsPerTask: cpus,
		MemPerCPUMB: memPerCPU,
		GPUsPerTask: n.GPUsPerSlice,
		Time:        n.Time,
	}
	if plan.Time == 0 {
		plan.Time = p.MaxTime
	}

	fit := &noFit{partition: p.Name}
	over := func(format string, args ...any) { fit.limits = append(fit.limits, fmt.Sprintf(format, args...)) }
	if p.MaxTime > 0 && plan.Time > p.MaxTime {
		over("time %s is over max_time %s (%s over)",
			slurmtime.Format(plan.Time), slurmtime.Format(p.MaxTime), slurmtime.Format(plan.Time-p.MaxTime))
	}
	// perNode is how many tasks one node holds.
	perNode := 0
	switch {
	case p.CPUsPerNode <= 0:
		over("the partition has no CPUs per node")
	case cpus > p.CPUsPerNode:
		over("a task needs %d CPUs, a node has %d (%d over)", cpus, p.CPUsPerNode, cpus-p.CPUsPerNode)
	default:
		perNode = p.CPUsPerNode / cpus
	}
	if taskMem > 0 && p.MemoryMB > 0 {
		if taskMem > p.MemoryMB {
			over("a task needs %d MB of memory, a node has %d MB (%d over)", taskMem, p.MemoryMB, taskMem-p.MemoryMB)
			perNode = 0
		} else {
			perNode = min(perNode, p.MemoryMB/taskMem)
		}
	}
	if n.GPUsPerSlice > 0 {
		perNode = gpuFit(p, n.GPUsPerSlice, perNode, over)
	}
	if perNode > 0 {
		switch strategy {
		case Pack:
			plan.Nodes = (plan.Tasks + perNode - 1) / perNode
		case Spread:
			plan.Nodes = n.Slices
			if perNode < 2 {
				plan.Nodes++ // the Pipeline cannot share a node
			}
		}
		if limit, what := nodeLimit(p, n.GPUsPerSlice > 0); plan.Nodes > limit {
			over("%s needs %d nodes, %s (%d over)", strategy, plan.Nodes, what, plan.Nodes-limit)
		}
	}
	if len(fit.limits) > 0 {
		return Plan{}, fit
	}

	plan.Layout = make([]int, plan.Nodes)
	switch strategy {
	case Pack:
		left := plan.Tasks
		for i := range plan.Layout {
			plan.Layout[i] = min(perNode, left)
			left -= plan.Layout[i]
		}
	case Spread:
		for i := range plan.Layout {
			plan.Layout[i] = 1
		}
		if plan.Nodes == n.Slices {
			plan.Layout[0] = 2
		}
	}
	for _, t := range plan.Layout {
		plan.TasksPerNode = max(plan.TasksPerNode, t)
	}
	return plan, nil
}

// gpuFit is how many tasks of gpus GPUs each one of p's GPU nodes holds,
// at most perNode; when none, it says why with over and returns 0.
func gpuFit(p site.Partition, gpus, perNode int, over func(string, ...any)) int {
	switch {
	case p.GPUsPerNode == 0:
		over("a slice needs %d GPUs, the partition has none (the site file gives it no gpus_per_node)", gpus)
		return 0
	case gpus > p.GPUsPerNode:
		over("a task needs %d GPUs, a node has %d (%d over)", gpus, p.GPUsPerNode, gpus-p.GPUsPerNode)
		return 0
	}
	return min(perNode, p.GPUsPerNode/gpus)
}

// nodeLimit is the most nodes one job may have on p (of its GPU nodes
// when the job asks for GPUs), and how to say it.
func nodeLimit(p site.Partition, gpus bool) (int, string) {
	if gpus && p.GPUNodes != "" {
		if n := p.GPUNodeCount(); p.MaxNodes == 0 || n < p.MaxNodes {
			return n, fmt.Sprintf("the partition has %d GPU nodes (gpu_nodes %s)", n, p.GPUNodes)
		}
	}
	switch {
	case p.MaxNodes > 0 && (p.Nodes <= 0 || p.MaxNodes <= p.Nodes):
		return p.MaxNodes, fmt.Sprintf("max_nodes is %d", p.MaxNodes)
	case p.Nodes > 0:
		return p.Nodes, fmt.Sprintf("the partition has %d", p.Nodes)
	}
	return 0, "the partition has no nodes"
}

// check reports every value of n that makes no sense, in one error.
func (n Needs) check() error {
	var bad []string
	if n.Slices < 1 {
		bad = append(bad, fmt.Sprintf("slices must be at least 1 (got %d)", n.Slices))
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"cpus_per_slice", n.CPUsPerSlice},
		{"mem_per_slice_mb", n.MemPerSliceMB},
		{"pipeline_cpus", n.PipelineCPUs},
		{"pipeline_mem_mb", n.PipelineMemMB},
		{"gpus_per_slice", n.GPUsPerSlice},
	} {
		if f.v < 0 {
			bad = append(bad, fmt.Sprintf("%s must not be negative (got %d)", f.name, f.v))
		}
	}
	if n.Time < 0 {
		bad = append(bad, fmt.Sprintf("time must not be negative (got %s)", n.Time))
	}
	switch n.Strategy {
	case "", Pack, Spread:
	default:
		bad = append(bad, fmt.Sprintf("unknown strategy %q%s %s",
			n.Strategy, conf.Suggest(string(n.Strategy), strategies), conf.Have(strategies)))
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("scheduler: bad needs: %s: %w", strings.Join(bad, "; "), conf.ErrInvalid)
}

// SbatchOptions returns the plan as sbatch options, one "--name=value"
// string each, for #SBATCH lines or a command line: --partition (when
// named), --nodes, --ntasks, --ntasks-per-node (when every node has the
// same number of tasks; otherwise Slurm's block layout gives Layout),
// --cpus-per-task, --mem-per-cpu (when memory was asked for),
// --gpus-per-task (when GPUs were) and --time.
func (p Plan) SbatchOptions() []string {
	opts := make([]string, 0, 8)
	if p.Partition != "" {
		opts = append(opts, "--partition="+p.Partition)
	}
	opts = append(opts, "--nodes="+strconv.Itoa(p.Nodes), "--ntasks="+strconv.Itoa(p.Tasks))
	if n := p.NodeTasks(); n > 0 {
		opts = append(opts, "--ntasks-per-node="+strconv.Itoa(n))
	}
	opts = append(opts, "--cpus-per-task="+strconv.Itoa(p.CPUsPerTask))
	if p.MemPerCPUMB > 0 {
		opts = append(opts, "--mem-per-cpu="+strconv.Itoa(p.MemPerCPUMB)+"M")
	}
	if p.GPUsPerTask > 0 {
		opts = append(opts, "--gpus-per-task="+strconv.Itoa(p.GPUsPerTask))
	}
	return append(opts, "--time="+slurmtime.Format(p.Time))
}

// NodeTasks is the plan's --ntasks-per-node: TasksPerNode when every node
// of the layout has that many tasks, else 0, to be left out. Given with an
// uneven layout (5 tasks packed 4+1), sbatch would ask for 4 on every node
// and srun, unable to honour it, would spread the ranks 3+2; left out,
// Slurm's block layout is the plan's.
func (p Plan) NodeTasks() int {
	for _, t := range p.Layout {
		if t != p.TasksPerNode {
			return 0
		}
	}
	if len(p.Layout) == 0 {
		return 0
	}
	return p.TasksPerNode
}
