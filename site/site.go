// Package site owns the site file: what a site admin writes once to
// describe a cluster to dpsbatch — its partitions and their limits, the
// default account, QoS, constraint, reservation and environment, extra
// sbatch options, the launcher, the environment setup lines of every job,
// the runs root and the event broker; a partition may have its own
// account, QoS, constraint, reservation, setup lines and environment, and
// its GPUs (GRES gpu: how many each GPU node has, and which nodes). It
// loads and validates the file (Load, Parse), finds a partition by name
// (Site.Partition) and what its jobs get (Site.Settings), compares the
// file with the live cluster (Check, Unlisted), its accounts and QoS with
// the cluster's accounting (CheckAccounting) and its reservations with
// the cluster's (CheckReservations), and writes a starting file from it
// (Discover); it also reads and writes Slurm host lists such as n[1-4]
// (ExpandHostList, CompressHostList). It knows nothing of Slurm's tools:
// the live description comes from the scheduler package as []Live and
// Accounting. It also refuses, in sbatch_options and launcher.flags, every
// spelling of the options dpsbatch sets itself (optionRules).
package site

import (
	"slices"
	"time"
)

// Site is a loaded and validated site file.
type Site struct {
	Path     string // the file it was loaded from by Load ("" when from Parse)
	Cluster  string // cluster name, optional: checked against the live cluster's when set
	RunsRoot string // absolute directory under which runs are created by name
	Account  string // default sbatch --account, optional
	QoS      string // default sbatch --qos, optional
	// Constraint is the default sbatch --constraint (node features, such
	// as intel&ib), and Reservation the default --reservation; optional.
	Constraint, Reservation string
	// Env holds variables every job exports before the launch, in file
	// order: name and value.
	Env [][2]string
	// DefaultPartition is used when a submission names none: the one
	// marked default, else the only one; "" when there are several and
	// none is marked.
	DefaultPartition string
	Partitions       []Partition
	// Sbatch holds extra sbatch options, each one "--name" or
	// "--name=value", put on #SBATCH lines of every job.
	Sbatch   []string
	Launcher Launcher
	// Setup holds environment setup lines (module load ..., source ...)
	// that every job script runs before the launcher, verbatim: the site
	// admin writes them and they are trusted shell.
	Setup []string
	// Template is the path of a replacement sbatch template (absolute, or
	// made absolute relative to the site file's folder); "" for the
	// embedded one.
	Template string
	// TimeWarning is how long before the time limit Slurm signals the job
	// so that it stops at a clean visit boundary (default 5m).
	TimeWarning time.Duration
	Broker      Broker
	// Scheduler says how dpsbatch reaches Slurm: its tools, or slurmrestd.
	Scheduler Scheduler
}

// Partition is one Slurm partition as the site describes it. Nodes are
// homogeneous: every node has CPUsPerNode CPUs and MemoryMB of memory.
type Partition struct {
	Name        string
	Default     bool
	CPUsPerNode int
	MemoryMB    int // per node, in megabytes; 0 when the site file gives none
	Nodes       int // node count (from NodeList when that is given)
	// NodeList is Slurm's host list (n[1-4]), optional.
	NodeList string
	MaxTime  time.Duration // 0: no limit
	MaxNodes int           // per job; 0: Nodes

	// Account, QoS, Constraint and Reservation, when set, replace the
	// site's for jobs on this partition. Setup lines run after the site's;
	// Env entries replace the site's of the same name and add the others.
	// Site.Settings combines them.
	Account, QoS, Constraint, Reservation string
	Setup                                 []string
	Env                                   [][2]string

	// GPUsPerNode is how many GPUs (Slurm GRES gpu) each GPU node of the
	// partition has, 0 for none. GPUNodes is the Slurm host list of the
	// nodes that have them when not all do ("" when every node has).
	GPUsPerNode int
	GPUNodes    string
}

// GPUNodeCount is how many of p's nodes have GPUs: those GPUNodes lists,
// else all of them (none when GPUsPerNode is 0).
func (p Partition) GPUNodeCount() int {
	if p.GPUsPerNode == 0 {
		return 0
	}
	if names, err := ExpandHostList(p.GPUNodes); p.GPUNodes != "" && err == nil {
		return len(names)
	}
	return p.Nodes
}

// Launcher says how a job starts the ranks of a pipeline.
type Launcher struct {
	Kind  string   // "srun" (default) or "mpirun"
	Flags []string // extra flags for it, such as --mpi=pmix
	// Comm is the communicator the ranks use: "tcp", "mpi" or "auto"
	// (default: mpi when Kind is mpirun or Flags name --mpi=pmix*, else tcp).
	// Load resolves auto: a loaded Site's Comm is tcp or mpi.
	Comm string
}

// Broker names the event broker runs use.
type Broker struct {
	Kind string // "embedded" (default) or "external"
	// URLs of an external NATS server or cluster (nats://, tls://, ws://
	// or wss://, without user or password).
	URLs []string
	// Credentials: a NATS credentials file, or a token read from a file or
	// an environment variable. Never logged, never put in job scripts. At
	// most one is set, only for an external broker; the files' paths are
	// absolute (relative ones are taken from the site file's folder) and
	// are not opened by Load.
	CredentialsFile string
	TokenFile       string
	TokenEnv        string
	// StreamSizeMB is the most a run's events may take, in megabytes: the
	// limit of the JetStream stream that keeps them, and of the embedded
	// broker's store (default DefaultStreamSizeMB). At the limit a new
	// event is refused with an error; no stored event is dropped for it.
	// An embedded broker needs this much free space in the run directory
	// (submit and resume check). For an external broker it applies only
	// when dpsbatch creates the shared stream (the first run to use the
	// server): a stream that exists keeps the limits it was given.
	StreamSizeMB int
}

// DefaultStreamSizeMB is broker.stream_size when the site file gives none:
// 256 MiB, some 500,000 events of half a kilobyte.
const DefaultStreamSizeMB = 256

// Live is one partition as the live cluster reports it (sinfo, or
// slurmrestd's /partitions), filled in by the scheduler package.
type Live struct {
	Name        string
	Up          bool
	Default     bool
	NodeList    string        // Slurm host list as reported
	Nodes       []string      // node names
	CPUsPerNode int           // smallest over the partition's nodes
	MemoryMB    int           // smallest over the partition's nodes
	MaxTime     time.Duration // 0: unlimited
	MaxNodes    int           // 0: unlimited
	Cluster     string
	// Features are the node features (sinfo %f) of any of the
	// partition's nodes, sorted; nil when none has any.
	Features []string
	// AllowedAccounts and AllowedQoS are the accounts and QoS whose jobs
	// the partition takes (AllowAccounts, AllowQos); nil when any.
	AllowedAccounts, AllowedQoS []string
	// GPUs holds the GPUs (GRES gpu) of each of the partition's nodes
	// that has any, by node name; nil when none has.
	GPUs map[string]int
}

// AddGPUs records that node has n GPUs (nothing when n is 0). The
// scheduler package calls it for every node of the partition.
func (l *Live) AddGPUs(node string, n int) {
	if n <= 0 {
		return
	}
	if l.GPUs == nil {
		l.GPUs = map[string]int{}
	}
	l.GPUs[node] = n
}

// AddFeatures adds a node's features to l.Features, keeping them sorted
// and each once. The scheduler package calls it for every node of the
// partition.
func (l *Live) AddFeatures(features ...string) {
	for _, f := range features {
		if i, found := slices.BinarySearch(l.Features, f); !found && f != "" {
			l.Features = slices.Insert(l.Features, i, f)
		}
	}
}
