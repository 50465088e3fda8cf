package slurmrest

import "time"

// The types here are the client's own, the same whatever version of the
// API the server speaks: each version's file (v0038.go, ...) reads its
// field shapes into them.

// Ping is one controller's answer to a ping.
type Ping struct {
	Host string
	Up   bool   // "UP"
	Mode string // primary, backup
}

// JobDesc describes a job to submit, with its script (Client.Submit).
// Zero fields are left to Slurm's defaults.
type JobDesc struct {
	Name      string
	Partition string
	Account   string
	QoS       string
	// WorkDir is the job's working directory, absolute. Without one the
	// job runs in slurmrestd's own folder.
	WorkDir string
	// Environment is the job's environment: slurmrestd gives a job none
	// of its own, and refuses an empty one. Submit sets PATH when it is
	// missing.
	Environment  map[string]string
	Output       string // standard output (and error, unless Error is set), a pattern like sbatch's
	Error        string
	OpenAppend   bool // open the output files for appending (--open-mode=append)
	Nodes        int  // --nodes (minimum)
	MaxNodes     int  // --nodes=MIN-MAX's MAX; 0: MIN
	Tasks        int  // --ntasks
	TasksPerNode int  // --ntasks-per-node
	CPUsPerTask  int  // --cpus-per-task
	MemPerCPUMB  int  // --mem-per-cpu, in megabytes
	MemPerNodeMB int  // --mem, in megabytes
	// TimeLimit is --time, rounded up to whole minutes; 0: the partition's.
	TimeLimit   time.Duration
	Dependency  string // --dependency, such as afterany:123
	Constraint  string // --constraint (node features)
	Reservation string
	// GRES is --gres per node, such as gpu:2; GPUsPerTask is
	// --gpus-per-task, such as 1.
	GRES, GPUsPerTask string
	// Signal is --signal: [B:]SIG[@SECONDS], sent before the time limit.
	Signal string
	// Requeue, when not nil, is --requeue (true) or --no-requeue.
	Requeue *bool
	// Exclusive is --exclusive: "true" (whole nodes), "user" or "mcs".
	Exclusive string
}

// Job is a job as the controller (Jobs, Job) or accounting (FinishedJobs)
// describes it.
type Job struct {
	ID        string // 123, or 12_3 for an array task
	Name      string
	User      string
	Account   string
	Partition string
	QoS       string
	// State is Slurm's base state in upper case (PENDING, RUNNING,
	// COMPLETED, FAILED, CANCELLED, TIMEOUT, ...).
	State string
	// Reason is why the job waits or how it ended; "" for none.
	Reason string
	// ExitCode and Signal are how the batch script ended. Slurm 22.05's
	// accounting API (dbv0.0.38) reports 0 for jobs that failed, as its
	// sacct --json does: ExitKnown is false then, and ExitCode is 0.
	ExitCode, Signal int
	ExitKnown        bool
	// Submitted, Started and Ended are zero until they happened; Expected
	// is when a pending job is expected to start (zero: unknown).
	Submitted, Started, Ended, Expected time.Time
	// TimeLimit is 0 for none.
	TimeLimit time.Duration
	Nodes     string // Slurm host list; "" before the job starts
	Restarts  int    // how many times Slurm requeued it
	WorkDir   string
}

// Node is one node of the cluster.
type Node struct {
	Name       string
	State      string // idle, mixed, allocated, down, ... (lower case)
	Flags      []string
	CPUs       int
	MemoryMB   int
	Partitions []string
	Features   []string
	GRES       string // gpu:2, or ""
}

// Partition is one partition of the cluster.
type Partition struct {
	Name     string
	Up       bool
	Default  bool
	NodeList string        // Slurm host list, n[1-4]
	MaxTime  time.Duration // 0: unlimited
	MaxNodes int           // per job; 0: unlimited
	// AllowedAccounts and AllowedQoS are empty when any may use it.
	AllowedAccounts, AllowedQoS []string
}

// Association is one of accounting's associations: a user (or an
// account's own, with no user) in an account on a cluster, maybe limited
// to a partition, with the QoS it may use.
type Association struct {
	Cluster   string
	Account   string
	Partition string // "" for all
	User      string
	QoS       []string
	Default   bool // the user's default account
}

// JobFilter selects accounting's finished jobs (FinishedJobs).
type JobFilter struct {
	// Name is the job name; Since keeps jobs that started (or ended)
	// since, Slurm's start_time; both optional, but a query needs one.
	Name  string
	Since time.Time
}
