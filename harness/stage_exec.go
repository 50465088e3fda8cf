package harness

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// defaultExecTimeout is how long an exec stage's program may run per
// clipboard unless its settings say otherwise.
const defaultExecTimeout = 10 * time.Minute

const (
	maxStdout  = 16 << 20 // bytes of stdout kept for the JSON object
	stderrTail = 4 << 10  // bytes of stderr kept for error messages
)

// program is what the exec and worker stages run: a command, its working
// directory and environment, and the time it is allowed.
type program struct {
	command []Pattern
	timeout time.Duration
	dir     *Pattern
	env     []propSpec
}

func parseProgram(s Settings) (program, error) {
	p := program{timeout: s.Duration("timeout")}
	args := s.Strings("command")
	if len(args) == 0 || args[0] == "" {
		return p, errors.New("command: name the program to run (and its arguments), such as [python3, measure.py, \"{input}\"]")
	}
	var err error
	if p.command, err = parsePatterns("command", args); err != nil {
		return p, err
	}
	if p.timeout <= 0 {
		return p, errors.New("timeout must be positive")
	}
	if d := s.String("dir"); d != "" {
		t, err := parsePattern(d)
		if err != nil {
			return p, fmt.Errorf("dir: %w", err)
		}
		p.dir = &t
	}
	for _, e := range s.Pairs("env") {
		t, err := parsePattern(e.Value)
		if err != nil {
			return p, fmt.Errorf("env.%s: %w", e.Key, err)
		}
		p.env = append(p.env, propSpec{e.Key, t})
	}
	return p, nil
}

func (p program) templates() []Pattern {
	ts := append([]Pattern(nil), p.command...)
	if p.dir != nil {
		ts = append(ts, *p.dir)
	}
	for _, e := range p.env {
		ts = append(ts, e.tmpl)
	}
	return ts
}

// argv expands the command for cb (nil outside a visit).
func (p program) argv(cx *Context, cb *Clipboard) ([]string, error) {
	argv := make([]string, len(p.command))
	for i, t := range p.command {
		a, err := cx.Expand(t, cb)
		if err != nil {
			return nil, fmt.Errorf("command[%d]: %w", i, err)
		}
		argv[i] = a
	}
	return argv, nil
}

// workDir expands and makes the working directory: the run directory
// unless dir is set.
func (p program) workDir(cx *Context, cb *Clipboard) (string, error) {
	if p.dir == nil {
		return cx.RunDir(), nil
	}
	d, err := cx.Path(*p.dir, cb)
	if err == nil {
		err = makeDir(d)
	}
	if err != nil {
		return "", fmt.Errorf("dir: %w", err)
	}
	return d, nil
}

// environ is this process's environment, the run's names (DPSBATCH_RUN,
// _RUN_DIR, _STAGE, _SLICE), extra, and the expanded env settings.
func (p program) environ(cx *Context, cb *Clipboard, extra ...string) ([]string, error) {
	env := append(os.Environ(),
		"DPSBATCH_RUN="+cx.RunID(),
		"DPSBATCH_RUN_DIR="+cx.RunDir(),
		"DPSBATCH_STAGE="+cx.Stage(),
		"DPSBATCH_SLICE="+strconv.Itoa(cx.Slice()),
	)
	env = append(env, extra...)
	for _, e := range p.env {
		v, err := cx.Expand(e.tmpl, cb)
		if err != nil {
			return nil, fmt.Errorf("env.%s: %w", e.name, err)
		}
		env = append(env, e.name+"="+v)
	}
	return env, nil
}

// inOwnGroup gives cmd's program its own process group, so that killing
// it (a timeout, an interrupt) kills its children too.
func inOwnGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd.Process) }
}

// killGroup kills a program started by inOwnGroup and its children.
func killGroup(p *os.Process) error { return syscall.Kill(-p.Pid, syscall.SIGKILL) }

// produced are the clipboard keys a program's JSON object must hold, and
// which of them are shared.
type produced struct {
	keys   []string
	shared map[string]bool
}

func parseProduced(s Settings) (produced, error) {
	p := produced{keys: s.Strings("produces"), shared: map[string]bool{}}
	for _, k := range s.Strings("shared") {
		if !contains(p.keys, k) {
			if hint := conf.Suggest(k, p.keys); hint != "" {
				return p, fmt.Errorf("shared: %q is not one of the keys in produces%s", k, hint)
			}
			return p, fmt.Errorf("shared: %q is not one of the keys in produces; if it is a data ID key, it needs no sharing: shared values reach the Pipeline keyed by data ID", k)
		}
		p.shared[k] = true
	}
	return p, nil
}

// sharedKeys are the keys of produces that are shared, sorted (sharer).
func (p produced) sharedKeys() []string {
	return slices.Sorted(maps.Keys(p.shared))
}

// put checks that obj, what prog printed, holds every key of produces,
// and puts its items on cb (shared ones shared).
func (p produced) put(cb *Clipboard, obj map[string]any, prog string) error {
	for _, k := range p.keys {
		if _, ok := obj[k]; !ok {
			return fmt.Errorf("%s did not print %q, which produces declares", prog, k)
		}
	}
	for k, v := range obj {
		if p.shared[k] {
			cb.PutShared(k, plainJSON(v))
		} else {
			cb.Put(k, plainJSON(v))
		}
	}
	return nil
}

type execStage struct {
	program
	produced
	ignoreSignals bool
	results       string    // resultsStdout, resultsNone or resultsFile
	resultsFile   Pattern   // with resultsFile
	outputs       []Pattern // files the program must have written
	writes        []Pattern // the locations it writes to, each made before the program runs
}

// Where an exec stage's results (a JSON object) come from.
const (
	resultsStdout = "stdout" // all of stdout, or else its last non-empty line
	resultsNone   = "none"   // nowhere: stdout goes to the log
	resultsFile   = "file"   // the results_file the program writes
)

// outputSizesKey is the clipboard key of the declared outputs' sizes: a
// map from each file's absolute path to its size in bytes, on the data
// ID's clipboard. The run records them through Context.madeOutputs.
const outputSizesKey = "outputSizes"

func newExec(s Settings) (Stage, error) {
	prog, err := parseProgram(s)
	if err != nil {
		return nil, err
	}
	prod, err := parseProduced(s)
	if err != nil {
		return nil, err
	}
	st := &execStage{program: prog, produced: prod, ignoreSignals: s.Bool("ignore_stop_signals")}
	if err := st.parseResults(s); err != nil {
		return nil, err
	}
	if st.outputs, err = parsePatterns("outputs", s.Strings("outputs")); err != nil {
		return nil, err
	}
	st.writes = writtenLocations(st.templates())
	return st, nil
}

// parseResults reads results and results_file: a results file implies
// results: file, and results: none leaves nothing for produces.
func (st *execStage) parseResults(s Settings) error {
	st.results = cmp.Or(s.String("results"), resultsStdout)
	file := s.String("results_file")
	if file != "" && !s.Has("results") {
		st.results = resultsFile
	}
	switch {
	case st.results != resultsStdout && st.results != resultsNone && st.results != resultsFile:
		return fmt.Errorf("results: %q is not stdout, none or file", st.results)
	case st.results == resultsFile && file == "":
		return errors.New("results: file needs results_file, the path template of the file the program writes")
	case st.results != resultsFile && file != "":
		return fmt.Errorf("results_file is set, but results is %s: leave results out, or set it to file", st.results)
	case st.results == resultsNone && len(st.keys) > 0:
		return fmt.Errorf("produces lists %s, but results: none brings nothing back", strings.Join(st.keys, ", "))
	}
	if file == "" {
		return nil
	}
	var err error
	if st.resultsFile, err = parsePattern(file); err != nil {
		return fmt.Errorf("results_file: %w", err)
	}
	return nil
}

// parsePatterns parses the templates of setting key.
func parsePatterns(key string, ss []string) ([]Pattern, error) {
	var out []Pattern
	for i, v := range ss {
		t, err := parsePattern(v)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", key, i, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// templates are the program's templates, the results file's and the
// outputs'.
func (st *execStage) templates() []Pattern {
	ts := append(st.program.templates(), st.outputs...)
	if st.results == resultsFile {
		ts = append(ts, st.resultsFile)
	}
	return ts
}

// writtenLocations are the locations a stage writes to (output, scratch,
// work) that its templates name, as templates of their own.
func writtenLocations(ts []Pattern) []Pattern {
	var out []Pattern
	for _, name := range []string{"output", "scratch", "work"} {
		for _, t := range ts {
			if contains(t.Names(), name) {
				out = append(out, mustPattern("{"+name+"}"))
				break
			}
		}
	}
	return out
}

// makeLocations makes the directories of the locations ts name for cb.
func makeLocations(cx *Context, cb *Clipboard, ts []Pattern) error {
	for _, t := range ts {
		d, err := cx.Path(t, cb)
		if err == nil {
			err = makeDir(d)
		}
		if err != nil {
			return fmt.Errorf("location %s: %w", t, err)
		}
	}
	return nil
}

func (st *execStage) Keys() (needs, produces []string) {
	produces = st.keys
	if len(st.outputs) > 0 {
		produces = append(slices.Clip(produces), outputSizesKey)
	}
	return patternNeeds(st.templates()...), produces
}

// Process runs the program once for this clipboard.
func (st *execStage) Process(cx *Context, cb *Clipboard) error {
	ctx, cancel := context.WithTimeout(cx.Context(), st.timeout)
	defer cancel()
	cmd, prog, err := st.prepare(ctx, cx, cb)
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	files, err := st.files(cx, cb)
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	stdout := &capped{max: maxStdout}
	stderr := &tail{max: stderrTail}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("exec: %s timed out after %s%s", prog, st.timeout, stderr.describe())
	}
	if err != nil {
		return fmt.Errorf("exec: %w", programError(prog, err, stderr))
	}
	if stderr.n > 0 {
		cx.Logger().Debug("exec stderr", "program", prog, "tail", strings.TrimSpace(stderr.String()))
	}
	cx.Logger().Debug("exec done", "program", prog, "took", took)
	if err := st.finish(cx, cb, prog, stdout, files); err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	return nil
}

// execFiles are a run's results file (with results: file) and declared
// outputs, expanded.
type execFiles struct {
	results string
	outputs []string
}

// files expands the results file and the outputs for cb, and removes a
// results file left from an earlier attempt, so that only this run's is
// ever read.
func (st *execStage) files(cx *Context, cb *Clipboard) (execFiles, error) {
	var f execFiles
	for _, t := range st.outputs {
		p, err := cx.Path(t, cb)
		if err != nil {
			return f, fmt.Errorf("outputs: %w", err)
		}
		f.outputs = append(f.outputs, p)
	}
	if st.results != resultsFile {
		return f, nil
	}
	p, err := cx.Path(st.resultsFile, cb)
	if err != nil {
		return f, fmt.Errorf("results_file: %w", err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return f, fmt.Errorf("results_file: removing the one left from an earlier attempt: %w", err)
	}
	f.results = p
	return f, nil
}

// finish checks what the program left, after it exited 0: its results
// and its outputs, and puts them on cb.
func (st *execStage) finish(cx *Context, cb *Clipboard, prog string, stdout *capped, f execFiles) error {
	if stdout.over {
		return fmt.Errorf("%s printed more than %d MiB on stdout", prog, maxStdout>>20)
	}
	obj, err := st.resultsObject(cx, prog, stdout.buf.Bytes(), f.results)
	if err != nil {
		return err
	}
	if err := putOutputSizes(cx, cb, prog, f.outputs); err != nil {
		return err
	}
	if obj == nil {
		if len(st.keys) > 0 {
			return fmt.Errorf("%s printed nothing, but produces declares %s", prog, strings.Join(st.keys, ", "))
		}
		return nil
	}
	return st.put(cb, obj, prog)
}

// resultsObject is the JSON object of the program's results, as results
// says (nil: none); the stdout lines that are not results go to the log.
func (st *execStage) resultsObject(cx *Context, prog string, stdout []byte, file string) (map[string]any, error) {
	switch st.results {
	case resultsStdout:
		return stdoutObject(cx, prog, stdout)
	case resultsFile:
		logStdout(cx, prog, stdout)
		return fileObject(prog, file)
	}
	logStdout(cx, prog, stdout)
	return nil, nil
}

// stdoutObject is the JSON object prog printed: all of stdout, or else
// its last non-empty line, the lines before going to the log. nil when
// stdout is empty.
func stdoutObject(cx *Context, prog string, stdout []byte) (map[string]any, error) {
	out := bytes.TrimSpace(stdout)
	if len(out) == 0 {
		return nil, nil
	}
	if obj, ok := jsonObject(out); ok {
		return obj, nil
	}
	before, last := out[:0], out
	if i := bytes.LastIndexByte(out, '\n'); i >= 0 {
		before, last = out[:i], out[i+1:]
	}
	obj, ok := jsonObject(last)
	if !ok {
		return nil, fmt.Errorf("%s: stdout is not one JSON object, nor is its last line: %q (for a program that prints no results, set results: none or results_file)", prog, clip(string(out), 200))
	}
	logStdout(cx, prog, before)
	return obj, nil
}

// fileObject reads the results file prog wrote.
func fileObject(prog, file string) (map[string]any, error) {
	b, err := readCapped(file, maxStdout)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s did not write its results file %s", prog, file)
	}
	if err != nil {
		return nil, fmt.Errorf("results file: %w", err)
	}
	obj, ok := jsonObject(b)
	if !ok {
		return nil, fmt.Errorf("results file %s is not one JSON object: %q", file, clip(string(bytes.TrimSpace(b)), 200))
	}
	return obj, nil
}

// readCapped reads the file at path, which may hold at most max bytes.
func readCapped(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(b)) > max {
		err = fmt.Errorf("%s is larger than %d MiB", path, max>>20)
	}
	return b, err
}

// maxLoggedLines is how many lines of a program's stdout go to the log.
const maxLoggedLines = 200

// logStdout logs the non-empty lines of what prog printed (clipped, up to
// maxLoggedLines) with the context's visit, stage, slice and data ID.
func logStdout(cx *Context, prog string, stdout []byte) {
	n := 0
	for line := range strings.Lines(string(stdout)) {
		line = strings.TrimRight(line, "\r\n")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if n++; n <= maxLoggedLines {
			cx.Logger().Info("exec stdout", "program", prog, "line", clip(line, 1000))
		}
	}
	if n > maxLoggedLines {
		cx.Logger().Info("exec stdout: more lines not logged", "program", prog, "lines", n-maxLoggedLines)
	}
}

// putOutputSizes checks that every declared output exists, adds their
// sizes to the clipboard's outputSizesKey map and tells cx they were made.
func putOutputSizes(cx *Context, cb *Clipboard, prog string, outputs []string) error {
	if len(outputs) == 0 {
		return nil
	}
	sizes := map[string]int64{}
	var missing []string
	for _, p := range outputs {
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, p)
		case err != nil:
			return fmt.Errorf("outputs: %w", err)
		case fi.IsDir():
			missing = append(missing, p+" (a directory)")
		default:
			sizes[p] = fi.Size()
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s did not write its declared outputs: %s", prog, strings.Join(missing, ", "))
	}
	cx.Logger().Info("exec outputs", "program", prog, "sizes", sizes)
	cx.madeOutputs(sizes)
	all := map[string]any{}
	if earlier, ok := cb.Get(outputSizesKey); ok {
		if m, ok := earlier.(map[string]any); ok {
			maps.Copy(all, m)
		}
	}
	for p, n := range sizes {
		all[p] = int(n)
	}
	cb.Put(outputSizesKey, all)
	return nil
}

// prepare builds the command for cb, started directly (or through the
// shell that ignores the stop signals) in its own process group, and
// makes the directories it writes to. prog is the program as the command
// names it.
func (st *execStage) prepare(ctx context.Context, cx *Context, cb *Clipboard) (cmd *exec.Cmd, prog string, err error) {
	argv, err := st.argv(cx, cb)
	if err != nil {
		return nil, "", err
	}
	dir, err := st.workDir(cx, cb)
	if err != nil {
		return nil, "", err
	}
	if err := makeLocations(cx, cb, st.writes); err != nil {
		return nil, "", err
	}
	env, err := st.environ(cx, cb, "DPSBATCH_VISIT="+cx.Visit(), "DPSBATCH_DATAID="+cx.DataID().String())
	if err != nil {
		return nil, "", err
	}
	cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
	if st.ignoreSignals {
		ignoreStopSignals(cmd)
	}
	cmd.Dir, cmd.Env = dir, env
	inOwnGroup(cmd)
	cmd.WaitDelay = 5 * time.Second
	return cmd, argv[0], nil
}

// programError describes how prog failed to run or ended; one ended by a
// stop signal matches ErrKilled.
func programError(prog string, err error, stderr *tail) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return fmt.Errorf("%w%s", err, stderr.describe())
	}
	msg := prog + " " + exitText(ee.ProcessState) + stderr.describe()
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && killedBy(ws) {
		return &killedError{msg}
	}
	return errors.New(msg)
}

// jsonObject decodes b as exactly one JSON object, numbers as json.Number.
func jsonObject(b []byte) (map[string]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil || dec.More() {
		return nil, false
	}
	return obj, true
}

// stopShell starts a program with the stop signals ignored (see
// ignoreStopSignals): "$0" is the program's path, "$@" its arguments.
const (
	stopShell       = "/bin/sh"
	stopShellScript = `trap '' INT TERM USR1; exec "$0" "$@"`
)

// ignoreStopSignals makes cmd start its program with SIGINT, SIGTERM and
// SIGUSR1 ignored, the signals on which a run stops at the next visit
// boundary: the exec stage's ignore_stop_signals setting, for a program
// that must not be interrupted. Slurm delivers a step's signals (scancel
// --signal, srun's forwarding, the SIGTERM of a time limit) to every
// process of the step, the exec stage's programs included, whatever their
// process group. By default a program dies of them and its visit is
// interrupted, to be run again (stopsignals.go); with the setting it
// finishes. Go cannot start a child with a signal ignored while this
// process handles it, so the program is started through /bin/sh, which
// ignores them and execs it (the ignored disposition survives exec; a
// program may still set its own handlers), at the cost of a shell's start
// per program. The timeout and an interrupt (a second signal) kill it
// with SIGKILL. Without /bin/sh, or when the program was not found
// (cmd.Err, reported by Run), cmd is left as it is.
func ignoreStopSignals(cmd *exec.Cmd) {
	if cmd.Err != nil {
		return
	}
	if _, err := os.Stat(stopShell); err != nil {
		return
	}
	cmd.Args = append([]string{stopShell, "-c", stopShellScript, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = stopShell
}

func exitText(ps *os.ProcessState) string {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "was killed by signal " + ws.Signal().String()
	}
	return fmt.Sprintf("exited with status %d", ps.ExitCode())
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// capped keeps up to max bytes and notes whether more came.
type capped struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room < len(p) {
		c.over = true
		if room > 0 {
			c.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return c.buf.Write(p)
}

// tail keeps the last max bytes written.
type tail struct {
	b   []byte
	max int
	n   int64
}

func (t *tail) Write(p []byte) (int, error) {
	t.n += int64(len(p))
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string { return string(t.b) }

// describe formats the tail for an error message.
func (t *tail) describe() string {
	s := strings.TrimSpace(string(t.b))
	if s == "" {
		return " (stderr was empty)"
	}
	more := ""
	if t.n > int64(len(t.b)) {
		more = "..."
	}
	return "; stderr ends:\n" + more + s
}
