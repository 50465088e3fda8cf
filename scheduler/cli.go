package scheduler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/internal/retry"
	"github.com/dpsbatch/dpsbatch/site"
)

// ErrMissingTools is matched by the error of NewCLI when Slurm's command
// line tools are not all on PATH.
var ErrMissingTools = errors.New("scheduler: Slurm tools not found")

// cliTools are the commands the CLI backend runs.
var cliTools = []string{"sbatch", "squeue", "sinfo", "scontrol", "scancel", "sacct"}

// CLIOptions configures the CLI backend.
type CLIOptions struct {
	// Env is added to the environment of every tool it runs, such as
	// SLURM_CONF=/etc/slurm-other/slurm.conf.
	Env []string
	// RetryWait bounds how long a tool that fails for a reason that
	// passes (slurmctld busy or restarting: see retry.go) is tried
	// again, from its first try to its last: 0 means DefaultRetryWait, a
	// negative value no retries.
	RetryWait time.Duration
}

// CLI is the Backend that runs Slurm's command line tools: sbatch, squeue
// (text output), sacct, scancel, and sinfo --json with scontrol for
// partitions. It keeps no state between calls and is safe for concurrent use.
type CLI struct {
	paths map[string]string // tool name -> absolute path
	env   []string
	retry retry.Policy
}

// NewCLI finds the Slurm tools on PATH (sbatch, squeue, sinfo, scontrol,
// scancel, sacct) and reports every missing one in one error matching
// ErrMissingTools. It runs none of them.
func NewCLI(o CLIOptions) (*CLI, error) {
	c := &CLI{paths: make(map[string]string, len(cliTools)), retry: retry.Policy{Bound: o.RetryWait, First: firstPause}}
	if o.RetryWait == 0 {
		c.retry.Bound = DefaultRetryWait
	}
	var missing []string
	for _, tool := range cliTools {
		p, err := exec.LookPath(tool)
		if err != nil {
			missing = append(missing, tool)
			continue
		}
		c.paths[tool] = p
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w on PATH: %s (install Slurm's client tools, or run on a login node)",
			ErrMissingTools, strings.Join(missing, ", "))
	}
	if len(o.Env) > 0 {
		c.env = append(os.Environ(), o.Env...)
	}
	return c, nil
}

// run runs tool with args, feeding it stdin when not nil, and returns its
// standard output; a tool that fails for a reason that passes is run
// again (retry.go). A tool that fails gives an error naming it, with its
// standard error. env, when not nil, replaces the environment.
func (c *CLI) run(ctx context.Context, stdin []byte, env []string, tool string, args ...string) ([]byte, error) {
	var out []byte
	err := retryWith(ctx, c.retry, nil, func(error) error {
		var err error
		out, err = c.runOnce(ctx, stdin, env, tool, args...)
		return err
	})
	return out, err
}

// runOnce is run without retries.
func (c *CLI) runOnce(ctx context.Context, stdin []byte, env []string, tool string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.paths[tool], args...)
	// When ctx ends, the tool is killed; a child it left holding the
	// output pipes must not keep us waiting.
	cmd.WaitDelay = time.Second
	if env == nil {
		env = c.env
	}
	cmd.Env = env // nil: the process's environment
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		te := &toolError{tool: tool, args: args, err: err, stderr: strings.TrimSpace(stderr.String())}
		if ctx.Err() != nil {
			te.err, te.ctxDone = fmt.Errorf("%w (%v)", ctx.Err(), err), true
		}
		return stdout.Bytes(), te
	}
	return stdout.Bytes(), nil
}

// environ is the environment of the tools plus extra.
func (c *CLI) environ(extra ...string) []string {
	base := c.env
	if base == nil {
		base = os.Environ()
	}
	return append(slices.Clip(base), extra...)
}

// toolError is a Slurm tool that failed, the last of tries when it was
// retried.
type toolError struct {
	tool    string
	args    []string
	err     error
	stderr  string
	ctxDone bool          // killed because the context ended
	tries   int           // when retried: how many times it ran
	spent   time.Duration // when retried: from the first try to the last
}

func (e *toolError) Error() string {
	cmd := strings.Join(append([]string{e.tool}, e.args...), " ")
	if len(cmd) > 200 {
		cmd = cmd[:200] + "..."
	}
	msg := fmt.Sprintf("scheduler: %s: %v", cmd, e.err)
	if e.tries > 1 {
		msg = fmt.Sprintf("scheduler: %s: failed %d times in %v, the last: %v", cmd, e.tries, e.spent.Round(time.Second), e.err)
	}
	if e.stderr != "" {
		msg += ": " + e.stderr
	}
	return msg
}

func (e *toolError) Unwrap() error { return e.err }

// Submit pipes the script to sbatch --parsable on stdin, with --chdir and
// --dependency, and returns the job ID it prints.
//
// An sbatch that failed for a reason that passes is run again, never so
// that one submission makes two jobs. After an error proving slurmctld
// did not take the job (it could not be reached, or refused for now:
// unsentErrors) sbatch runs again at once. After one that leaves it open
// (a timeout waiting for the answer: unsureErrors) Submit first looks the
// job up by its name (Named, since the first try) and returns the job it
// finds; without a Name it cannot tell, and returns the error.
func (c *CLI) Submit(ctx context.Context, s Submission) (string, error) {
	if err := s.check(); err != nil {
		return "", err
	}
	args := []string{"--parsable", "--chdir=" + s.Dir}
	if s.Dependency != "" {
		args = append(args, "--dependency="+s.Dependency)
	}
	if s.Name != "" {
		args = append(args, "--job-name="+s.Name)
	}
	since := time.Now()
	var id string
	again := func(err error) bool { return unsent(err) || s.Name != "" && transient(err) }
	err := retryWith(ctx, c.retry, again, func(prev error) error {
		if prev != nil && !unsent(prev) {
			found, err := c.submittedAs(ctx, s.Name, since)
			if err != nil || found != "" {
				id = found
				return err
			}
		}
		out, err := c.runOnce(ctx, s.Script, nil, "sbatch", args...)
		if err != nil {
			return err
		}
		id, err = parseSbatch(out)
		return err
	})
	return id, err
}

// submittedAs returns the ID of the earliest job called name submitted
// since since, or "" when there is none.
func (c *CLI) submittedAs(ctx context.Context, name string, since time.Time) (string, error) {
	jobs, err := c.Named(ctx, name, since)
	if err != nil {
		return "", fmt.Errorf("scheduler: sbatch timed out and looking its job up failed: %w", err)
	}
	id := ""
	for _, j := range jobs {
		if id == "" || jobNumber(j.ID) < jobNumber(id) {
			id = j.ID
		}
	}
	return id, nil
}

// jobNumber is the number a job ID starts with (123 of 123_4), to order
// IDs.
func jobNumber(id string) int {
	end := strings.IndexFunc(id, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(id)
	}
	n, _ := strconv.Atoi(id[:end])
	return n
}

// check reports a submission that cannot be submitted.
func (s Submission) check() error {
	switch {
	case len(bytes.TrimSpace(s.Script)) == 0:
		return errors.New("scheduler: submit: empty job script")
	case !filepath.IsAbs(s.Dir):
		return fmt.Errorf("scheduler: submit: the working directory %q is not absolute", s.Dir)
	case strings.ContainsAny(s.Dependency, " \t\n"):
		return fmt.Errorf("scheduler: submit: bad dependency %q", s.Dependency)
	case !goodName(s.Name):
		return fmt.Errorf("scheduler: submit: bad job name %q (want letters, digits and . _ - : @ only)", s.Name)
	}
	return nil
}

// maxJobsArg bounds the --jobs argument of Jobs' squeue: Linux refuses
// a single argument longer than 128 KiB (MAX_ARG_STRLEN), about 15,000
// job IDs.
const maxJobsArg = 100_000

// Jobs runs squeue once: --noheader --states=all (finished jobs too,
// until MinJobAge) --jobs=IDS, printing only the fields Job needs
// (squeueFields) between separators drawn for the call, with times as
// epoch seconds. squeue --json is not used: Slurm 22.05's ignores --jobs
// and prints every remembered job, 3 KB each (see squeue.go).
//
// Slurm 22.05's squeue (checked on the local cluster) leaves forgotten
// IDs out when given several, known or not, and exits 0; given one
// forgotten ID it asks slurmctld for that job alone and fails with "Invalid
// job id specified", which Jobs reads as no job. Should a squeue fail so
// when given several IDs (later Slurm releases may), Jobs asks again
// without --jobs, for every remembered job, and keeps those asked for: one
// unknown ID must not hide the others, and this text of every job is still
// small (24 ms and 200 KB for 2,500 jobs here, where --json took 0.34 s).
// It asks so at once when the IDs do not fit in one argument (maxJobsArg).
func (c *CLI) Jobs(ctx context.Context, ids []string) (map[string]Job, error) {
	want, err := idSet(ids)
	if err != nil || len(want) == 0 {
		return map[string]Job{}, err
	}
	list := make([]string, 0, len(want))
	for id := range want {
		list = append(list, id)
	}
	slices.Sort(list)
	jobsArg := "--jobs=" + strings.Join(list, ",")
	if len(jobsArg) > maxJobsArg {
		jobsArg = ""
	}
	jobs, err := c.squeue(ctx, jobsArg)
	if err != nil && jobsArg != "" && invalidJobID(err) {
		if len(list) == 1 {
			return map[string]Job{}, nil
		}
		jobs, err = c.squeue(ctx, "")
	}
	if err != nil {
		return nil, err
	}
	got := make(map[string]Job, len(want))
	for _, j := range jobs {
		if want[j.ID] {
			got[j.ID] = j
		}
	}
	return got, nil
}

// squeue runs squeue for Jobs, with jobsArg (--jobs=...) unless it is "".
func (c *CLI) squeue(ctx context.Context, jobsArg string) ([]Job, error) {
	sep := squeueSeparator()
	args := []string{"--noheader", "--states=all"}
	if jobsArg != "" {
		args = append(args, jobsArg)
	}
	args = append(args, "--Format="+squeueFormat(sep))
	out, err := c.run(ctx, nil, c.environ("SLURM_TIME_FORMAT=%s"), "squeue", args...)
	if err != nil {
		return nil, err
	}
	return parseSqueueText(out, sep, time.Local)
}

// invalidJobID reports whether err is squeue refusing a job ID it does not
// know: "slurm_load_jobs error: Invalid job id specified", exit status 1.
func invalidJobID(err error) bool {
	var te *toolError
	return errors.As(err, &te) && strings.Contains(te.stderr, "Invalid job id specified")
}

// historyChunk bounds the job IDs of one sacct command line.
const historyChunk = 2000

// History runs sacct -P -X (one line per job, no steps) for ids, in
// chunks of historyChunk IDs. Slurm 22.05's sacct --json is not used: it
// reports exit code 0 for jobs that failed (checked on the local cluster).
func (c *CLI) History(ctx context.Context, ids []string) (map[string]Job, error) {
	starts, err := c.sacct(ctx, ids)
	if err != nil {
		return nil, err
	}
	got := make(map[string]Job, len(starts))
	for id, js := range starts {
		got[id] = js[len(js)-1] // a requeued job's last run
	}
	return got, nil
}

// Starts runs sacct as History does, with --duplicates: one line for each
// start of a job Slurm requeued, oldest first (checked on the local
// cluster: REQUEUED or NODE_FAIL lines, then the last start's).
func (c *CLI) Starts(ctx context.Context, ids []string) (map[string][]Job, error) {
	return c.sacct(ctx, ids, "--duplicates")
}

// sacct runs sacct -P -X for ids in chunks of historyChunk IDs, with
// extra arguments, and returns each job's lines in sacct's order.
func (c *CLI) sacct(ctx context.Context, ids []string, extra ...string) (map[string][]Job, error) {
	want, err := idSet(ids)
	if err != nil {
		return nil, err
	}
	got := make(map[string][]Job, len(want))
	args := append([]string{"--allocations"}, extra...)
	err = c.sacctRun(ctx, ids, append(args, "--format="+sacctFormat), func(out []byte) error {
		jobs, err := parseSacct(out)
		for _, j := range jobs {
			if want[j.ID] {
				got[j.ID] = append(got[j.ID], j)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return got, nil
}

// sacctRun runs sacct --parsable2 --noheader with args and --jobs for
// ids, in chunks of historyChunk IDs, times as epoch seconds, and hands
// each chunk's output to read. ErrNoAccounting when the cluster keeps
// none.
func (c *CLI) sacctRun(ctx context.Context, ids []string, args []string, read func(out []byte) error) error {
	want, err := idSet(ids)
	if err != nil || len(want) == 0 {
		return err
	}
	list := make([]string, 0, len(want))
	for id := range want {
		list = append(list, id)
	}
	slices.Sort(list)
	env := c.environ("SLURM_TIME_FORMAT=%s") // epoch seconds: no time zone to guess
	for chunk := range slices.Chunk(list, historyChunk) {
		all := append([]string{"--parsable2", "--noheader"}, args...)
		out, err := c.run(ctx, nil, env, "sacct", append(all, "--jobs="+strings.Join(chunk, ","))...)
		if err != nil {
			var te *toolError
			if errors.As(err, &te) && strings.Contains(strings.ToLower(te.stderr), "accounting storage is disabled") {
				return fmt.Errorf("%w (sacct: %s)", ErrNoAccounting, te.stderr)
			}
			return err
		}
		if err := read(out); err != nil {
			return err
		}
	}
	return nil
}

// goodName reports whether name can name a job for Named: squeue and
// sacct take a comma-separated list of names, so a name is kept to a
// plain set of characters ("" is no name).
func goodName(name string) bool {
	return len(name) <= 200 && strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:@") == ""
}

// Named runs squeue --name=NAME --states=all, then, unless the cluster
// keeps no accounting, sacct --name=NAME from since (one line per job);
// squeue's answer wins for a job both know.
func (c *CLI) Named(ctx context.Context, name string, since time.Time) ([]Job, error) {
	if name == "" || !goodName(name) {
		return nil, fmt.Errorf("scheduler: named: bad job name %q: %w", name, conf.ErrInvalid)
	}
	jobs, err := c.squeue(ctx, "--name="+name)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []Job
	for _, j := range jobs {
		if j.Name == name && !seen[j.ID] {
			seen[j.ID] = true
			out = append(out, j)
		}
	}
	env := c.environ("SLURM_TIME_FORMAT=%s")
	hist, err := c.run(ctx, nil, env, "sacct", "--parsable2", "--noheader", "--allocations",
		"--format="+sacctFormat, "--name="+name, "--starttime="+since.Add(-time.Minute).Local().Format("2006-01-02T15:04:05"))
	if err != nil {
		var te *toolError
		if errors.As(err, &te) && strings.Contains(strings.ToLower(te.stderr), "accounting storage is disabled") {
			return out, nil
		}
		return nil, err
	}
	done, err := parseSacct(hist)
	if err != nil {
		return nil, err
	}
	for _, j := range done {
		if j.Name == name && !seen[j.ID] {
			seen[j.ID] = true
			out = append(out, j)
		}
	}
	return out, nil
}

// signalName is what Cancel accepts as a signal: a name or a number.
var signalName = regexp.MustCompile(`^[A-Za-z0-9]+$`)

// Cancel runs scancel, with --signal when signal is not "". scancel
// signals the job's steps, not its batch script (checked on the local
// cluster): the script's srun step gets it.
//
// A cancel is run again after any failure that passes; should an earlier
// try have cancelled the job before its answer was lost, the next finds
// the job ending, which is success. A signal is sent again only after an
// error proving slurmctld did not act (unsentErrors): a step must not get
// it twice.
func (c *CLI) Cancel(ctx context.Context, id string, signal string) error {
	if !jobID.MatchString(id) {
		return fmt.Errorf("scheduler: cancel: bad job id %q: %w", id, conf.ErrInvalid)
	}
	args := []string{id}
	if signal != "" {
		if !signalName.MatchString(signal) {
			return fmt.Errorf("scheduler: cancel: bad signal %q (want a name such as USR1, or a number): %w", signal, conf.ErrInvalid)
		}
		args = []string{"--signal=" + signal, id}
	}
	again := transient
	if signal != "" {
		again = unsent
	}
	return retryWith(ctx, c.retry, again, func(prev error) error {
		_, err := c.runOnce(ctx, nil, nil, "scancel", args...)
		if prev != nil && !unsent(prev) && toolSays(err, []string{"already completing or completed"}) {
			return nil
		}
		return err
	})
}

// Partitions runs scontrol show config (for the cluster's name), scontrol
// show partition (limits, state, node list) and sinfo --json (each node's
// CPUs and memory): Slurm 22.05's sinfo --json lists nodes, not
// partitions.
func (c *CLI) Partitions(ctx context.Context) ([]site.Live, error) {
	cfg, err := c.run(ctx, nil, nil, "scontrol", "show", "config")
	if err != nil {
		return nil, err
	}
	parts, err := c.run(ctx, nil, nil, "scontrol", "--oneliner", "show", "partition")
	if err != nil {
		return nil, err
	}
	nodes, err := c.run(ctx, nil, nil, "sinfo", "--json")
	if err != nil {
		return nil, err
	}
	return parsePartitions(parseClusterName(cfg), parts, nodes)
}

var (
	_ Backend      = (*CLI)(nil)
	_ StartHistory = (*CLI)(nil)
)

// AccountingReader is a Backend that can read Slurm's accounting
// associations: site check compares the site file's account and QoS
// with them. Without it, they are not checked.
type AccountingReader interface {
	// Accounting lists every account and QoS, and the associations of
	// the user this process runs as.
	Accounting(ctx context.Context) (site.Accounting, error)
}

// userName is a user name sacctmgr may be given as is.
var userName = regexp.MustCompile(`^[A-Za-z0-9._][A-Za-z0-9._-]*$`)

// Accounting runs sacctmgr three times: list account, list qos, and list
// assoc for this process's user. It returns an error matching
// ErrNoAccounting when sacctmgr is not installed.
func (c *CLI) Accounting(ctx context.Context) (site.Accounting, error) {
	var a site.Accounting
	u, err := user.Current()
	if err != nil {
		return a, fmt.Errorf("scheduler: accounting: who am I: %w", err)
	}
	if !userName.MatchString(u.Username) {
		return a, fmt.Errorf("scheduler: accounting: unexpected user name %q", u.Username)
	}
	a.User = u.Username
	path, err := exec.LookPath("sacctmgr")
	if err != nil {
		return a, fmt.Errorf("%w (no sacctmgr on PATH)", ErrNoAccounting)
	}
	list := func(args ...string) ([][]string, error) {
		cc := &CLI{paths: map[string]string{"sacctmgr": path}, env: c.env, retry: c.retry}
		out, err := cc.run(ctx, nil, nil, "sacctmgr", append([]string{"--noheader", "--parsable2", "list"}, args...)...)
		if err != nil {
			return nil, err
		}
		var rows [][]string
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line != "" {
				rows = append(rows, strings.Split(line, "|"))
			}
		}
		return rows, nil
	}
	rows, err := list("account", "format=account")
	if err != nil {
		return a, err
	}
	for _, r := range rows {
		a.Accounts = append(a.Accounts, r[0])
	}
	if rows, err = list("qos", "format=name"); err != nil {
		return a, err
	}
	for _, r := range rows {
		a.QoS = append(a.QoS, r[0])
	}
	if rows, err = list("assoc", "user="+a.User, "format=cluster,account,partition,qos"); err != nil {
		return a, err
	}
	for _, r := range rows {
		if len(r) < 4 {
			return a, fmt.Errorf("scheduler: sacctmgr list assoc: unexpected line %q", strings.Join(r, "|"))
		}
		as := site.Assoc{Cluster: r[0], Account: r[1], Partition: r[2]}
		if r[3] != "" {
			as.QoS = strings.Split(r[3], ",")
		}
		a.Assocs = append(a.Assocs, as)
	}
	return a, nil
}

var _ AccountingReader = (*CLI)(nil)
