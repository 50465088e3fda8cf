package harness

import (
	"errors"
	"testing"

	"github.com/dpsbatch/dpsbatch/mapper"
)

// fakeProbe is a task environment: env holds the variables; the machine
// has host "box", 8 CPUs in its affinity mask, 16 online, 32000 MiB.
func fakeProbe(env map[string]string) hostProbe {
	return hostProbe{
		lookup:   func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		hostname: func() (string, error) { return "box", nil },
		affinity: func() int { return 8 },
		numCPU:   func() int { return 16 },
		memTotal: func() int64 { return 32000 },
	}
}

func TestTaskHost(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		mod  func(*hostProbe)
		want mapper.HostInfo
	}{
		{name: "no scheduler", env: nil,
			want: mapper.HostInfo{Host: "box", Node: "box", CPUs: 8, MemoryMB: 32000}},
		{name: "no affinity", env: nil, mod: func(p *hostProbe) { p.affinity = func() int { return 0 } },
			want: mapper.HostInfo{Host: "box", Node: "box", CPUs: 16, MemoryMB: 32000}},
		{name: "no hostname", env: map[string]string{"SLURMD_NODENAME": "n1"},
			mod:  func(p *hostProbe) { p.hostname = func() (string, error) { return "", errors.New("no") } },
			want: mapper.HostInfo{Host: "", Node: "n1", CPUs: 8, MemoryMB: 32000}},
		{name: "srun, memory per CPU", env: map[string]string{
			"SLURMD_NODENAME": "n3", "SLURM_PROCID": "5", "SLURM_LOCALID": "1",
			"SLURM_CPUS_PER_TASK": "2", "SLURM_MEM_PER_CPU": "500", "SLURM_MEM_PER_NODE": "9999",
			"SLURM_NODEID": "2", "SLURM_STEP_TASKS_PER_NODE": "2(x3),1"},
			want: mapper.HostInfo{Host: "box", Node: "n3", Rank: 5, LocalRank: 1, CPUs: 2, MemoryMB: 1000}},
		{name: "srun, memory per node shared by the node's tasks", env: map[string]string{
			"SLURMD_NODENAME": "n4", "SLURM_PROCID": "6", "SLURM_LOCALID": "0",
			"SLURM_MEM_PER_NODE": "3000", "SLURM_NODEID": "3", "SLURM_STEP_TASKS_PER_NODE": "2(x3),1",
			"SLURM_TASKS_PER_NODE": "4(x4)"},
			want: mapper.HostInfo{Host: "box", Node: "n4", Rank: 6, LocalRank: 0, CPUs: 8, MemoryMB: 3000}},
		{name: "srun, no memory limit: the machine's, shared", env: map[string]string{
			"SLURMD_NODENAME": "n1", "SLURM_PROCID": "1", "SLURM_LOCALID": "1",
			"SLURM_NODEID": "0", "SLURM_STEP_TASKS_PER_NODE": "4,1"},
			want: mapper.HostInfo{Host: "box", Node: "n1", Rank: 1, LocalRank: 1, CPUs: 8, MemoryMB: 8000}},
		{name: "batch script: the job's tasks per node", env: map[string]string{
			"SLURM_NODEID": "1", "SLURM_TASKS_PER_NODE": "1,3", "SLURM_MEM_PER_NODE": "600"},
			want: mapper.HostInfo{Host: "box", Node: "box", CPUs: 8, MemoryMB: 200}},
		{name: "srun --mpi=pmix", env: map[string]string{
			"SLURMD_NODENAME": "n2", "PMIX_RANK": "2", "SLURM_PROCID": "2", "SLURM_LOCALID": "2",
			"SLURM_NODEID": "0", "SLURM_STEP_TASKS_PER_NODE": "3"},
			want: mapper.HostInfo{Host: "box", Node: "n2", Rank: 2, LocalRank: 2, CPUs: 8, MemoryMB: 10666}},
		{name: "mpirun inside an allocation", env: map[string]string{
			// The Slurm variables are the daemon step's, not this rank's.
			"SLURMD_NODENAME": "n2", "SLURM_PROCID": "1", "SLURM_LOCALID": "0", "SLURM_NODEID": "1",
			"SLURM_STEP_TASKS_PER_NODE": "1(x2)", "SLURM_MEM_PER_NODE": "1200",
			"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "3",
			"OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"},
			want: mapper.HostInfo{Host: "box", Node: "n2", Rank: 2, LocalRank: 1, CPUs: 8, MemoryMB: 600}},
		{name: "malformed values are ignored", env: map[string]string{
			"SLURM_PROCID": "x", "SLURM_LOCALID": "-1", "SLURM_CPUS_PER_TASK": "0",
			"SLURM_MEM_PER_CPU": "lots", "SLURM_MEM_PER_NODE": "0",
			"SLURM_NODEID": "0", "SLURM_STEP_TASKS_PER_NODE": "2(x"},
			want: mapper.HostInfo{Host: "box", Node: "box", CPUs: 8, MemoryMB: 32000}},
		{name: "srun --gpus-per-task: the task's GPUs", env: map[string]string{
			"SLURMD_NODENAME": "n3", "SLURM_PROCID": "1", "CUDA_VISIBLE_DEVICES": "1", "SLURM_STEP_GPUS": "0,1"},
			want: mapper.HostInfo{Host: "box", Node: "n3", Rank: 1, CPUs: 8, MemoryMB: 32000, GPUs: "1"}},
		{name: "GPUs of the step when CUDA_VISIBLE_DEVICES is unset", env: map[string]string{
			"SLURMD_NODENAME": "n4", "SLURM_STEP_GPUS": "0,1"},
			want: mapper.HostInfo{Host: "box", Node: "n4", CPUs: 8, MemoryMB: 32000, GPUs: "0,1"}},
		{name: "spaces around values", env: map[string]string{
			"SLURMD_NODENAME": " n1 ", "SLURM_PROCID": " 3", "SLURM_CPUS_PER_TASK": "4 "},
			want: mapper.HostInfo{Host: "box", Node: "n1", Rank: 3, CPUs: 4, MemoryMB: 32000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := fakeProbe(tc.env)
			if tc.mod != nil {
				tc.mod(&p)
			}
			got := taskHost(p)
			if got.Host != tc.want.Host {
				t.Errorf("Host = %q, want %q", got.Host, tc.want.Host)
			}
			if got.Node != tc.want.Node {
				t.Errorf("Node = %q, want %q", got.Node, tc.want.Node)
			}
			if got.Rank != tc.want.Rank {
				t.Errorf("Rank = %d, want %d", got.Rank, tc.want.Rank)
			}
			if got.LocalRank != tc.want.LocalRank {
				t.Errorf("LocalRank = %d, want %d", got.LocalRank, tc.want.LocalRank)
			}
			if got.CPUs != tc.want.CPUs {
				t.Errorf("CPUs = %d, want %d", got.CPUs, tc.want.CPUs)
			}
			if got.MemoryMB != tc.want.MemoryMB {
				t.Errorf("MemoryMB = %d, want %d", got.MemoryMB, tc.want.MemoryMB)
			}
			if got.GPUs != tc.want.GPUs {
				t.Errorf("GPUs = %q, want %q", got.GPUs, tc.want.GPUs)
			}
		})
	}
}

func TestSlurmCountAt(t *testing.T) {
	for _, tc := range []struct {
		list string
		i    int
		want int
	}{
		{"4", 0, 4}, {"4", 1, 0}, {"2(x3),1", 0, 2}, {"2(x3),1", 2, 2}, {"2(x3),1", 3, 1},
		{"2(x3),1", 4, 0}, {"1,2(x2),3", 2, 2}, {"1,2(x2),3", 3, 3}, {"", 0, 0},
		{"2(x0)", 0, 0}, {"a", 0, 0}, {"2(3)", 0, 0}, {"2(x3", 0, 0},
	} {
		if got := slurmCountAt(tc.list, tc.i); got != tc.want {
			t.Errorf("slurmCountAt(%q, %d) = %d, want %d", tc.list, tc.i, got, tc.want)
		}
	}
}

// TestTaskHostHere checks the real probes answer on this machine.
func TestTaskHostHere(t *testing.T) {
	h := thisTask()
	if h.CPUs < 1 || h.Node == "" {
		t.Errorf("thisTask() = %+v, want CPUs >= 1 and a node name", h)
	}
	if n := affinityCPUs(); n < 0 {
		t.Errorf("affinityCPUs() = %d", n)
	}
}
