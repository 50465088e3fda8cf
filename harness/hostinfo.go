package harness

import (
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/dpsbatch/dpsbatch/mapper"
)

// thisTask describes the task this process runs as, for the DataMapper:
// what Slurm (or mpirun) gave it, else what the machine has. A distributed
// rank calls it once at start (Run does when RunOptions has no Host);
// thisMachine describes the whole machine instead, for runs in one process.
//
//   - Host: os.Hostname().
//   - Node: SLURMD_NODENAME (the name Slurm's tools show; several simulated
//     nodes may share one host), else Host.
//   - Rank: OMPI_COMM_WORLD_RANK (mpirun), PMIX_RANK (srun --mpi=pmix),
//     SLURM_PROCID (srun), else 0. Run replaces it with the communicator's.
//   - LocalRank: OMPI_COMM_WORLD_LOCAL_RANK (mpirun), SLURM_LOCALID (srun),
//     else 0.
//   - CPUs: SLURM_CPUS_PER_TASK, else the CPUs in this process's affinity
//     mask (sched_getaffinity), else runtime.NumCPU().
//   - MemoryMB: SLURM_MEM_PER_CPU × CPUs; else SLURM_MEM_PER_NODE divided
//     by the tasks on this node; else MemTotal of /proc/meminfo, divided by
//     the tasks on this node when they are known. The tasks on a node come
//     from OMPI_COMM_WORLD_LOCAL_SIZE, else from SLURM_STEP_TASKS_PER_NODE
//     (or SLURM_TASKS_PER_NODE) at index SLURM_NODEID ("2(x3),1" form).
//   - GPUs: CUDA_VISIBLE_DEVICES, which srun sets per task for a job with
//     GPUs (--gpus-per-task), else SLURM_STEP_GPUS; "" when neither is set.
//
// Malformed or non-positive values are ignored, as if unset.
func thisTask() mapper.HostInfo {
	return taskHost(hostProbe{
		lookup:   os.LookupEnv,
		hostname: os.Hostname,
		affinity: affinityCPUs,
		numCPU:   runtime.NumCPU,
		memTotal: memTotalMB,
	})
}

// hostProbe is where thisTask looks; tests inject fakes.
type hostProbe struct {
	lookup   func(string) (string, bool)
	hostname func() (string, error)
	affinity func() int // 0 when unknown
	numCPU   func() int
	memTotal func() int64 // MiB, 0 when unknown
}

func taskHost(p hostProbe) mapper.HostInfo {
	var h mapper.HostInfo
	h.Host, _ = p.hostname()
	h.Node = p.str("SLURMD_NODENAME")
	if h.Node == "" {
		h.Node = h.Host
	}
	h.Rank, _ = p.first(0, "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")
	h.LocalRank, _ = p.first(0, "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")

	if n, ok := p.first(1, "SLURM_CPUS_PER_TASK"); ok {
		h.CPUs = n
	} else if n := p.affinity(); n > 0 {
		h.CPUs = n
	} else {
		h.CPUs = p.numCPU()
	}

	h.GPUs = p.str("CUDA_VISIBLE_DEVICES")
	if h.GPUs == "" {
		h.GPUs = p.str("SLURM_STEP_GPUS")
	}

	tasks := p.tasksOnNode()
	if mb, ok := p.first(1, "SLURM_MEM_PER_CPU"); ok {
		h.MemoryMB = int64(mb) * int64(h.CPUs)
	} else if mb, ok := p.first(1, "SLURM_MEM_PER_NODE"); ok {
		h.MemoryMB = int64(mb) / int64(tasks)
	} else {
		h.MemoryMB = p.memTotal() / int64(tasks)
	}
	return h
}

func (p hostProbe) str(name string) string {
	v, _ := p.lookup(name)
	return strings.TrimSpace(v)
}

// first returns the value of the first variable of names that holds an
// integer of at least min.
func (p hostProbe) first(min int, names ...string) (int, bool) {
	for _, name := range names {
		if n, err := strconv.Atoi(p.str(name)); err == nil && n >= min {
			return n, true
		}
	}
	return 0, false
}

// tasksOnNode is the number of tasks of this step on this node, 1 when
// unknown.
func (p hostProbe) tasksOnNode() int {
	if n, ok := p.first(1, "OMPI_COMM_WORLD_LOCAL_SIZE"); ok {
		return n
	}
	node, ok := p.first(0, "SLURM_NODEID")
	if !ok {
		return 1
	}
	for _, name := range []string{"SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"} {
		if n := slurmCountAt(p.str(name), node); n > 0 {
			return n
		}
	}
	return 1
}

// slurmCountAt reads Slurm's compressed per-node list ("2(x3),1" means
// 2,2,2,1) at index i, or returns 0 when the list is malformed or short.
func slurmCountAt(list string, i int) int {
	if list == "" {
		return 0
	}
	for _, part := range strings.Split(list, ",") {
		val, reps := part, 1
		if open := strings.IndexByte(part, '('); open >= 0 {
			inner, ok := strings.CutPrefix(part[open:], "(x")
			inner, ok2 := strings.CutSuffix(inner, ")")
			r, err := strconv.Atoi(inner)
			if !ok || !ok2 || err != nil || r < 1 {
				return 0
			}
			val, reps = part[:open], r
		}
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 {
			return 0
		}
		if i < reps {
			return n
		}
		i -= reps
	}
	return 0
}
