package jobs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/input"
	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/internal/slurmtime"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/site"
	"github.com/dpsbatch/dpsbatch/state"
	"github.com/dpsbatch/dpsbatch/templates"
)

// SubmitOptions is a new run: a pipeline, its visits, a site partition.
type SubmitOptions struct {
	Site    *site.Site
	Backend scheduler.Backend
	Policy  string // pipeline policy file
	Visits  string // visit list (CSV or JSON lines); "" with Listen
	// Listen: after its visit list (if any), the run reads trigger events
	// from its broker until a no-more-data (dpsbatch finish), a stop or
	// its time limit.
	Listen bool
	// Heartbeat: how often the Pipeline says it is alive; 0 is
	// DefaultHeartbeat.
	Heartbeat time.Duration
	// Hold submits the first job held: it stays pending until released
	// (scontrol release JOBID), e.g. to send it events first.
	Hold    bool
	Name    string // run name; "" makes PIPELINE-YYYYMMDD-HHMMSS
	Request rundir.Request
	// AutoResume chains that many follow-on jobs, each starting when the
	// one before ends (afterany), to run what it left unfinished.
	AutoResume int
	// Grow turns growth on (the site's scheduler.grow): instead of the
	// chain, each job submits the next itself at its end (at most
	// AutoResume in all), with more time or memory when it ran short.
	Grow bool
	// Binary is the dpsbatch executable the job runs on every node;
	// "" is this one (os.Executable).
	Binary string
	// DryRun plans and renders, prints the plan and the script to Out,
	// and creates and submits nothing.
	DryRun bool
	Out    io.Writer
	Now    func() time.Time // nil: time.Now
	// FreezeDry names stages whose every call is captured as it starts
	// (package capture), besides those of the policies' freeze_dry.
	FreezeDry []string
}

// Submitted says what Submit or Resume did.
type Submitted struct {
	Run     string         `json:"run"`
	Dir     string         `json:"runDir"`
	Jobs    []string       `json:"jobs"` // the job, then its follow-ons
	Attempt int            `json:"attempt"`
	Visits  int            `json:"visits"` // visits the job will run
	Plan    scheduler.Plan `json:"plan"`
	// Steps, for a run of named steps (a production): each step's share
	// of the job.
	Steps []StepPlan `json:"steps,omitempty"`
	// Note, for a production, names the topics its pipelines read from
	// outside it (Production.ExternalNote).
	Note   string `json:"note,omitempty"`
	Script string `json:"script"`
	Log    string `json:"log"`   // Slurm's log of the first job
	State  string `json:"state"` // the state file
	DryRun bool   `json:"dryRun,omitempty"`
	// Scripts, for a dry run: the job scripts that would be written,
	// the job's and then its follow-ons', for --json to carry.
	Scripts []RenderedScript `json:"scripts,omitempty"`
}

// RenderedScript is a job script a dry run renders and does not write.
type RenderedScript struct {
	File string `json:"file"` // where it would be written
	Text string `json:"text"`
}

// Submit creates a run and submits its first job (and AutoResume
// follow-ons). Bad input — policy, visit list, site, request, a run name
// in use — is reported before anything is created (wrapping
// conf.ErrInvalid). When sbatch refuses the job, the run directory is
// removed again.
func Submit(ctx context.Context, o SubmitOptions) (*Submitted, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	in, err := input.ReadInput(o.Policy, input.InputOptions{Visits: o.Visits, Listen: o.Listen, Slices: o.Request.Slices})
	if err != nil {
		return nil, err
	}
	if err := in.CheckFreezeDry(o.FreezeDry); err != nil {
		return nil, err
	}
	if err := checkCommon(o); err != nil {
		return nil, err
	}
	if err := checkLauncher(o.Site, o.Policy, len(in.Steps)); err != nil {
		return nil, err
	}
	planned, err := planSteps(o.Site, in.Name, in.File, in.Steps, o.Request)
	if err != nil {
		return nil, err
	}
	if _, err := growFactors(o.Site, in.Steps, o.Grow); err != nil {
		return nil, err
	}
	name, bin, l, err := newRun(o, in.Name, now)
	if err != nil {
		return nil, err
	}
	base := rundir.Settings{Binary: bin, SiteFile: o.Site.Path, Request: o.Request, Broker: rundir.BrokerOf(o.Site),
		Heartbeat: o.Heartbeat}
	if o.Grow {
		base.AutoGrow = o.AutoResume
	}
	rj := newRunJob(base, in, planned, name, l)
	rj.hold = o.Hold
	tmpl, err := loadTemplate(o.Site)
	if err != nil {
		return nil, err
	}
	sub := &Submitted{Run: name, Dir: l.Dir, Attempt: 1, Visits: in.Visits(), Plan: planned.Plan,
		Script: l.Script(1), State: l.State(), DryRun: o.DryRun, Steps: rj.stepPlans(), Note: in.Note}
	follow := o.AutoResume
	if o.Grow {
		follow = 0 // each job submits the next
	}
	scripts, err := renderChain(tmpl, o.Site, l, rj, 1, follow)
	if err != nil {
		return nil, err
	}
	if o.DryRun {
		printDry(o.Out, sub, planned, scripts)
		return sub, nil
	}
	created := now()
	lk, err := createRun(o.Site.RunsRoot, name, func(tl rundir.Layout) error {
		if err := fillRun(tl, l, in, rj, o.Site.Path, created); err != nil {
			return err
		}
		if err := writeFreezeDry(tl, in, o.FreezeDry); err != nil {
			return err
		}
		return writeScripts(tl, scripts, 1)
	})
	if err != nil {
		return nil, err
	}
	if err := submitNew(ctx, o.Backend, lk, l, rundir.Records(l, rj.set), scripts, now, sub); err != nil {
		return nil, err
	}
	return sub, nil
}

// newRunJob is what the scripts of new run name in l are rendered from:
// the run's settings (base, with the input's own) and each step's. A step
// in the run directory shares the run's settings (one state file); a step
// in a folder of its own has its own, pointing at the run, and the run's
// list it.
func newRunJob(base rundir.Settings, in *input.Input, planned *RunPlan, name string, l rundir.Layout) runJob {
	rj := runJob{name: name, plan: planned.Plan, set: base}
	for i, st := range in.Steps {
		sl := rundir.Layout{Dir: filepath.Join(l.Dir, st.Dir)}
		ss := base
		ss.PipelineDir, ss.PipelineFrom, ss.Listen, ss.After = sl.PipelineFiles(), st.Policy.Dir, st.Listen, st.After
		if st.VisitsPath != "" {
			ss.Visits = filepath.Base(sl.Visits(visitsExt(st.VisitsPath)))
		}
		if sl == l {
			rj.set = ss
		} else {
			ss.PartOf, ss.Request.Slices, ss.SlicesFrom = l.Dir, planned.Steps[i].Slices, st.SlicesFrom
			if ss.SlicesFrom == "" {
				ss.SlicesFrom = "the policy's slices"
			}
			rj.set.Pipelines = append(rj.set.Pipelines, rundir.StepEntry{Name: st.Name, Slices: st.Slices})
		}
		rj.steps = append(rj.steps, runStep{name: st.Name, l: sl, set: ss, asked: st.Slices, tasks: planned.Steps[i].Tasks})
	}
	return rj
}

// fillRun fills the new run directory tl, which becomes l: the input's
// copy, and for each step its folders, its policy and visit list's copies
// and its state file with its visits pending; the run's own state file
// when no step shares it.
func fillRun(tl, l rundir.Layout, in *input.Input, rj runJob, siteFile string, created time.Time) error {
	if err := populate(tl, "", "", ""); err != nil {
		return err
	}
	if in.Keep != "" {
		if err := copyFile(in.File, filepath.Join(tl.Dir, in.Keep)); err != nil {
			return err
		}
	}
	for i, st := range in.Steps {
		rs := rj.steps[i]
		sl := rundir.Layout{Dir: filepath.Join(tl.Dir, st.Dir)}
		if err := populate(sl, st.PolicyPath, st.VisitsPath, rs.set.Visits); err != nil {
			return err
		}
		if err := copyPipelineFiles(st.Policy, sl.PipelineFiles()); err != nil {
			return err
		}
		rs.set.PipelineCopied = created
		js, err := rundir.EncodeSettings(rs.set)
		if err != nil {
			return err
		}
		ids := make([]string, len(st.Visits))
		for k, v := range st.Visits {
			ids[k] = v.ID
		}
		if err := createState(sl, state.Run{ID: rj.name, Name: rj.name, Dir: rs.l.Dir, Pipeline: st.PipelineName(),
			PolicySum: st.Policy.Checksum, Site: siteFile, Partition: rj.plan.Partition, Created: created, Settings: js}, ids); err != nil {
			return err
		}
	}
	if rundir.StepIn(l, rj.set) {
		return nil
	}
	js, err := rundir.EncodeSettings(rj.set)
	if err != nil {
		return err
	}
	return createState(tl, state.Run{ID: rj.name, Name: rj.name, Dir: l.Dir, Pipeline: in.Name, Site: siteFile,
		Partition: rj.plan.Partition, Created: created, Settings: js}, nil)
}

// newRun settles a new run's name (o.Name, else base-YYYYMMDD-HHMMSS),
// the binary its jobs run, and its directory, refusing a name in use and
// a runs root without room for the run's events.
func newRun(o SubmitOptions, base string, now func() time.Time) (name, bin string, l rundir.Layout, err error) {
	name = o.Name
	if name == "" {
		name = base + "-" + now().Format("20060102-150405")
	}
	if err := rundir.CheckName(name); err != nil {
		return "", "", l, err
	}
	if err := checkRunsRoot(o.Site.Path, o.Site.RunsRoot); err != nil {
		return "", "", l, err
	}
	if bin, err = binary(o.Binary); err != nil {
		return "", "", l, err
	}
	l = rundir.Layout{Dir: filepath.Join(o.Site.RunsRoot, name)}
	if _, err := os.Stat(l.Dir); err == nil {
		return "", "", l, fmt.Errorf("%w: run %q exists already (%s): choose another --name, or resume it", conf.ErrInvalid, name, l.Dir)
	}
	if err := rundir.CheckBrokerSpace(l.Dir, rundir.BrokerOf(o.Site)); err != nil {
		return "", "", l, err
	}
	return name, bin, l, nil
}

// createRun builds the directory of run name under root with fill, in a
// folder beside its final name that is then moved in place: a run
// directory that exists is complete. It returns holding the run's lock,
// taken before the move: no other command submits for the run before
// its first job is submitted and recorded.
func createRun(root, name string, fill func(tmp rundir.Layout) error) (*runLock, error) {
	if err := os.MkdirAll(root, rundir.DirMode); err != nil {
		return nil, fmt.Errorf("jobs: runs root: %w", err)
	}
	tmp, err := mkdirTemp(root, "."+name+".new-")
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := fill(rundir.Layout{Dir: tmp}); err != nil {
		return nil, err
	}
	lk, err := lockRun(context.Background(), rundir.Layout{Dir: tmp}, 0)
	if err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, filepath.Join(root, name)); err != nil {
		lk.unlock()
		return nil, fmt.Errorf("jobs: %w", err)
	}
	if lk.state != "" { // the lock row's file moved with its folder
		lk.state = rundir.Layout{Dir: filepath.Join(root, name)}.State()
	}
	return lk, nil
}

// mkdirTemp is os.MkdirTemp with rundir.DirMode in place of its 0700: the
// folder becomes the run directory.
func mkdirTemp(dir, prefix string) (string, error) {
	for try := 0; ; try++ {
		var b [6]byte
		rand.Read(b[:])
		name := filepath.Join(dir, prefix+hex.EncodeToString(b[:]))
		err := os.Mkdir(name, rundir.DirMode)
		switch {
		case err == nil:
			return name, nil
		case !errors.Is(err, fs.ErrExist) || try == 100:
			return "", err
		}
	}
}

// submitNew submits the first job (and follow-ons) of a new run in l,
// holding its lock lk, which it releases; when Slurm took none, the run
// directory goes again.
func submitNew(ctx context.Context, b scheduler.Backend, lk *runLock, l rundir.Layout, record []rundir.Layout, scripts [][]byte, now func() time.Time, sub *Submitted) error {
	defer lk.unlock()
	if err := submitChain(ctx, b, lk, l, record, scripts, 1, now, sub); err != nil {
		if len(sub.Jobs) == 0 {
			os.RemoveAll(l.Dir) // nothing was submitted: leave nothing behind
		}
		return err
	}
	return nil
}

// checkCommon checks the options every input's submission shares.
func checkCommon(o SubmitOptions) error {
	if o.Heartbeat < 0 || o.Heartbeat > 0 && o.Heartbeat < 100*time.Millisecond {
		return fmt.Errorf("%w: --heartbeat must be at least 100ms, got %s", conf.ErrInvalid, o.Heartbeat)
	}
	if o.AutoResume < 0 {
		return fmt.Errorf("%w: --auto-resume must be 0 or more, got %d", conf.ErrInvalid, o.AutoResume)
	}
	if o.Grow {
		_, err := checkGrowth(ResumeOptions{Grow: true, AutoResume: o.AutoResume}, rundir.Settings{})
		return err
	}
	return nil
}

// binary finds the dpsbatch executable the job runs.
func binary(given string) (string, error) {
	bin := given
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return "", fmt.Errorf("jobs: finding this executable (pass --binary): %w", err)
		}
		if strings.Contains(bin, string(os.PathSeparator)+"go-build") {
			return "", fmt.Errorf("%w: this dpsbatch is a temporary `go run` build that vanishes when it exits; build one (go build -o dpsbatch ./cmd/dpsbatch) or pass --binary", conf.ErrInvalid)
		}
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", fmt.Errorf("%w: --binary: %v", conf.ErrInvalid, err)
	}
	if fi, err := os.Stat(abs); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%w: --binary %s: not an executable file", conf.ErrInvalid, abs)
	}
	return abs, nil
}

func loadTemplate(s *site.Site) (*templates.Template, error) {
	if s.Template == "" {
		return templates.Default(), nil
	}
	return templates.Load(s.Template)
}

// populate makes the folders of a new run directory and copies the
// policy and the visit list into it (each when not ""), the list under
// the name copy.
func populate(l rundir.Layout, policy, visits, copy string) error {
	for _, d := range []string{rundir.ScriptsDir, rundir.LogsDir} {
		if err := os.MkdirAll(filepath.Join(l.Dir, d), rundir.DirMode); err != nil {
			return fmt.Errorf("jobs: %w", err)
		}
	}
	files := map[string]string{}
	if policy != "" {
		files[policy] = l.Policy()
	}
	if visits != "" {
		files[visits] = filepath.Join(l.Dir, copy)
	}
	for src, dst := range files {
		data, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("jobs: %w", err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return fmt.Errorf("jobs: %w", err)
		}
	}
	return nil
}

// runJob is what the scripts of a run's attempts are rendered from: its
// steps and their allocation.
type runJob struct {
	name string          // the run's name, also its run ID
	set  rundir.Settings // the run's settings (its state file's)
	// factors are what the run grows by (growFactors).
	factors site.Grow
	// request is what the job asks for: set.Request, or what resume
	// changed it to (recorded before the job is submitted); grown says
	// why it grew ("" when it did not).
	request rundir.Request
	grown   string
	plan    scheduler.Plan
	steps   []runStep // in the run's order
	hold    bool      // submit the first job held (submit --hold)
}

// stepPlans is each named step's share of the allocation, for the
// commands to print (a run of one policy's single step has no name).
func (rj runJob) stepPlans() []StepPlan {
	var out []StepPlan
	for _, st := range rj.steps {
		if st.name != "" {
			out = append(out, StepPlan{Pipeline: st.name, Slices: st.tasks - 1, Tasks: st.tasks})
		}
	}
	return out
}

// renderChain renders the scripts of attempts first .. first+follow: the
// job and its follow-ons. Each follow-on's dependency is filled in at
// submission, once the job before has an ID.
func renderChain(t *templates.Template, s *site.Site, l rundir.Layout, rj runJob, first, follow int) ([][]byte, error) {
	var out [][]byte
	for a := first; a <= first+follow; a++ {
		var b bytes.Buffer
		if err := t.Render(&b, jobFor(s, l, rj, a)); err != nil {
			return nil, err
		}
		out = append(out, b.Bytes())
	}
	return out, nil
}

// jobFor is what the template needs for one attempt: the run's broker
// (unless the site's is external) beside its steps. One step takes the
// whole allocation; several share it, each its own srun step.
func jobFor(s *site.Site, l rundir.Layout, rj runJob, attempt int) templates.Job {
	name, plan := rj.name, rj.plan
	ps := s.Settings(plan.Partition)
	j := templates.Job{Name: name, RunID: name, RunDir: l.Dir, Partition: plan.Partition,
		Account: ps.Account, QoS: ps.QoS, Nodes: plan.Nodes, Tasks: plan.Tasks, TasksPerNode: plan.NodeTasks(),
		CPUsPerTask: plan.CPUsPerTask, MemPerCPUMB: plan.MemPerCPUMB, GPUsPerTask: plan.GPUsPerTask, Time: slurmtime.Format(plan.Time),
		Output: slurmLogPattern(l), Extra: ps.Sbatch, Setup: ps.Setup, Attempt: attempt,
		Env: append(ps.Env, [2]string{"DPSBATCH_RUN", name}, [2]string{"DPSBATCH_ATTEMPT", fmt.Sprint(attempt)})}
	if !rj.set.Broker.External() {
		j.Broker = []string{rj.set.Binary, "broker", "--run-dir", l.Dir}
	}
	// Every step shares the run ID (so its topics) and the stop file,
	// and runs under its entry's name, whatever its policy calls it: the
	// after rule, the subscriptions and the senders all know a pipeline
	// by that one name.
	for _, st := range rj.steps {
		tasks := st.tasks
		if len(rj.steps) == 1 {
			tasks = 0 // the whole allocation
		}
		launch := launch(s, st.l, st.set, name, l.StopFile(attempt), tasks, plan)
		if st.name != "" {
			launch = append(launch, "--name", st.name)
		}
		j.Steps = append(j.Steps, templates.Step{Name: st.name, Launch: launch})
	}
	if len(j.Steps) == 1 {
		j.Launch, j.Steps = j.Steps[0].Launch, nil
	}
	if rj.hold && attempt == 1 {
		j.Extra = append(j.Extra, "--hold")
	}
	j.After = autoResume(rj.set, l)
	if plan.Time > 0 {
		// Only the batch shell hears the warning (B:), and passes it on
		// through the stop file: Slurm would otherwise signal every
		// process of the step, the stages' programs too.
		warn := s.TimeWarning
		if warn <= 0 || warn > plan.Time/2 {
			warn = plan.Time / 2
		}
		j.Signal = fmt.Sprintf("B:USR1@%d", int(warn.Seconds()))
		j.StopFile = l.StopFile(attempt)
	}
	return j
}

// autoResume is the command a job of a run with growth on runs at its
// end to submit the next (nil when growth is off or spent): resume --auto
// of the run, with its site file.
func autoResume(set rundir.Settings, l rundir.Layout) []string {
	if set.AutoGrow < 1 {
		return nil
	}
	a := []string{set.Binary, "resume", "--auto"}
	if set.SiteFile != "" {
		a = append(a, "--site", set.SiteFile)
	}
	return append(a, l.Dir)
}

// launch is a step's command line: the site's launcher starting `dpsbatch
// run` on every task of the pipeline in l, under run ID runID, watching
// stop. tasks > 0 makes it one of several concurrent srun steps of a
// run: it takes exactly that many tasks of the allocation
// (--exact, else Slurm 22.05 gives the first step every CPU and the
// others wait for it) on as many of the plan's nodes as Slurm finds free
// CPUs on. A plan with GPUs gives each srun rank its own (--gpus-per-task);
// under mpirun every rank sees its node's GPUs of the job.
func launch(s *site.Site, l rundir.Layout, set rundir.Settings, runID, stop string, tasks int, plan scheduler.Plan) []string {
	var a []string
	if s.Launcher.Kind == "mpirun" {
		a = append([]string{"mpirun"}, s.Launcher.Flags...)
	} else {
		a = append([]string{"srun"}, s.Launcher.Flags...)
		if tasks > 0 {
			// Any number of the job's nodes: without a range srun
			// spreads the step over all of them, and a step that
			// then finds one node full waits for a CPU there.
			a = append(a, "--exact", "--ntasks="+strconv.Itoa(tasks), "--nodes=1-"+strconv.Itoa(max(plan.Nodes, 1)))
		}
		if plan.GPUsPerTask > 0 {
			// Each rank its own GPUs, in its CUDA_VISIBLE_DEVICES.
			a = append(a, "--gpus-per-task="+strconv.Itoa(plan.GPUsPerTask))
		}
		a = append(a, "--kill-on-bad-exit=1")
	}
	comm := s.Launcher.Comm
	if comm == "" {
		comm = harness.CommAuto
	}
	a = append(a, set.Binary, "run", "--run-dir", l.Dir, "--state", l.State(), "--pipeline", l.Policy())
	if set.Visits != "" {
		a = append(a, "--visits", filepath.Join(l.Dir, set.Visits))
	}
	if set.PipelineDir != "" { // dpsbatch run refuses an empty value
		a = append(a, "--pipeline-dir", set.PipelineDir)
	}
	return append(a, "--run-id", runID, "--comm", comm, "--stop-file", stop)
}

// writeScripts writes the rendered scripts of attempts first.. into l.
func writeScripts(l rundir.Layout, scripts [][]byte, first int) error {
	if err := os.MkdirAll(filepath.Join(l.Dir, rundir.ScriptsDir), rundir.DirMode); err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	for i, s := range scripts {
		if err := os.WriteFile(l.Script(first+i), s, 0o644); err != nil {
			return fmt.Errorf("jobs: %w", err)
		}
	}
	return nil
}

// submitChain submits the scripts in order, each follow-on depending on
// the job before (afterany), and records every job in the state files of
// record (the run's, and each step's own): each
// submission before its sbatch (submitOne), its job as soon as Slurm has
// it. The caller holds the run lock lk. sub.Jobs grows as jobs are
// submitted. When a follow-on fails, the jobs already submitted stay
// (they are recorded) and the error says so.
func submitChain(ctx context.Context, b scheduler.Backend, lk *runLock, l rundir.Layout, record []rundir.Layout, scripts [][]byte, first int, now func() time.Time, sub *Submitted) error {
	var sts []*state.Store
	defer func() {
		for _, st := range sts {
			st.Close()
		}
	}()
	for _, r := range record {
		st, err := state.Open(r.State())
		if err != nil {
			return err
		}
		sts = append(sts, st)
	}
	prev := ""
	for i, script := range scripts {
		dep := ""
		if prev != "" {
			dep = "afterany:" + prev
		}
		id, err := submitOne(ctx, b, lk, sts, rundir.NewSubmission(sub.Run, first+i, now()),
			scheduler.Submission{Script: script, Dir: l.Dir, Dependency: dep})
		if err != nil && id != "" {
			_ = b.Cancel(context.WithoutCancel(ctx), id, "")
			return fmt.Errorf("%w (cancelled it)", err)
		}
		if err != nil {
			if len(sub.Jobs) > 0 {
				return fmt.Errorf("jobs: submitted %s, then follow-on attempt %d failed: %w", strings.Join(sub.Jobs, ", "), first+i, err)
			}
			return err
		}
		sub.Jobs = append(sub.Jobs, id)
		prev = id
	}
	sub.Log = l.SlurmLog(sub.Jobs[0])
	return nil
}

// printDry keeps a dry run's scripts in sub and prints the plan and the
// scripts to w (nil: prints nothing).
func printDry(w io.Writer, sub *Submitted, pl *RunPlan, scripts [][]byte) {
	for i, s := range scripts {
		sub.Scripts = append(sub.Scripts, RenderedScript{File: rundir.Layout{Dir: sub.Dir}.Script(sub.Attempt + i), Text: string(s)})
	}
	if w == nil {
		return
	}
	p := pl.Plan
	fmt.Fprintf(w, "dry run: nothing created, nothing submitted\n")
	fmt.Fprintf(w, "run %s in %s: %d visits, %d slices\n", sub.Run, sub.Dir, sub.Visits, pl.Plan.Tasks-len(pl.Steps))
	fmt.Fprintf(w, "plan (%s): partition %s, %d nodes, %d tasks (layout %v), %d CPUs per task", p.Strategy, p.Partition,
		p.Nodes, p.Tasks, p.Layout, p.CPUsPerTask)
	if p.MemPerCPUMB > 0 {
		fmt.Fprintf(w, ", %d MB per CPU", p.MemPerCPUMB)
	}
	if p.GPUsPerTask > 0 {
		fmt.Fprintf(w, ", %d GPUs per task", p.GPUsPerTask)
	}
	fmt.Fprintf(w, ", time %s\n", slurmtime.Format(p.Time))
	for _, st := range sub.Steps {
		fmt.Fprintf(w, "step %s: %d slices + its Pipeline = %d tasks\n", st.Pipeline, st.Slices, st.Tasks)
	}
	if sub.Note != "" {
		fmt.Fprintf(w, "note: %s\n", sub.Note)
	}
	for i, s := range scripts {
		fmt.Fprintf(w, "\n# ---- %s ----\n", filepath.Base(rundir.Layout{Dir: sub.Dir}.Script(sub.Attempt+i)))
		w.Write(s)
	}
}

// slurmLogPattern is the --output pattern of the jobs of the run in l: l.SlurmLog
// with Slurm's %j for the job ID, every % of the run directory's path
// written %% so that Slurm does not expand it.
func slurmLogPattern(l rundir.Layout) string {
	return templates.EscapePattern(filepath.Join(l.Dir, rundir.LogsDir)) + "/slurm-%j.out"
}
