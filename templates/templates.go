// Package templates owns the sbatch job script of a run: the Job it is made
// from, the embedded template (sbatch.tmpl, Default) that a site may
// replace with its own file (Load), and rendering with shell-safe quoting
// (Render). No value of a Job can inject a command or an #SBATCH option:
// Render rejects what cannot be placed safely, with an error naming the
// field, and the template functions quote everything else.
//
// A template is Go text/template text whose dot is a Job. Besides the
// standard functions it has:
//
//	q VALUE                one shell word standing for VALUE exactly (Quote)
//	args LIST              each element of a []string with q, space-separated
//	directive FIELD VALUE  VALUE written for an #SBATCH line so that sbatch
//	                       reads back exactly VALUE (Directive); FIELD names
//	                       the Job field ("Name", "Extra[2]") for the error
//	                       when VALUE holds a newline, CR or NUL
//
// q's words may span lines, so they belong on command lines only, never in
// a comment; before the first command only #SBATCH lines and comments
// without values may appear, since sbatch reads options up to it. The
// comment block at the top of sbatch.tmpl says the same for site authors.
//
// A job script runs one launch (Job.Launch), or several steps at once
// (Job.Steps, a production's pipelines) and optionally a background
// command beside them (Job.Broker, the run's event broker).
//
// jobs calls Render once per submission (submit and resume), then hands
// the script to the scheduler. Nothing here runs Slurm.
package templates

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/internal/slurmtime"
)

// ErrInvalid is matched by every error about bad input: a Job field that
// cannot be placed in a script, a missing required field, a site template
// that does not parse or run. Nothing is written when it is returned.
var ErrInvalid = conf.ErrInvalid

// Job is what one sbatch script is rendered from. jobs fills it from the
// site, the plan and the run. Zero numbers and empty strings are left out
// of the script, except for the required Name, RunDir, Launch and Tasks.
type Job struct {
	Name, RunID, RunDir string // RunDir must be absolute: the script cds to it

	Partition, Account, QoS string // Account and QoS are optional

	Nodes, Tasks, TasksPerNode, CPUsPerTask, MemPerCPUMB int
	// GPUsPerTask is sbatch's --gpus-per-task, 0 for no GPUs. A template
	// that never uses it cannot render a job that sets it.
	GPUsPerTask int

	// Time is the limit in Slurm's format ("01:00:00", "2-00:00:00");
	// "", "infinite" and "unlimited" leave it out (the partition's default
	// applies).
	Time string
	// Output is the --output (and --error) pattern of Slurm's log of the
	// job, such as RUN-DIR/logs/slurm-%j.out: Slurm expands its %
	// patterns, so a literal % in it is written %% (EscapePattern). It may
	// not hold a backslash.
	Output string
	// Signal is an sbatch --signal value such as B:USR1@300: Slurm sends
	// the signal that long before the time limit (B: to the batch shell
	// only; without it, to every process of the job steps, including the
	// programs the stages run).
	Signal string
	// StopFile, when set, is where the batch shell passes SIGUSR1 on: the
	// shell runs the launch in the background, and on SIGUSR1 writes why
	// into StopFile, which the Pipeline rank watches (dpsbatch run
	// --stop-file): it reads the job's end time again and stops at the
	// next visit boundary if little time is left. Pair it with a B:USR1
	// Signal. Must be absolute.
	StopFile string
	// Dependency is an sbatch --dependency value such as afterany:123,
	// optional. It is also given at submit time; the script records it.
	Dependency string
	// Extra holds the site's extra sbatch options, each one "--option" or
	// "--option=value", one #SBATCH line each.
	Extra []string
	// Setup holds the site's environment setup lines (module load ...):
	// trusted shell, placed verbatim, run before anything else.
	Setup []string
	// Env holds variables exported before the launch, in order: name and
	// value. Names must be shell variable names.
	Env [][2]string
	// Launch is the full argv of the job step, such as srun --mpi=none
	// --kill-on-bad-exit=1 /abs/dpsbatch run --run-dir D ... The script
	// exits with its status. Exactly one of Launch and Steps is set.
	Launch []string
	// Steps, instead of Launch, are several launches (a production's
	// pipelines) that run at once, each in the background: one that fails
	// does not stop the others (srun's --kill-on-bad-exit is per step).
	// The log says when each starts and ends, with its status ("dpsbatch:
	// step NAME exited 3", NAME as bash's printf %q quotes it: as it is
	// when made of letters, digits and -._/:,=@+%); the script waits for all of them and exits
	// with the first non-zero status in step order, else 0. With
	// StopFile, the shell writes the stop file once and every step's
	// Pipeline rank watches it.
	Steps []Step
	// Broker, optional, is a command (such as the run's event broker)
	// the batch shell starts in the background before the launch or the
	// steps, its output going to the job's log, and stops once they have
	// ended: SIGTERM, then waiting for it (SIGKILL if it is still there
	// after 30 seconds). It is stopped however the script ends, on
	// SIGTERM or SIGINT too.
	Broker []string
	// After, optional, is a command the batch shell runs once the launch
	// or the steps have ended and the broker has stopped, however they
	// ended (but not when the shell itself is killed or cancelled), with
	// the job's Slurm variables (SLURM_*, SBATCH_*, SRUN_*, SALLOC_*;
	// but a token, SLURM_JWT) removed from its environment and the job's ID in
	// DPSBATCH_ENDING_JOB: with growth on, `dpsbatch resume --auto`,
	// which submits the run's next job. Its status does not change the
	// script's.
	After []string
	// Attempt counts the run's jobs: 1 for the first submission, then one
	// more at each resume. It appears in the script's log line.
	Attempt int
}

// Step is one of a Job's concurrent launches.
type Step struct {
	Name   string   // required; names the step in the job's log
	Launch []string // required; its full argv, as Job.Launch
}

// FieldError is a Job field that Render cannot place in a script, or a
// missing required one. It matches ErrInvalid.
type FieldError struct {
	Field string // the field's path in Job, such as "Launch[2]" or "Env[0] name"
	Msg   string
}

func (e *FieldError) Error() string { return "templates: Job." + e.Field + ": " + e.Msg }

// Is makes every FieldError match ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// Template is a parsed sbatch template. Render may be called from several
// goroutines at once.
type Template struct {
	name string
	tmpl *template.Template
	// uses holds the Job fields the template refers to: Render refuses a
	// Job with Steps or a Broker for a template that would drop them.
	uses map[string]bool
}

// Name returns the file name the template was loaded from, or the name
// given to Parse ("sbatch.tmpl" for Default).
func (t *Template) Name() string { return t.name }

//go:embed sbatch.tmpl
var embedded string

var defaultTemplate = sync.OnceValue(func() *Template {
	t, err := Parse("sbatch.tmpl", embedded)
	if err != nil {
		panic(err) // the embedded template is tested
	}
	return t
})

// Default returns the embedded template, templates/sbatch.tmpl. Every call
// returns the same *Template.
func Default() *Template { return defaultTemplate() }

// Load reads a site's replacement template from path. Errors name the
// file, and the line where there is one. Besides what Parse checks, the
// script must ask Slurm to append to the job's log (#SBATCH
// --open-mode=append): Slurm runs a requeued job again under the same ID
// and log, and would otherwise truncate the earlier start's output.
func Load(path string) (*Template, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	t, err := Parse(path, string(b))
	if err != nil {
		return nil, err
	}
	if err := t.appendsLog(); err != nil {
		return nil, err
	}
	return t, nil
}

// openAppend is the #SBATCH line that keeps every start's log.
var openAppend = regexp.MustCompile(`(?m)^#SBATCH[ \t]+--open-mode(=|[ \t]+)a`)

// appendsLog checks that t's script, rendered for a sample job, asks
// Slurm to append to the job's log among its #SBATCH lines.
func (t *Template) appendsLog() error {
	var out bytes.Buffer
	if err := t.tmpl.Execute(&out, sampleJob()); err != nil {
		return templateError(t.name, err)
	}
	if !openAppend.Match(out.Bytes()) {
		return fmt.Errorf("templates: %w", conf.Errors{{File: t.name,
			Msg: "no \"#SBATCH --open-mode=append\" line: without it Slurm truncates the job's log when it starts a requeued job again (node failure, scontrol requeue, preemption), and the earlier start's output is lost; add it beside the other #SBATCH lines (see templates/sbatch.tmpl)"}})
	}
	return nil
}

// Parse parses text as a template called name (a file name, for errors).
// Besides parsing, it renders a sample Job, so that a misspelt field or a
// misused function is reported now, with its line, rather than at the
// first submission; and it checks that the script starts with #!, which
// sbatch requires. Errors match ErrInvalid and read
// "templates: NAME:LINE: what is wrong".
func Parse(name, text string) (*Template, error) {
	tmpl, err := template.New(name).Funcs(funcs).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, templateError(name, err)
	}
	t := &Template{name: name, tmpl: tmpl, uses: fieldsUsed(tmpl)}
	var out bytes.Buffer
	if err := t.tmpl.Execute(&out, sampleJob()); err != nil {
		return nil, templateError(name, err)
	}
	if err := t.tmpl.Execute(io.Discard, sampleStepsJob()); err != nil {
		return nil, templateError(name, err)
	}
	if !bytes.HasPrefix(out.Bytes(), []byte("#!")) {
		return nil, fmt.Errorf("templates: %w", conf.Errors{{File: name, Line: 1,
			Msg: "the script must start with #! and an interpreter (sbatch refuses it otherwise); the output starts " + strconv.Quote(firstLine(out.String()))}})
	}
	return t, nil
}

// Render checks j and writes its script to w. A field that cannot be
// placed safely or a missing required field is a *FieldError (matching
// ErrInvalid); nothing is written to w unless the whole script rendered.
func (t *Template) Render(w io.Writer, j Job) error {
	if err := check(&j); err != nil {
		return err
	}
	for _, f := range []struct {
		name, what string
		set        bool
	}{{"Steps", "several concurrent steps", len(j.Steps) > 0}, {"Broker", "a broker", len(j.Broker) > 0},
		{"After", "its command after the steps", len(j.After) > 0},
		{"GPUsPerTask", "on GPUs", j.GPUsPerTask > 0}} {
		if f.set && !t.uses[f.name] {
			return &FieldError{Field: f.name, Msg: fmt.Sprintf("the template %s never uses .%s, so its script would not run %s: start a site template from the default one (templates/sbatch.tmpl)",
				t.name, f.name, f.what)}
		}
	}
	if strings.EqualFold(j.Time, "infinite") || strings.EqualFold(j.Time, "unlimited") {
		j.Time = ""
	}
	var out bytes.Buffer
	if err := t.tmpl.Execute(&out, j); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			return fe
		}
		return templateError(t.name, err)
	}
	if _, err := w.Write(out.Bytes()); err != nil {
		return fmt.Errorf("templates: writing the script: %w", err)
	}
	return nil
}

var funcs = template.FuncMap{
	"q":         func(v any) string { return Quote(fmt.Sprint(v)) },
	"args":      quoteArgs,
	"directive": Directive,
}

var (
	envName   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	extraOpt  = regexp.MustCompile(`^--[A-Za-z0-9][A-Za-z0-9-]*(=|$)`)
	slurmTime = regexp.MustCompile(`^[0-9][0-9:-]*$`)
)

// check returns the first problem of j, in the order of Job's fields.
func check(j *Job) error {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if j.Name == "" {
		return bad("Name", "required (the job name)")
	}
	if j.StopFile != "" && !strings.HasPrefix(j.StopFile, "/") {
		return bad("StopFile", "%q is not an absolute path", j.StopFile)
	}
	if j.RunDir == "" {
		return bad("RunDir", "required (the run directory)")
	}
	if !strings.HasPrefix(j.RunDir, "/") {
		return bad("RunDir", "%q is not an absolute path", j.RunDir)
	}
	for _, n := range []struct {
		field string
		v     int
	}{{"Nodes", j.Nodes}, {"Tasks", j.Tasks}, {"TasksPerNode", j.TasksPerNode},
		{"CPUsPerTask", j.CPUsPerTask}, {"MemPerCPUMB", j.MemPerCPUMB}, {"GPUsPerTask", j.GPUsPerTask}, {"Attempt", j.Attempt}} {
		if n.v < 0 {
			return bad(n.field, "%d is negative", n.v)
		}
	}
	if j.Tasks == 0 {
		return bad("Tasks", "required (the number of tasks, at least 1)")
	}
	if t := j.Time; t != "" && !strings.EqualFold(t, "infinite") && !strings.EqualFold(t, "unlimited") {
		if _, err := slurmtime.Parse(t); err != nil || !slurmTime.MatchString(t) {
			return bad("Time", "%q is not a Slurm time limit: want MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or infinite", t)
		}
	}
	switch {
	case len(j.Steps) > 0 && len(j.Launch) > 0:
		return bad("Steps", "set together with Launch: give one launch or several steps, not both")
	case len(j.Steps) == 0 && (len(j.Launch) == 0 || j.Launch[0] == ""):
		return bad("Launch", "required (the job step's argv, such as srun ... dpsbatch run ...)")
	}
	for i, st := range j.Steps {
		if st.Name == "" {
			return bad(fmt.Sprintf("Steps[%d].Name", i), "required (names the step in the job's log)")
		}
		if len(st.Launch) == 0 || st.Launch[0] == "" {
			return bad(fmt.Sprintf("Steps[%d].Launch", i), "required (the step's argv, such as srun ... dpsbatch run ...)")
		}
	}
	if len(j.Broker) > 0 && j.Broker[0] == "" {
		return bad("Broker", "the command is empty (leave Broker out for no broker)")
	}
	if len(j.After) > 0 && j.After[0] == "" {
		return bad("After", "the command is empty (leave After out for none)")
	}
	if strings.ContainsRune(j.Output, '\\') {
		return bad("Output", "%q holds a backslash: Slurm then expands none of its %%-patterns and drops every backslash, so the log cannot be written there", j.Output)
	}
	for i, opt := range j.Extra {
		if !extraOpt.MatchString(opt) {
			return bad(fmt.Sprintf("Extra[%d]", i), "%q is not one sbatch option: want --option or --option=value", opt)
		}
	}
	for i, kv := range j.Env {
		if !envName.MatchString(kv[0]) {
			return bad(fmt.Sprintf("Env[%d] name", i), "%q is not a shell variable name: want letters, digits and _, not starting with a digit", kv[0])
		}
	}
	var err error
	eachString(j, func(field, s string) {
		if err != nil {
			return
		}
		if i := strings.IndexAny(s, "\x00\r"); i >= 0 {
			what := map[byte]string{0: "a NUL byte", '\r': "a carriage return"}[s[i]]
			err = bad(field, "%s cannot be placed in a job script (at byte %d of %q)", what, i, s)
		}
	})
	return err
}

// eachString calls f with every string of j and its field path, in the
// order of Job's fields.
func eachString(j *Job, f func(field, s string)) {
	v := reflect.ValueOf(j).Elem()
	for i := 0; i < v.NumField(); i++ {
		name, fv := v.Type().Field(i).Name, v.Field(i)
		switch fv.Kind() {
		case reflect.String:
			f(name, fv.String())
		case reflect.Slice:
			for k := 0; k < fv.Len(); k++ {
				switch e := fv.Index(k); e.Kind() {
				case reflect.String:
					f(fmt.Sprintf("%s[%d]", name, k), e.String())
				case reflect.Array:
					f(fmt.Sprintf("%s[%d] name", name, k), e.Index(0).String())
					f(fmt.Sprintf("%s[%d] value", name, k), e.Index(1).String())
				case reflect.Struct: // Steps
					st := e.Interface().(Step)
					f(fmt.Sprintf("%s[%d].Name", name, k), st.Name)
					for a, s := range st.Launch {
						f(fmt.Sprintf("%s[%d].Launch[%d]", name, k, a), s)
					}
				}
			}
		}
	}
}

// sampleJob is a Job with every field set, which Parse renders to find
// errors that only show when a template runs.
func sampleJob() Job {
	return Job{
		Name: "sample", RunID: "sample-run", RunDir: "/runs/sample",
		Partition: "debug", Account: "science", QoS: "normal",
		Nodes: 2, Tasks: 8, TasksPerNode: 4, CPUsPerTask: 1, MemPerCPUMB: 500, GPUsPerTask: 1,
		Time: "01:00:00", Output: "/runs/sample/logs/slurm-%j.out",
		Signal: "USR1@300", Dependency: "afterany:1",
		Extra:   []string{"--exclusive"},
		Setup:   []string{"module load gcc"},
		Env:     [][2]string{{"OMP_NUM_THREADS", "1"}},
		Launch:  []string{"srun", "--mpi=none", "/usr/bin/dpsbatch", "run"},
		Attempt: 1,
	}
}

// sampleStepsJob is sampleJob with a broker and steps in place of the
// launch.
func sampleStepsJob() Job {
	j := sampleJob()
	j.Launch = nil
	j.StopFile = "/runs/sample/.stop"
	j.Broker = []string{"/usr/bin/dpsbatch", "broker"}
	j.Steps = []Step{{Name: "one", Launch: []string{"srun", "-n2", "true"}}, {Name: "two", Launch: []string{"srun", "-n3", "true"}}}
	return j
}

// fieldsUsed lists the Job fields that the templates of t refer to, as
// .Field or $.Field, anywhere.
func fieldsUsed(t *template.Template) map[string]bool {
	used := map[string]bool{}
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n != nil {
				for _, c := range n.Nodes {
					walk(c)
				}
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n != nil {
				for _, c := range n.Cmds {
					walk(c)
				}
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.ChainNode:
			walk(n.Node)
		case *parse.FieldNode:
			used[n.Ident[0]] = true
		case *parse.VariableNode:
			if len(n.Ident) > 1 && n.Ident[0] == "$" {
				used[n.Ident[1]] = true
			}
		case *parse.IfNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.TemplateNode:
			walk(n.Pipe)
		}
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			walk(tt.Tree.Root)
		}
	}
	return used
}

var (
	tmplErrLine = regexp.MustCompile(`^(\d+)(?::\d+)?: (?s)(.*)$`)
	badField    = regexp.MustCompile(`can't evaluate field (\w+) in type templates\.Job`)
)

// templateError turns a text/template error about name into
// "templates: name:line: message" matching ErrInvalid.
func templateError(name string, err error) error {
	msg := err.Error()
	e := &conf.Error{File: name}
	if rest, ok := strings.CutPrefix(msg, "template: "+name+":"); ok {
		if m := tmplErrLine.FindStringSubmatch(rest); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			rest = m[2]
		}
		msg = rest
	}
	if m := badField.FindStringSubmatch(msg); m != nil {
		var have []string
		for _, f := range reflect.VisibleFields(reflect.TypeFor[Job]()) {
			have = append(have, f.Name)
		}
		msg = fmt.Sprintf("unknown Job field %s%s %s", m[1], conf.Suggest(m[1], have), conf.Have(have))
	}
	e.Msg = msg
	return fmt.Errorf("templates: %w", conf.Errors{e})
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	if len(line) > 40 {
		line = line[:40] + "..."
	}
	return line
}
