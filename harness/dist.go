package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness/comm"
	"github.com/dpsbatch/dpsbatch/mapper"
)

// DistRun describes one rank of a run whose ranks are separate processes,
// started by srun or mpirun (`dpsbatch run`), or goroutines (RunRanks).
// Every rank gets the same DistRun but for Comm and Host; VisitsPath,
// Recorder, Broker, Feed and Stop matter on rank 0 (the Pipeline) only.
type DistRun struct {
	// Comm connects this rank to the others; built by the caller, on the
	// goroutine that then calls RunRank (see comm.NewMPI). RunRank does not
	// close it.
	Comm comm.Comm
	// PolicyPath is the pipeline policy; every rank loads and validates
	// it, so it must be on a file system all nodes see.
	PolicyPath string
	// VisitsPath is the visit file: rank 0 reads it and publishes one
	// trigger event per visit, then no-more-data. Ignored with Feed.
	VisitsPath string
	RunID      string
	// RunDir is the run directory, which must exist and be shared by all
	// nodes: relative locations resolve against it.
	RunDir string
	// Host describes this rank's task; the zero value means TaskHost().
	Host   mapper.HostInfo
	Logger *slog.Logger // nil discards

	Recorder Recorder      // rank 0: hears progress besides the Summary; may be nil
	Broker   events.Broker // rank 0: nil means an in-memory broker
	// Feed says the caller publishes the trigger events and the
	// no-more-data that ends the run on Broker itself.
	Feed bool
	// Stop, when closed, stops the run at the next visit boundary.
	Stop <-chan struct{}
	// StopSignals, on every rank, hears of the stop signals this
	// process received (Config.StopSignals); nil hears of none.
	StopSignals *StopSignals
	// Heartbeat: rank 0 publishes a heartbeat this often (Config.Heartbeat).
	Heartbeat time.Duration
	// PipelineDir, when set, is what {pipelinedir} names instead of the
	// policy file's folder: a batch run keeps a copy of the policy in its
	// run directory while the scripts it names stay where they were.
	PipelineDir string
	// Slices and SlicesFrom, on rank 0, are the number of slices the run
	// was asked to have and who asked (such as "submit --slices" or
	// "production entry \"detect\""); Slices 0 means the policy's count.
	// The run has as many slices as the communicator has ranks less one:
	// rank 0 warns when that differs from what was asked.
	Slices     int
	SlicesFrom string
	// Name, when set, is the pipeline's name in this run instead of the
	// policy's (a production entry's name): every rank uses it for
	// {pipeline}, and the Pipeline in every event it publishes, so one
	// pipeline has one name throughout a production's run.
	Name string
	// Rank0, when set, is called on rank 0 once the policy is loaded and
	// valid, before the ranks agree to start: it may set Recorder, Broker
	// and Feed (a batch run opens its state file and feeds its visits
	// here). An error from it is every rank's, so no rank is left waiting.
	Rank0 func(p *Policy, dr *DistRun) error
}

// RunRank runs this process's rank of a distributed run and returns, on
// rank 0, the run's Summary (nil on the other ranks).
//
// Every rank of dr.Comm calls it, on the goroutine that owns the
// communicator. First every rank loads the policy (rank 0 also the visit
// file) and the ranks agree: if any rank found a problem, every rank
// returns an error naming it, wrapping ErrInvalid when the problem is bad
// input, and the communicator stays usable so the caller can close it
// cleanly. Then the ranks run the pipeline (Run): the number of slices is
// the communicator's size less one, whatever the policy says.
//
// The error wraps ErrVisitsFailed when the run ended but visits failed,
// ErrInterrupted when ctx was cancelled or a stop request ended the run
// before every visit was run, ErrInvalid for bad input, comm.ErrAborted
// when another rank failed.
func RunRank(ctx context.Context, dr DistRun) (*Summary, error) {
	c := dr.Comm
	log := dr.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p, visits, prepErr := dr.prepare(c)
	if err := agree(c, prepErr); err != nil {
		return nil, err
	}
	runDir, _ := filepath.Abs(dr.RunDir) // checked by prepare
	host := dr.Host
	if host == (mapper.HostInfo{}) {
		host = TaskHost()
	}
	log.Info("rank started", "run", dr.RunID, "rank", c.Rank(), "size", c.Size(), "node", host.Node,
		"host", host.Host, "localRank", host.LocalRank, "cpus", host.CPUs, "memoryMB", host.MemoryMB)
	cfg := Config{Policy: p, RunID: dr.RunID, RunDir: runDir, Comm: c, Host: host, Logger: log, StopSignals: dr.StopSignals}
	if c.Rank() > 0 {
		return nil, Run(ctx, cfg)
	}

	dr.warnSlices(p, c.Size()-1, log)
	cfg.Broker, cfg.Recorder, cfg.Stop, cfg.Heartbeat = dr.Broker, dr.Recorder, dr.Stop, dr.Heartbeat
	return runPipeline(ctx, cfg, dr.Feed, visits)
}

// warnSlices warns when the run has another number of slices than was
// asked for: dr.Slices, else the policy's count.
func (dr *DistRun) warnSlices(p *Policy, slices int, log *slog.Logger) {
	asked, from := dr.Slices, dr.SlicesFrom
	if asked <= 0 {
		n, err := p.SliceCount()
		if err != nil {
			return
		}
		asked, from = n, "the policy's slices"
	}
	if from == "" {
		from = "the request"
	}
	if asked != slices {
		log.Warn("the number of slices differs from what was asked: the run has one slice per rank after the first",
			"run", dr.RunID, "slices", slices, "asked", asked, "askedBy", from)
	}
}

// prepare loads what this rank needs and checks what it can alone.
func (dr *DistRun) prepare(c comm.Comm) (*Policy, []Visit, error) {
	if c.Size() < 2 {
		return nil, nil, fmt.Errorf("%w: a run needs at least 2 ranks (the Pipeline and one Slice), got %d", ErrInvalid, c.Size())
	}
	if dr.RunID == "" {
		return nil, nil, fmt.Errorf("%w: no run ID", ErrInvalid)
	}
	if fi, err := os.Stat(dr.RunDir); err != nil || !fi.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		return nil, nil, fmt.Errorf("%w: run directory: %v", ErrInvalid, err)
	}
	if _, err := filepath.Abs(dr.RunDir); err != nil {
		return nil, nil, fmt.Errorf("%w: run directory: %v", ErrInvalid, err)
	}
	o, err := dr.loadOptions()
	if err != nil {
		return nil, nil, err
	}
	p, err := Load(dr.PolicyPath, o)
	if err != nil {
		return nil, nil, err
	}
	if c.Rank() == 0 && dr.Rank0 != nil {
		if err := dr.Rank0(p, dr); err != nil {
			return nil, nil, err
		}
	}
	if c.Rank() != 0 || dr.Feed {
		return p, nil, nil
	}
	// A run of its own visit file is new input (a batch job's run, fed
	// by the job, may be one created before these checks).
	if err := p.CheckDataIDValues(); err != nil {
		return nil, nil, err
	}
	visits, err := ReadVisits(dr.VisitsPath)
	if err != nil {
		return nil, nil, err
	}
	if err := CheckVisits(p, dr.VisitsPath, visits); err != nil {
		return nil, nil, err
	}
	return p, visits, nil
}

// agree gathers every rank's preparation error on rank 0 and broadcasts
// the verdict, so that all ranks start the run or all return an error.
// Messages: empty for "fine", else a kind byte ('I' bad input, 'E' other)
// and the text.
func agree(c comm.Comm, mine error) error {
	var msg []byte
	if mine != nil {
		kind := byte('E')
		if errors.Is(mine, ErrInvalid) {
			kind = 'I'
		}
		msg = append([]byte{kind}, mine.Error()...)
	}
	all, err := c.Gather(0, msg)
	if err != nil {
		return fmt.Errorf("harness: starting the run: %w", err)
	}
	var verdict []byte
	if c.Rank() == 0 {
		verdict = verdictOf(all)
	}
	if verdict, err = c.Bcast(0, verdict); err != nil {
		return fmt.Errorf("harness: starting the run: %w", err)
	}
	if len(verdict) == 0 {
		return nil
	}
	if mine != nil {
		return mine // the rank's own error, with its own wrapping
	}
	if verdict[0] == 'I' {
		return fmt.Errorf("%w: the run did not start: %s", ErrInvalid, verdict[1:])
	}
	return fmt.Errorf("harness: the run did not start: %s", verdict[1:])
}

// verdictOf combines the ranks' messages: ranks with the same problem
// (typically all of them, for a bad policy) are named together.
func verdictOf(all [][]byte) []byte {
	kind := byte(0)
	var texts []string
	ranks := map[string][]string{}
	for r, m := range all {
		if len(m) == 0 {
			continue
		}
		if kind != 'I' {
			kind = m[0]
		}
		t := string(m[1:])
		if ranks[t] == nil {
			texts = append(texts, t)
		}
		ranks[t] = append(ranks[t], strconv.Itoa(r))
	}
	if kind == 0 {
		return nil
	}
	parts := make([]string, len(texts))
	for i, t := range texts {
		who := "rank " + ranks[t][0]
		if n := len(ranks[t]); n == len(all) {
			who = "every rank"
		} else if n > 1 {
			who = "ranks " + strings.Join(ranks[t], ",")
		}
		parts[i] = who + ": " + t
	}
	return append([]byte{kind}, strings.Join(parts, "; ")...)
}

// RunRanks runs a distributed run with every rank a goroutine of this
// process, over a local communicator of size ranks (size <= 0: the
// policy's slices plus the Pipeline). Each rank gets a copy of dr with its
// own endpoint; a zero dr.Host becomes LocalHost(). It returns rank 0's
// Summary and the first error that is not merely another rank's abort.
func RunRanks(ctx context.Context, dr DistRun, size int) (*Summary, error) {
	if size <= 0 {
		o, err := dr.loadOptions()
		if err != nil {
			return nil, err
		}
		p, err := Load(dr.PolicyPath, o)
		if err != nil {
			return nil, err
		}
		n, err := p.SliceCount()
		if err != nil {
			return nil, err
		}
		size = n + 1
	}
	if dr.Host == (mapper.HostInfo{}) {
		dr.Host = LocalHost()
	}
	var sum *Summary
	err := runWorld(size, func(c comm.Comm) error {
		d := dr
		d.Comm = c
		s, err := RunRank(ctx, d)
		if c.Rank() == 0 {
			sum = s
		}
		return err
	})
	return sum, err
}

// Communicator kinds for CommOptions.Kind.
const (
	CommAuto  = "auto"
	CommTCP   = "tcp"
	CommMPI   = "mpi"
	CommLocal = "local"
)

// CommOptions says how a process started by srun or mpirun joins its run.
type CommOptions struct {
	// Kind is CommAuto, CommTCP or CommMPI (CommLocal is RunRanks's).
	Kind string
	// Rank and Size override the task environment for tcp: both or
	// neither; Size 0 means neither.
	Rank, Size int
	// Rendezvous is the directory where tcp ranks find rank 0; shared.
	Rendezvous string
	// RunID names the rendezvous when Rank and Size are given (under srun
	// the job and step IDs do).
	RunID string
	// ConnectTimeout bounds tcp setup; 0 takes comm's default.
	ConnectTimeout time.Duration
	Logger         *slog.Logger
	// lookup reads the environment; nil means os.LookupEnv (tests set it).
	lookup func(string) (string, bool)
}

// ChooseComm resolves CommAuto from the task environment: mpi when this
// binary has MPI support and mpirun or srun --mpi=pmix started it (PMIX_RANK
// or OMPI_COMM_WORLD_SIZE is set); tcp when srun started it (SLURM_PROCID);
// otherwise an error saying what to do. Other kinds are returned as they
// are, after checking them. Errors wrap ErrInvalid.
func ChooseComm(o CommOptions) (string, error) {
	lookup := o.lookup
	if lookup == nil {
		lookup = os.LookupEnv
	}
	has := func(name string) bool { _, ok := lookup(name); return ok }
	switch o.Kind {
	case CommTCP, CommMPI, CommLocal:
		return o.Kind, nil
	case CommAuto, "":
	default:
		return "", fmt.Errorf("%w: communicator %q: expected auto, tcp, mpi or local", ErrInvalid, o.Kind)
	}
	if o.Size > 0 {
		return CommTCP, nil
	}
	byMpirun := has("OMPI_COMM_WORLD_SIZE")
	if mpiBuilt && (has("PMIX_RANK") || byMpirun) {
		return CommMPI, nil
	}
	if byMpirun {
		return "", fmt.Errorf("%w: started by mpirun, but this dpsbatch was built without MPI support: rebuild it with -tags mpi, or start the ranks with srun --mpi=none", ErrInvalid)
	}
	if has("SLURM_PROCID") {
		return CommTCP, nil
	}
	return "", fmt.Errorf("%w: --comm auto: not started by srun or mpirun (none of SLURM_PROCID, PMIX_RANK, OMPI_COMM_WORLD_SIZE is set): "+
		"start it with srun, or pass --comm tcp with --rank and --size, or --comm local", ErrInvalid)
}

// OpenComm joins this process to its run's communicator, of the kind
// ChooseComm picks. Call it on the goroutine that will call RunRank and
// Close: for mpi that goroutine is locked to its OS thread until Close.
// A binary built without the mpi tag returns an error wrapping
// comm.ErrNoMPI for mpi. Misuse (bad kind, rank/size without tcp, local)
// wraps ErrInvalid.
func OpenComm(ctx context.Context, o CommOptions) (comm.Comm, error) {
	kind, err := ChooseComm(o)
	if err != nil {
		return nil, err
	}
	if o.Size > 0 && kind != CommTCP {
		return nil, fmt.Errorf("%w: --rank and --size are for --comm tcp, not %s", ErrInvalid, kind)
	}
	switch kind {
	case CommMPI:
		c, err := comm.NewMPI()
		if err != nil {
			return nil, fmt.Errorf("harness: --comm mpi: %w", err)
		}
		return c, nil
	case CommTCP:
		cfg, err := tcpConfig(o)
		if err != nil {
			return nil, err
		}
		return comm.NewTCP(ctx, cfg)
	}
	return nil, fmt.Errorf("%w: OpenComm: communicator %q runs every rank in one process (RunRanks)", ErrInvalid, kind)
}

func tcpConfig(o CommOptions) (comm.TCPConfig, error) {
	lookup := o.lookup
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var cfg comm.TCPConfig
	switch {
	case o.Size > 0:
		if o.Rank < 0 || o.Rank >= o.Size {
			return cfg, fmt.Errorf("%w: --rank %d is out of range for --size %d", ErrInvalid, o.Rank, o.Size)
		}
		cfg.Rank, cfg.Size, cfg.RunID = o.Rank, o.Size, o.RunID
		cfg.Host, _ = lookup("SLURMD_NODENAME")
	default:
		if _, ok := lookup("OMPI_COMM_WORLD_SIZE"); ok {
			return cfg, fmt.Errorf("%w: --comm tcp under mpirun: the Slurm variables name mpirun's daemons, not the ranks; use --comm mpi, or srun --mpi=none", ErrInvalid)
		}
		var err error
		if cfg, err = comm.TCPConfigFromEnv(); err != nil {
			return cfg, fmt.Errorf("%w: %v (outside srun, pass --rank and --size)", ErrInvalid, err)
		}
		if o.RunID != "" {
			cfg.RunID = o.RunID + "." + cfg.RunID
		}
	}
	cfg.Rendezvous = o.Rendezvous
	cfg.ConnectTimeout = o.ConnectTimeout
	cfg.Logger = o.Logger
	return cfg, nil
}

// RunDist is a whole `dpsbatch run` on this process: with CommLocal it runs
// every rank here (RunRanks, size o.Size or the policy's); otherwise it
// opens the communicator, runs this rank (RunRank) and closes it, all on
// the calling goroutine, as MPI requires. It returns rank 0's Summary (nil
// elsewhere).
func RunDist(ctx context.Context, dr DistRun, o CommOptions) (*Summary, error) {
	kind, err := ChooseComm(o)
	if err != nil {
		return nil, err
	}
	if kind == CommLocal {
		return RunRanks(ctx, dr, o.Size)
	}
	c, err := OpenComm(ctx, o)
	if err != nil {
		return nil, err
	}
	dr.Comm = c
	sum, err := RunRank(ctx, dr)
	if cerr := c.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("harness: closing the communicator: %w", cerr)
	}
	return sum, err
}

// loadOptions are the run's name and pipeline directory, applied to its
// policy before validating.
func (dr DistRun) loadOptions() (LoadOptions, error) {
	o := LoadOptions{Name: dr.Name}
	if dr.PipelineDir != "" {
		dir, err := filepath.Abs(dr.PipelineDir)
		if err != nil {
			return o, fmt.Errorf("%w: pipeline directory: %v", ErrInvalid, err)
		}
		o.PipelineDir = dir
	}
	return o, nil
}
