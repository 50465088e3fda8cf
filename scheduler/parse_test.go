package scheduler

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/site"
)

// The testdata files were captured from the local Slurm 22.05 cluster
// (scripts/cluster.sh) with six jobs: 43 completed, 44 exited 3, 45
// killed itself with SIGKILL, 46 running, 47 cancelled while running,
// 48 pending on a dependency (its name holds a "|"). squeue.json keeps
// only those six of the queue's jobs.

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func at(s int64) time.Time { return time.Unix(s, 0) }

func TestParseSqueue(t *testing.T) {
	jobs, err := parseSqueue(readTestdata(t, "squeue.json"))
	if err != nil {
		t.Fatal(err)
	}
	const sub, start = 1795448453, 1795448454
	want := []Job{
		{ID: "43", Name: "cap-ok", State: "COMPLETED", Submitted: at(sub), Started: at(start), Ended: at(start), Nodes: "n1", Partition: "debug", Source: "squeue"},
		{ID: "44", Name: "cap-fail", State: "FAILED", Reason: "NonZeroExitCode", ExitCode: 3, Submitted: at(sub), Started: at(start), Ended: at(start), Nodes: "n1", Partition: "debug", Source: "squeue"},
		{ID: "45", Name: "cap-killed", State: "FAILED", Reason: "JobLaunchFailure", Signal: 9, Submitted: at(sub), Started: at(start), Ended: at(start), Nodes: "n1", Partition: "debug", Source: "squeue"},
		{ID: "46", Name: "cap-running", State: "RUNNING", Submitted: at(sub), Started: at(start), Deadline: at(start + 300), Nodes: "n1", Partition: "debug", Source: "squeue"},
		{ID: "47", Name: "cap-cancelled", State: "CANCELLED", Signal: 15, Submitted: at(sub), Started: at(start), Ended: at(start + 2), Nodes: "n2", Partition: "debug", Source: "squeue"},
		{ID: "48", Name: "cap|pending", State: "PENDING", Reason: "Dependency", Submitted: at(sub), Partition: "debug", Source: "squeue"},
	}
	checkJobs(t, jobs, want)
	for _, j := range jobs {
		if live := j.State == "RUNNING" || j.State == "PENDING"; j.Live() != live {
			t.Errorf("job %s (%s): Live() = %v, want %v", j.ID, j.State, j.Live(), live)
		}
	}
}

func TestParseSacct(t *testing.T) {
	jobs, err := parseSacct(readTestdata(t, "sacct.txt"))
	if err != nil {
		t.Fatal(err)
	}
	const sub, start = 1795448453, 1795448454
	want := []Job{
		{ID: "43", Name: "cap-ok", State: "COMPLETED", Submitted: at(sub), Started: at(start), Ended: at(start), Nodes: "n1", Partition: "debug", Source: "sacct"},
		{ID: "44", Name: "cap-fail", State: "FAILED", ExitCode: 3, Submitted: at(sub), Started: at(start), Ended: at(start), Nodes: "n1", Partition: "debug", Source: "sacct"},
		{ID: "45", Name: "cap-killed", State: "FAILED", Signal: 9, Submitted: at(sub), Started: at(start), Ended: at(start), Nodes: "n1", Partition: "debug", Source: "sacct"},
		{ID: "46", Name: "cap-running", State: "RUNNING", Submitted: at(sub), Started: at(start), Nodes: "n1", Partition: "debug", Source: "sacct"},
		{ID: "47", Name: "cap-cancelled", State: "CANCELLED", Submitted: at(sub), Started: at(start), Ended: at(start + 2), Nodes: "n2", Partition: "debug", Source: "sacct"},
		{ID: "48", Name: "cap|pending", State: "PENDING", Reason: "Dependency", Submitted: at(sub), Partition: "debug", Source: "sacct"},
	}
	checkJobs(t, jobs, want)
}

func checkJobs(t *testing.T, got, want []Job) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d jobs, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("job %d\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestParseBadOutput(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"squeue not JSON", func() error { _, err := parseSqueue([]byte("squeue: error: oops")); return err }(),
			"scheduler: squeue --json: cannot read its output"},
		{"squeue of another version", func() error {
			_, err := parseSqueue([]byte(`{"meta":{"plugin":{"type":"openapi/v0.0.40"},"Slurm":{"release":"23.11.1"}},"jobs":[{"job_state":["RUNNING"]}]}`))
			return err
		}(), `(format "openapi/v0.0.40" of Slurm "23.11.1"; want openapi/v0.0.38, Slurm 22.05)`},
		{"squeue errors", func() error {
			_, err := parseSqueue([]byte(`{"errors":[{"error":"Unable to contact slurm controller","errno":1}],"jobs":[]}`))
			return err
		}(), "scheduler: squeue --json reports errors: {\"error\":\"Unable to contact slurm controller\",\"errno\":1}"},
		{"sacct short line", func() error { _, err := parseSacct([]byte("43|COMPLETED|0:0\n")); return err }(),
			`scheduler: sacct output line 1: want 10 fields`},
		{"sacct bad exit code", func() error { _, err := parseSacct([]byte("43|COMPLETED|zero|None|1|1|1|n1|debug|x\n")); return err }(),
			`scheduler: sacct output line 1: exit code "zero" is not CODE:SIGNAL`},
		{"sinfo not JSON", func() error { _, err := parsePartitions("", nil, []byte("{")); return err }(),
			"scheduler: sinfo --json: cannot read its output"},
		{"partition without a name", func() error {
			_, err := parsePartitions("", []byte("State=UP Nodes=n1\n"), readTestdata(t, "sinfo.json"))
			return err
		}(), `scheduler: scontrol show partition: no PartitionName in "State=UP Nodes=n1"`},
		{"bad MaxNodes", func() error {
			_, err := parsePartitions("", []byte("PartitionName=p MaxNodes=many\n"), readTestdata(t, "sinfo.json"))
			return err
		}(), `scheduler: scontrol show partition p: MaxNodes "many" is not a number`},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, tc.err, tc.want)
		}
	}
}

func TestParsePartitions(t *testing.T) {
	cluster := parseClusterName(readTestdata(t, "scontrol-config.txt"))
	if cluster != "dps" {
		t.Errorf("cluster name %q, want dps", cluster)
	}
	lives, err := parsePartitions(cluster, readTestdata(t, "scontrol-partition.txt"), readTestdata(t, "sinfo.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := site.Live{Name: "debug", Up: true, Default: true, NodeList: "n[1-4]", Nodes: []string{"n1", "n2", "n3", "n4"},
		CPUsPerNode: 4, MemoryMB: 2000, Cluster: "dps"}
	if len(lives) != 1 || !equalLive(lives[0], want) {
		t.Errorf("partitions\n got %+v\nwant [%+v]", lives, want)
	}

	// Limits, a second partition over some of the nodes, nodes of
	// different sizes: the smallest node counts. GPUs (GRES gpu) of any
	// type are counted per node, other GRES are not.
	scontrol := "PartitionName=debug Default=YES MaxNodes=UNLIMITED MaxTime=UNLIMITED Nodes=n[1-4] State=UP\n" +
		"PartitionName=short Default=NO MaxNodes=2 MaxTime=1-00:30:00 Nodes=n[3-4] State=DOWN TRES=cpu=8,mem=4000M AllowAccounts=physics,science AllowQos=ALL\n"
	sinfo := `{"errors":[],"nodes":[
		{"name":"n1","cpus":4,"real_memory":2000,"partitions":["debug"]},
		{"name":"n2","cpus":4,"real_memory":2000,"partitions":["debug"]},
		{"name":"n3","cpus":8,"real_memory":1000,"partitions":["debug","short"],"features":"ib,intel","gres":"gpu:2"},
		{"name":"n4","cpus":2,"real_memory":3000,"partitions":["debug","short"],"features":"amd,ib","gres":"gpu:a100:1(S:0),gpu:v100:2(S:1),mps:100"}]}`
	lives, err = parsePartitions("c", []byte(scontrol), []byte(sinfo))
	if err != nil {
		t.Fatal(err)
	}
	wants := []site.Live{
		{Name: "debug", Up: true, Default: true, NodeList: "n[1-4]", Nodes: []string{"n1", "n2", "n3", "n4"}, CPUsPerNode: 2, MemoryMB: 1000, Cluster: "c",
			Features: []string{"amd", "ib", "intel"}, GPUs: map[string]int{"n3": 2, "n4": 3}},
		{Name: "short", NodeList: "n[3-4]", Nodes: []string{"n3", "n4"}, CPUsPerNode: 2, MemoryMB: 1000,
			MaxTime: 24*time.Hour + 30*time.Minute, MaxNodes: 2, Cluster: "c", Features: []string{"amd", "ib", "intel"},
			AllowedAccounts: []string{"physics", "science"}, GPUs: map[string]int{"n3": 2, "n4": 3}},
	}
	if len(lives) != len(wants) {
		t.Fatalf("got %d partitions, want %d: %+v", len(lives), len(wants), lives)
	}
	for i := range wants {
		if !equalLive(lives[i], wants[i]) {
			t.Errorf("partition %d\n got %+v\nwant %+v", i, lives[i], wants[i])
		}
	}
}

func equalLive(a, b site.Live) bool {
	return a.Name == b.Name && a.Up == b.Up && a.Default == b.Default && a.NodeList == b.NodeList &&
		slices.Equal(a.Nodes, b.Nodes) && a.CPUsPerNode == b.CPUsPerNode && a.MemoryMB == b.MemoryMB &&
		a.MaxTime == b.MaxTime && a.MaxNodes == b.MaxNodes && a.Cluster == b.Cluster && slices.Equal(a.Features, b.Features) &&
		slices.Equal(a.AllowedAccounts, b.AllowedAccounts) && slices.Equal(a.AllowedQoS, b.AllowedQoS) &&
		maps.Equal(a.GPUs, b.GPUs)
}

func TestParseSbatch(t *testing.T) {
	for out, want := range map[string]string{
		"123\n":                  "123",
		"124;dps\n":              "124",
		"sbatch: warning\n125\n": "125",
	} {
		if got, err := parseSbatch([]byte(out)); err != nil || got != want {
			t.Errorf("parseSbatch(%q) = %q, %v; want %q", out, got, err, want)
		}
	}
	for _, out := range []string{"", "Submitted batch job 123\n", "12a\n"} {
		if got, err := parseSbatch([]byte(out)); err == nil {
			t.Errorf("parseSbatch(%q) = %q, want an error", out, got)
		}
	}
}

func TestJobLive(t *testing.T) {
	for state, live := range map[string]bool{
		"PENDING": true, "CONFIGURING": true, "RUNNING": true, "COMPLETING": true, "SUSPENDED": true,
		"REQUEUED": true, "REQUEUE_HOLD": true, "SPECIAL_EXIT": true, "RESIZING": true, "SIGNALING": true,
		"STAGE_OUT": true, "SOME_NEW_STATE": true,
		"COMPLETED": false, "FAILED": false, "CANCELLED": false, "TIMEOUT": false, "NODE_FAIL": false,
		"OUT_OF_MEMORY": false, "PREEMPTED": false, "BOOT_FAIL": false, "DEADLINE": false, "": false,
	} {
		if got := (Job{State: state}).Live(); got != live {
			t.Errorf("Job{State: %q}.Live() = %v, want %v", state, got, live)
		}
	}
}
