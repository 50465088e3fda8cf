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

// RunOptions say what a run is and where its ranks are; Run takes them.
// Every rank gets the same options but for Comm and Host; Visits,
// VisitsPath, Recorder, Broker, Feed, Stop, Heartbeat, Slices and Rank0
// matter on rank 0 (the Pipeline) only.
type RunOptions struct {
	// Ranks chooses where the ranks are: CommLocal runs every rank as a
	// goroutine of this process, over a local communicator of Size ranks;
	// CommTCP or CommMPI make this process one rank of a communicator it
	// joins, and CommAuto ("" too) picks one of them from the task
	// environment (srun, mpirun). Ignored when Comm is set.
	Ranks string
	// Comm, when set, is this process's endpoint of a communicator the
	// caller opened (comm.NewMPI, a test's): Run runs this one rank on it,
	// on the calling goroutine, and does not close it.
	Comm comm.Comm
	// Size is the number of ranks: for CommLocal, 0 means Slices plus one,
	// else the policy's slices plus one; for tcp outside srun, Rank is this
	// process's rank and Size the number of ranks (both or neither: Size 0
	// means neither).
	Rank, Size int
	// Rendezvous is the directory where tcp ranks find rank 0; shared by
	// all nodes. ConnectTimeout bounds tcp setup; 0 takes comm's default.
	Rendezvous     string
	ConnectTimeout time.Duration

	// Policy, when set, is the loaded and validated policy every rank
	// runs, and Visits rank 0's visits, already checked. Otherwise every
	// rank loads PolicyPath (which must be on a file system all nodes see)
	// and validates it, and rank 0 reads and checks the visit file
	// VisitsPath unless Visits is set; the ranks then agree to start.
	Policy     *Policy
	PolicyPath string
	Visits     []Visit
	VisitsPath string
	// RunID names the run in every event and log record (and the tcp
	// rendezvous when Rank and Size are given).
	RunID string
	// RunDir is the run directory, which must exist and be shared by all
	// nodes: relative locations resolve against it.
	RunDir string
	// Name, when set, is the pipeline's name in this run instead of the
	// policy's (a production entry's name): every rank uses it for
	// {pipeline}, and the Pipeline in every event it publishes.
	Name string
	// PipelineDir, when set, is what {pipelinedir} names instead of the
	// policy file's folder: a batch run keeps a copy of the policy in its
	// run directory while the scripts it names stay where they were.
	PipelineDir string
	// Host describes this rank's task for the mapper; the zero value means
	// what Slurm or mpirun gave the task (else the machine's CPUs and
	// memory), and for CommLocal the whole machine.
	Host   mapper.HostInfo
	Logger *slog.Logger // nil discards

	Recorder Recorder      // rank 0: hears progress besides the Summary; may be nil
	Broker   events.Broker // rank 0: nil means an in-memory broker
	// Feed says the caller publishes the trigger events and the
	// no-more-data that ends the run on Broker itself; Visits and
	// VisitsPath are ignored.
	Feed bool
	// Stop, when closed, stops the run at the next visit boundary, as a
	// shutdown event does.
	Stop <-chan struct{}
	// StopSignals, on every rank, hears of the stop signals this rank's
	// process received (nil: none are heard of). A Slice whose stage
	// fails with ErrKilled after one (or shortly before it) reports
	// its data ID as stopped, and the Pipeline records the visit as
	// interrupted, not failed.
	StopSignals *StopSignals
	// FreezeDry names stages whose every call is captured as it starts,
	// besides those of the policy's freeze_dry (a failing call is always
	// captured): see package capture.
	FreezeDry []string
	// Heartbeat, when positive, is how often rank 0 publishes a heartbeat
	// on events.TopicHeartbeat (and tells the Recorder), from the start of
	// its loop to its end.
	Heartbeat time.Duration
	// Slices and SlicesFrom, on rank 0, are the number of slices the run
	// was asked to have and who asked (such as "submit --slices" or
	// "production entry \"detect\""); Slices 0 means the policy's count.
	// The run has as many slices as the communicator has ranks less one:
	// rank 0 warns when that differs from what was asked.
	Slices     int
	SlicesFrom string
	// Rank0, when set, is called on rank 0 once the policy is loaded and
	// valid, before the ranks start: it may set Recorder, Broker, Feed,
	// Stop, Heartbeat and Slices (a batch run opens its state file and
	// feeds its visits here). An error from it is every rank's, so no rank
	// is left waiting.
	Rank0 func(p *Policy, o *RunOptions) error

	// lookup reads the environment; nil means os.LookupEnv (tests set it).
	lookup func(string) (string, bool)
}

// Run runs a pipeline until no-more-data, a shutdown or an error, and
// returns, on rank 0, the run's Summary (nil on the other ranks). Where
// the ranks are is o.Ranks's choice, or o.Comm's: every rank of this
// process runs on the calling goroutine (CommLocal: on goroutines of its
// own), as MPI requires.
//
// Ranks that load the policy themselves (o.PolicyPath) first agree: if
// any rank found a problem, every rank returns an error naming it and
// the communicator stays usable, so the caller can close it cleanly. The
// run has as many slices as the communicator has ranks less one, whatever
// the policy says. A fatal error on any rank aborts the communicator so
// no rank waits forever.
//
// The error wraps ErrVisitsFailed when the run ended but visits failed,
// ErrInterrupted when ctx was cancelled or a stop request ended the run
// before every visit was run, ErrInvalid for bad input, comm.ErrAborted
// when another rank failed.
func Run(ctx context.Context, o RunOptions) (*Summary, error) {
	if o.Comm != nil {
		return o.runRank(ctx, o.Comm)
	}
	kind, err := chooseComm(o)
	if err != nil {
		return nil, err
	}
	if kind == CommLocal {
		return o.runLocal(ctx)
	}
	return o.joinAndRun(ctx, kind)
}

// runRank runs this process's rank of the run on c.
func (o RunOptions) runRank(ctx context.Context, c comm.Comm) (*Summary, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host := o.Host
	if host == (mapper.HostInfo{}) {
		host = thisTask()
	}
	p, visits, err := o.start(c, host, log)
	if err != nil {
		return nil, err
	}
	runDir, _ := filepath.Abs(o.RunDir) // checked by prepare
	cfg := config{Policy: p, RunID: o.RunID, RunDir: runDir, Comm: c, Host: host, Logger: log, StopSignals: o.StopSignals, FreezeDry: o.FreezeDry}
	if c.Rank() > 0 {
		return nil, rankLoop(ctx, cfg)
	}
	o.warnSlices(p, c.Size()-1, log)
	cfg.Broker, cfg.Recorder, cfg.Stop, cfg.Heartbeat = o.Broker, o.Recorder, o.Stop, o.Heartbeat
	return runPipeline(ctx, cfg, o.Feed, visits)
}

// start prepares this rank. Ranks that loaded the policy each on their
// own agree on the outcome and say they started; a rank given the policy
// fails alone, aborting the communicator so no rank waits for it.
func (o *RunOptions) start(c comm.Comm, h mapper.HostInfo, log *slog.Logger) (*Policy, []Visit, error) {
	p, visits, err := o.prepare(c)
	if o.Policy != nil {
		if err != nil {
			c.Abort(err)
		}
		return p, visits, err
	}
	if err := agree(c, err); err != nil {
		return nil, nil, err
	}
	log.Info("rank started", "run", o.RunID, "rank", c.Rank(), "size", c.Size(), "node", h.Node,
		"host", h.Host, "localRank", h.LocalRank, "cpus", h.CPUs, "memoryMB", h.MemoryMB)
	return p, visits, nil
}

// warnSlices warns when the run has another number of slices than was
// asked for: o.Slices, else the policy's count.
func (o *RunOptions) warnSlices(p *Policy, slices int, log *slog.Logger) {
	asked, from := o.Slices, o.SlicesFrom
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
			"run", o.RunID, "slices", slices, "asked", asked, "askedBy", from)
	}
}

// prepare loads what this rank needs and checks what it can alone.
func (o *RunOptions) prepare(c comm.Comm) (*Policy, []Visit, error) {
	if c.Size() < 2 {
		return nil, nil, fmt.Errorf("%w: a run needs at least 2 ranks (the Pipeline and one Slice), got %d", ErrInvalid, c.Size())
	}
	if o.RunID == "" {
		return nil, nil, fmt.Errorf("%w: no run ID", ErrInvalid)
	}
	if fi, err := os.Stat(o.RunDir); err != nil || !fi.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		return nil, nil, fmt.Errorf("%w: run directory: %v", ErrInvalid, err)
	}
	if _, err := filepath.Abs(o.RunDir); err != nil {
		return nil, nil, fmt.Errorf("%w: run directory: %v", ErrInvalid, err)
	}
	p, err := o.policy()
	if err != nil {
		return nil, nil, err
	}
	if err := p.checkFreezeDry(o.FreezeDry, "freeze-dry"); err != nil {
		return nil, nil, err
	}
	if c.Rank() == 0 && o.Rank0 != nil {
		if err := o.Rank0(p, o); err != nil {
			return nil, nil, err
		}
	}
	if c.Rank() != 0 || o.Feed || o.Policy != nil || o.Visits != nil {
		return p, o.Visits, nil
	}
	// A run of its own visit file is new input (a batch job's run, fed
	// by the job, may be one created before these checks).
	if err := p.CheckDataIDValues(); err != nil {
		return nil, nil, err
	}
	visits, err := ReadVisits(o.VisitsPath)
	if err != nil {
		return nil, nil, err
	}
	if err := CheckVisits(p, o.VisitsPath, visits); err != nil {
		return nil, nil, err
	}
	return p, visits, nil
}

// policy is o.Policy, else the policy loaded from o.PolicyPath with the
// run's name and pipeline directory.
func (o *RunOptions) policy() (*Policy, error) {
	if o.Policy != nil {
		return o.Policy, nil
	}
	lo := LoadOptions{Name: o.Name}
	if o.PipelineDir != "" {
		dir, err := filepath.Abs(o.PipelineDir)
		if err != nil {
			return nil, fmt.Errorf("%w: pipeline directory: %v", ErrInvalid, err)
		}
		lo.PipelineDir = dir
	}
	return Load(o.PolicyPath, lo)
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

// runLocal runs every rank as a goroutine of this process, over a local
// communicator, each with its own copy of o. It returns rank 0's Summary
// and the first error that is not merely another rank's abort.
func (o RunOptions) runLocal(ctx context.Context) (*Summary, error) {
	size, err := o.localSize()
	if err != nil {
		return nil, err
	}
	if o.Host == (mapper.HostInfo{}) {
		o.Host = thisMachine()
	}
	var sum *Summary
	err = runWorld(size, func(c comm.Comm) error {
		s, err := o.runRank(ctx, c)
		if c.Rank() == 0 {
			sum = s
		}
		return err
	})
	return sum, err
}

// localSize is the number of ranks of a local run: Size, else Slices or
// the policy's slices, plus the Pipeline.
func (o *RunOptions) localSize() (int, error) {
	switch {
	case o.Size > 0:
		return o.Size, nil
	case o.Slices > 0:
		return o.Slices + 1, nil
	}
	p, err := o.policy()
	if err != nil {
		return 0, err
	}
	n, err := p.SliceCount()
	if err != nil {
		return 0, err
	}
	return n + 1, nil
}

// Communicators, for RunOptions.Ranks.
const (
	CommAuto  = "auto"
	CommTCP   = "tcp"
	CommMPI   = "mpi"
	CommLocal = "local"
)

// chooseComm resolves CommAuto from the task environment: mpi when this
// binary has MPI support and mpirun or srun --mpi=pmix started it (PMIX_RANK
// or OMPI_COMM_WORLD_SIZE is set); tcp when srun started it (SLURM_PROCID);
// otherwise an error saying what to do. Other kinds are returned as they
// are, after checking them. Errors wrap ErrInvalid.
func chooseComm(o RunOptions) (string, error) {
	lookup := o.lookup
	if lookup == nil {
		lookup = os.LookupEnv
	}
	has := func(name string) bool { _, ok := lookup(name); return ok }
	switch o.Ranks {
	case CommTCP, CommMPI, CommLocal:
		return o.Ranks, nil
	case CommAuto, "":
	default:
		return "", fmt.Errorf("%w: communicator %q: expected auto, tcp, mpi or local", ErrInvalid, o.Ranks)
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

// openComm joins this process to its run's communicator of the given
// kind (tcp or mpi). Call it on the goroutine that will run the rank and
// Close the communicator: for mpi that goroutine is locked to its OS
// thread until Close. A binary built without the mpi tag returns an error
// wrapping comm.ErrNoMPI for mpi. Rank and size without tcp wrap
// ErrInvalid.
func openComm(ctx context.Context, o RunOptions, kind string) (comm.Comm, error) {
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
	return nil, fmt.Errorf("%w: communicator %q runs every rank in one process", ErrInvalid, kind)
}

func tcpConfig(o RunOptions) (comm.TCPConfig, error) {
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

// joinAndRun joins the communicator, runs this process's rank and closes
// the communicator, all on the calling goroutine, as MPI requires.
func (o RunOptions) joinAndRun(ctx context.Context, kind string) (*Summary, error) {
	c, err := openComm(ctx, o, kind)
	if err != nil {
		return nil, err
	}
	sum, err := o.runRank(ctx, c)
	if cerr := c.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("harness: closing the communicator: %w", cerr)
	}
	return sum, err
}
