package jobs

import (
	"errors"
	"fmt"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/mapper"
	"github.com/dpsbatch/dpsbatch/scheduler"
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
