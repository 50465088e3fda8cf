package jobs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/input"
	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/mapper"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/site"
)

// dryAssign runs the policy's mapper over hosts laid out as the plan
// places the slices (rank 0 is the first task of the first node).
func dryAssign(p *harness.Policy, m mapper.DataMapper, plan scheduler.Plan, slices int) error {
	if p.Mapper.Type == "host-table" {
		return nil
	}
	hosts := make([]mapper.HostInfo, 0, slices)
	rank := 0
	for node, tasks := range plan.Layout {
		name := fmt.Sprintf("node%d", node+1)
		for local := range tasks {
			if rank > 0 && rank <= slices {
				hosts = append(hosts, mapper.HostInfo{Rank: rank, LocalRank: local, Host: name, Node: name,
					CPUs: plan.CPUsPerTask, MemoryMB: int64(plan.MemPerCPUMB * plan.CPUsPerTask), GPUs: gpuIDs(plan.GPUsPerTask, local)})
			}
			rank++
		}
	}
	for len(hosts) < slices { // a plan without a layout
		rank := len(hosts) + 1
		hosts = append(hosts, mapper.HostInfo{Rank: rank, Host: "node1", Node: "node1", CPUs: max(plan.CPUsPerTask, 1)})
	}
	if err := mapper.AssignDry(m, hosts); err != nil { // as Assign, which checks the result
		if errors.Is(err, conf.ErrInvalid) {
			return err
		}
		return fmt.Errorf("%w: %s: mapper %s with %d slices: %v", conf.ErrInvalid, p.File, p.Mapper.Type, slices, err)
	}
	return nil
}

// gpuIDs is what a task with n GPUs, the local'th task of its node, would
// find in CUDA_VISIBLE_DEVICES: its own n of the node's GPUs.
func gpuIDs(n, local int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(local*n + i)
	}
	return strings.Join(ids, ",")
}

// RunPlan is a run's one allocation and the share of each of its steps,
// in the run's order.
type RunPlan struct {
	Plan  scheduler.Plan
	Steps []StepPlan
}

// StepPlan is one step's share of a run's allocation.
type StepPlan struct {
	Pipeline string `json:"pipeline"`
	Slices   int    `json:"slices"`
	Tasks    int    `json:"tasks"` // Slices+1: the step's Pipeline rank and its slices
}

// planSteps sizes the one allocation of run name (from file) on site s,
// which holds every step at once.
//
// Each step's slice count is the one it asked for (Step.Slices), else the
// policy's, else one per data ID; every step runs its Pipeline rank and
// its slices, so its Tasks is Slices+1. Every task of every step gets
// r.CPUsPerSlice CPUs, r.MemPerSliceMB of memory and r.GPUsPerSlice GPUs
// (when 0, the most any step's policy asks, gpus_per_slice); r.Slices is
// not read (the steps carry theirs).
//
// scheduler.PlanAllocation plans one Pipeline rank and N slices, all tasks
// of one size (its Pipeline rank is only distinct in asking for at least
// one CPU). Steps of total tasks (the sum of the steps' Tasks) are
// planned as N = total-1 "slices", so the plan's Tasks is total: the
// scheduler's rank 0 stands for the first step's Pipeline rank, the other
// steps' Pipeline ranks are among its "slices". Each step takes, in order,
// the next Tasks tasks of the plan's Layout, which is where the dry
// mapper assignment places its slices (dryAssign: a mapper that cannot
// place every data ID is found before anything is submitted); Slurm places
// the steps' tasks itself when they start. With strategy spread every
// task but one gets a node of its own.
//
// An allocation of several steps that does not fit is an error matching
// scheduler.ErrNoFit that names the run and each step's tasks. Errors
// about the request or a policy wrap conf.ErrInvalid.
func planSteps(s *site.Site, name, file string, in []input.Step, r rundir.Request) (*RunPlan, error) {
	part, err := s.Partition(r.Partition)
	if err != nil {
		return nil, err
	}
	steps := make([]StepPlan, len(in))
	// One mapper per step serves the count and the dry assignment:
	// building one over a million data IDs costs a good part of a second.
	mappers := make([]mapper.DataMapper, len(in))
	total := 0
	for i, st := range in {
		if mappers[i], steps[i], err = stepSlices(file, st); err != nil {
			return nil, err
		}
		total += steps[i].Tasks
	}
	gpus, gpusFrom := stepGPUs(in, r)
	needs := scheduler.Needs{Slices: total - 1, CPUsPerSlice: r.CPUsPerSlice, MemPerSliceMB: r.MemPerSliceMB,
		GPUsPerSlice: gpus, Time: r.Time, Strategy: r.Strategy}
	plan, err := scheduler.PlanAllocation(*part, needs)
	if err != nil && gpus > 0 {
		err = fmt.Errorf("jobs: %d GPUs per slice (%s): %w", gpus, gpusFrom, err)
	}
	if errors.Is(err, scheduler.ErrNoFit) && len(steps) > 1 {
		desc := make([]string, len(steps))
		for i, st := range steps {
			desc[i] = st.Pipeline + " " + strconv.Itoa(st.Tasks)
		}
		return nil, fmt.Errorf("jobs: production %s needs %d tasks at once (tasks per step: %s): %w",
			name, total, strings.Join(desc, ", "), err)
	}
	if err != nil {
		return nil, err
	}
	offset := 0
	for i, st := range in {
		if err := dryAssign(st.Policy, mappers[i], stepPlan(plan, offset, steps[i].Tasks), steps[i].Slices); err != nil {
			return nil, err
		}
		offset += steps[i].Tasks
	}
	return &RunPlan{Plan: plan, Steps: steps}, nil
}

// stepGPUs is the GPUs every slice of the run gets, and where that comes
// from, for errors: the request's, else the most any step's policy asks.
func stepGPUs(in []input.Step, r rundir.Request) (int, string) {
	if r.GPUsPerSlice > 0 {
		return r.GPUsPerSlice, "--gpus-per-slice"
	}
	gpus, from := 0, ""
	for _, st := range in {
		if st.Policy.GPUsPerSlice > gpus {
			gpus, from = st.Policy.GPUsPerSlice, st.Policy.File+": gpus_per_slice"
		}
	}
	return gpus, from
}

// stepSlices works out a step's slices (StepPlan) and builds its mapper.
func stepSlices(file string, st input.Step) (mapper.DataMapper, StepPlan, error) {
	p := st.Policy
	name := st.PipelineName()
	m, err := p.NewMapper()
	if err != nil {
		return nil, StepPlan{}, err
	}
	n := st.Slices
	switch {
	case n < 0 && st.Name == "":
		return nil, StepPlan{}, fmt.Errorf("%w: --slices must be positive, got %d", conf.ErrInvalid, n)
	case n < 0:
		return nil, StepPlan{}, fmt.Errorf("%w: %s: pipeline %q: slices must be positive, got %d", conf.ErrInvalid, file, name, n)
	case n == 0:
		if e, ok := m.(mapper.Enumerator); ok && p.PerDataID {
			n = mapper.Count(e)
		} else if n, err = p.SliceCount(); err != nil {
			return nil, StepPlan{}, err
		}
	}
	return m, StepPlan{Pipeline: name, Slices: n, Tasks: n + 1}, nil
}

// stepPlan is plan cut down to tasks offset .. offset+tasks-1 of its
// layout, for the dry assignment of one step: its Layout lists the step's
// tasks on each node they fall on.
func stepPlan(plan scheduler.Plan, offset, tasks int) scheduler.Plan {
	sp := plan
	sp.Tasks, sp.Layout, sp.Nodes, sp.TasksPerNode = tasks, nil, 0, 0
	pos := 0
	for _, t := range plan.Layout {
		lo, hi := max(pos, offset), min(pos+t, offset+tasks)
		if hi > lo {
			sp.Layout = append(sp.Layout, hi-lo)
			sp.TasksPerNode = max(sp.TasksPerNode, hi-lo)
		}
		pos += t
	}
	sp.Nodes = len(sp.Layout)
	return sp
}
