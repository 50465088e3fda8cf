package scheduler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/scheduler/slurmrest"
	"github.com/dpsbatch/dpsbatch/site"
)

// ErrNoStepSignal is matched by the error of REST.Cancel given a signal:
// slurmrestd's DELETE with a signal reaches the batch script as well as
// the steps (scancel --signal reaches the steps only), which would make
// the script's own traps fire. dpsbatch stops a run through its broker
// (dpsbatch stop) or its stop file instead.
var ErrNoStepSignal = errors.New("scheduler: slurmrestd cannot signal a job's steps alone")

// RESTOptions configures the REST backend: slurmrestd's address and
// credentials (see slurmrest.Options).
type RESTOptions struct {
	URL                 string
	TokenFile, TokenEnv string
	User                string
	RetryWait           time.Duration
}

// REST is the Backend that talks to slurmrestd (API v0.0.38, with the
// accounting API dbv0.0.38 for History and Named where the server serves
// it). Whose jobs these are depends on the server's authentication: over
// local auth (a unix socket) every job runs as slurmrestd's own user,
// whoever submits; over JWT, as the token's user.
//
// It differs from the CLI backend in three ways. The script's #SBATCH
// lines are read here and sent as the job description (slurmrestd reads
// none; an option it cannot pass on is an error). The job gets the
// submitter's environment as sbatch gives it, less the token's variable
// and SLURM_* (slurmrestd gives a job none of its own). Cancel cannot
// signal (ErrNoStepSignal).
type REST struct {
	c        *slurmrest.Client
	tokenEnv string
}

// NewREST returns the REST backend for o; it does not connect.
func NewREST(o RESTOptions) (*REST, error) {
	c, err := slurmrest.New(slurmrest.Options{URL: o.URL, TokenFile: o.TokenFile, TokenEnv: o.TokenEnv,
		User: o.User, RetryWait: o.RetryWait})
	if err != nil {
		return nil, fmt.Errorf("scheduler: rest: %w", err)
	}
	return &REST{c: c, tokenEnv: o.TokenEnv}, nil
}

// Submit sends the script with the job description its #SBATCH lines
// make, the working directory, dependency and name of s over them. The
// client sends it again only after errors proving slurmctld did not take
// it; after a timeout the caller finds the job by its name (Named).
func (r *REST) Submit(ctx context.Context, s Submission) (string, error) {
	if err := s.check(); err != nil {
		return "", err
	}
	d, err := jobDesc(s.Script)
	if err != nil {
		return "", err
	}
	d.WorkDir = s.Dir
	if s.Dependency != "" {
		d.Dependency = s.Dependency
	}
	if s.Name != "" {
		d.Name = s.Name
	}
	d.Environment = r.environment()
	return r.c.Submit(ctx, s.Script, d)
}

// environment is the job's environment: this process's, as sbatch's
// --export=ALL gives it, without the token's variable, SLURM_JWT and the
// other SLURM_* variables (which describe this process's own job, if any).
func (r *REST) environment() map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" || k == r.tokenEnv || strings.HasPrefix(k, "SLURM_") {
			continue
		}
		env[k] = v
	}
	return env
}

// Jobs lists every job the controller remembers, in one request, and
// keeps those of ids.
func (r *REST) Jobs(ctx context.Context, ids []string) (map[string]Job, error) {
	want, err := idSet(ids)
	if err != nil || len(want) == 0 {
		return map[string]Job{}, err
	}
	all, err := r.c.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	got := make(map[string]Job, len(want))
	for _, j := range all {
		if want[j.ID] {
			got[j.ID] = fromREST(j, "slurmrestd")
		}
	}
	return got, nil
}

// History asks accounting about each job of ids. Slurm 22.05's accounting
// API reports exit code 0 for a job that failed: such a job's exit code
// is taken from the controller while it remembers the job, and is 0 after.
func (r *REST) History(ctx context.Context, ids []string) (map[string]Job, error) {
	want, err := idSet(ids)
	if err != nil || len(want) == 0 {
		return map[string]Job{}, err
	}
	got := make(map[string]Job, len(want))
	var unsure []string
	for id := range want {
		j, err := r.c.FinishedJob(ctx, id)
		switch {
		case errors.Is(err, slurmrest.ErrNoJob):
			continue
		case err != nil:
			return nil, restAccounting(err)
		}
		got[id] = fromREST(j, "slurmrestd-accounting")
		if !j.ExitKnown {
			unsure = append(unsure, id)
		}
	}
	if len(unsure) > 0 {
		live, err := r.Jobs(ctx, unsure)
		if err != nil {
			return nil, err
		}
		for id, k := range live {
			if j := got[id]; !k.Live() {
				j.ExitCode, j.Signal = k.ExitCode, k.Signal
				got[id] = j
			}
		}
	}
	return got, nil
}

// Named finds the jobs called name among those the controller remembers
// and, where the server serves accounting, those accounting holds since
// since: each once, the controller's word first.
func (r *REST) Named(ctx context.Context, name string, since time.Time) ([]Job, error) {
	if name == "" || !goodName(name) {
		return nil, fmt.Errorf("scheduler: named: bad job name %q: %w", name, conf.ErrInvalid)
	}
	all, err := r.c.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	var out []Job
	for _, j := range all {
		if j.Name == name {
			out = append(out, fromREST(j, "slurmrestd"))
		}
	}
	done, err := r.c.FinishedJobs(ctx, slurmrest.JobFilter{Name: name, Since: since.Add(-time.Minute)})
	if errors.Is(err, slurmrest.ErrNoAccounting) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, j := range done {
		if j.Name == name && !slices.ContainsFunc(out, func(k Job) bool { return k.ID == j.ID }) {
			out = append(out, fromREST(j, "slurmrestd-accounting"))
		}
	}
	return out, nil
}

// Cancel cancels job id; with a signal it returns ErrNoStepSignal and
// sends nothing.
func (r *REST) Cancel(ctx context.Context, id string, signal string) error {
	if !jobID.MatchString(id) {
		return fmt.Errorf("scheduler: cancel: bad job id %q: %w", id, conf.ErrInvalid)
	}
	if signal != "" {
		return fmt.Errorf("%w: not sending %s to job %s (slurmrestd's signal reaches the batch script too): "+
			"stop a run with dpsbatch stop, or use scancel --signal", ErrNoStepSignal, signal, id)
	}
	return r.c.Cancel(ctx, id)
}

// Partitions reads the partitions and nodes (two requests). The cluster's
// name is not among what slurmrestd v0.0.38 says of them: Live.Cluster is
// "", and site check does not compare it.
func (r *REST) Partitions(ctx context.Context) ([]site.Live, error) {
	parts, err := r.c.Partitions(ctx)
	if err != nil {
		return nil, err
	}
	nodes, err := r.c.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	lives := make([]site.Live, 0, len(parts))
	for _, p := range parts {
		l := site.Live{Name: p.Name, Up: p.Up, Default: p.Default, NodeList: p.NodeList, MaxTime: p.MaxTime, MaxNodes: p.MaxNodes,
			AllowedAccounts: allowList(p.AllowedAccounts), AllowedQoS: allowList(p.AllowedQoS)}
		for _, n := range nodes {
			if !slices.Contains(n.Partitions, p.Name) {
				continue
			}
			if len(l.Nodes) == 0 || n.CPUs < l.CPUsPerNode {
				l.CPUsPerNode = n.CPUs
			}
			if len(l.Nodes) == 0 || n.MemoryMB < l.MemoryMB {
				l.MemoryMB = n.MemoryMB
			}
			l.Nodes = append(l.Nodes, n.Name)
			l.AddFeatures(n.Features...)
			l.AddGPUs(n.Name, gpuCount(n.GRES))
		}
		lives = append(lives, l)
	}
	return lives, nil
}

// Accounting lists accounting's accounts and QoS, and the associations of
// the user the jobs run as: the token's. Over local auth slurmrestd runs
// jobs as its own user, which the client cannot name: ErrNoAccounting.
func (r *REST) Accounting(ctx context.Context) (site.Accounting, error) {
	var a site.Accounting
	user, err := r.c.User()
	if err != nil {
		return a, err
	}
	if user == "" {
		return a, fmt.Errorf("%w: over local auth slurmrestd runs jobs as its own user, whose associations are not read", ErrNoAccounting)
	}
	a.User = user
	if a.Accounts, err = r.c.Accounts(ctx); err != nil {
		return a, restAccounting(err)
	}
	if a.QoS, err = r.c.QoS(ctx); err != nil {
		return a, restAccounting(err)
	}
	as, err := r.c.Associations(ctx, user)
	if err != nil {
		return a, restAccounting(err)
	}
	for _, x := range as {
		a.Assocs = append(a.Assocs, site.Assoc{Cluster: x.Cluster, Account: x.Account, Partition: x.Partition, QoS: x.QoS})
	}
	return a, nil
}

// restAccounting is err, matching ErrNoAccounting when the server serves
// no accounting.
func restAccounting(err error) error {
	if errors.Is(err, slurmrest.ErrNoAccounting) {
		return fmt.Errorf("%w (%v)", ErrNoAccounting, err)
	}
	return err
}

// fromREST is the client's job as a Backend's.
func fromREST(j slurmrest.Job, source string) Job {
	k := Job{ID: j.ID, Name: j.Name, State: j.State, Reason: j.Reason, ExitCode: j.ExitCode, Signal: j.Signal,
		Submitted: j.Submitted, Started: j.Started, Ended: j.Ended, Expected: j.Expected,
		Nodes: j.Nodes, Partition: j.Partition, Source: source}
	if k.State == "RUNNING" {
		k.Deadline = j.Deadline()
	}
	return k
}

var (
	_ Backend          = (*REST)(nil)
	_ AccountingReader = (*REST)(nil)
)
