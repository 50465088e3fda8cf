package jobs

import (
	"errors"
	"fmt"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/mapper"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/site"
)

// Request is what an operator asks of a run's allocation; zero values
// take the defaults noted.
type Request struct {
	Partition     string             // "" the site's default
	Slices        int                // 0: the policy's count (or one per data ID)
	CPUsPerSlice  int                // 0: 1
	MemPerSliceMB int                // 0: do not ask for memory
	Time          time.Duration      // 0: the partition's limit
	Strategy      scheduler.Strategy // "": pack
}

// Planned is a run's allocation and what it was planned from.
type Planned struct {
	Partition *site.Partition
	Needs     scheduler.Needs
	Plan      scheduler.Plan
	Slices    int
}

// PlanRun sizes a run of policy p on site s: the number of slices (the
// request's, else the policy's, else one per data ID), then the
// allocation (scheduler.PlanAllocation), then a dry assignment of the data
// IDs to slices placed as planned, so a mapper that cannot place every
// data ID is found before anything is submitted. Mappers that place by
// host name (host-table) are checked when the job starts, on the real
// hosts. Errors about the request or the policy wrap conf.ErrInvalid.
func PlanRun(s *site.Site, p *harness.Policy, r Request) (*Planned, error) {
	part, err := s.Partition(r.Partition)
	if err != nil {
		return nil, err
	}
	n := r.Slices
	if n < 0 {
		return nil, fmt.Errorf("%w: --slices must be positive, got %d", conf.ErrInvalid, n)
	}
	// One mapper serves the count and the dry assignment: building one
	// over a million data IDs costs a good part of a second.
	m, err := p.NewMapper()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		n = p.Slices
		if e, ok := m.(mapper.Enumerator); ok && p.PerDataID {
			n = len(e.DataIDs())
		} else if n, err = p.SliceCount(); err != nil {
			return nil, err
		}
	}
	needs := scheduler.Needs{Slices: n, CPUsPerSlice: r.CPUsPerSlice, MemPerSliceMB: r.MemPerSliceMB,
		Time: r.Time, Strategy: r.Strategy}
	plan, err := scheduler.PlanAllocation(*part, needs)
	if err != nil {
		return nil, err
	}
	if err := dryAssign(p, m, plan, n); err != nil {
		return nil, err
	}
	return &Planned{Partition: part, Needs: needs, Plan: plan, Slices: n}, nil
}

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
					CPUs: plan.CPUsPerTask, MemoryMB: int64(plan.MemPerCPUMB * plan.CPUsPerTask)})
			}
			rank++
		}
	}
	for len(hosts) < slices { // a plan without a layout
		rank := len(hosts) + 1
		hosts = append(hosts, mapper.HostInfo{Rank: rank, Host: "node1", Node: "node1", CPUs: max(plan.CPUsPerTask, 1)})
	}
	if _, err := mapper.Assign(m, hosts); err != nil { // Assign checks the result
		if errors.Is(err, conf.ErrInvalid) {
			return err
		}
		return fmt.Errorf("%w: %s: mapper %s with %d slices: %v", conf.ErrInvalid, p.File, p.Mapper.Type, slices, err)
	}
	return nil
}
