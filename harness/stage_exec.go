package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// defaultExecTimeout is how long an exec stage's program may run per
// clipboard unless its settings say otherwise.
const defaultExecTimeout = 10 * time.Minute

const (
	maxStdout  = 16 << 20 // bytes of stdout kept for the JSON object
	stderrTail = 4 << 10  // bytes of stderr kept for error messages
)

type execStage struct {
	command  []Pattern
	timeout  time.Duration
	dir      *Pattern
	env      []propSpec
	produces []string
	shared   map[string]bool
}

func newExec(s Settings) (Stage, error) {
	st := &execStage{timeout: s.Duration("timeout"), produces: s.Strings("produces"), shared: map[string]bool{}}
	args := s.Strings("command")
	if len(args) == 0 || args[0] == "" {
		return nil, errors.New("command: name the program to run (and its arguments), such as [python3, measure.py, \"{input}\"]")
	}
	for i, a := range args {
		t, err := parsePattern(a)
		if err != nil {
			return nil, fmt.Errorf("command[%d]: %w", i, err)
		}
		st.command = append(st.command, t)
	}
	if st.timeout <= 0 {
		return nil, errors.New("timeout must be positive")
	}
	if d := s.String("dir"); d != "" {
		t, err := parsePattern(d)
		if err != nil {
			return nil, fmt.Errorf("dir: %w", err)
		}
		st.dir = &t
	}
	for _, p := range s.Pairs("env") {
		t, err := parsePattern(p.Value)
		if err != nil {
			return nil, fmt.Errorf("env.%s: %w", p.Key, err)
		}
		st.env = append(st.env, propSpec{p.Key, t})
	}
	for _, k := range s.Strings("shared") {
		if !contains(st.produces, k) {
			return nil, fmt.Errorf("shared: %q is not one of the keys in produces", k)
		}
		st.shared[k] = true
	}
	return st, nil
}

func (st *execStage) templates() []Pattern {
	ts := append([]Pattern(nil), st.command...)
	if st.dir != nil {
		ts = append(ts, *st.dir)
	}
	for _, e := range st.env {
		ts = append(ts, e.tmpl)
	}
	return ts
}

func (st *execStage) Keys() (needs, produces []string) {
	return patternNeeds(st.templates()...), st.produces
}

// Process runs the program once for this clipboard.
func (st *execStage) Process(cx *Context, cb *Clipboard) error {
	argv := make([]string, len(st.command))
	for i, t := range st.command {
		a, err := cx.Expand(t, cb)
		if err != nil {
			return fmt.Errorf("exec: command[%d]: %w", i, err)
		}
		argv[i] = a
	}
	dir := cx.RunDir()
	if st.dir != nil {
		d, err := cx.Path(*st.dir, cb)
		if err != nil {
			return fmt.Errorf("exec: dir: %w", err)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("exec: dir: %w", err)
		}
		dir = d
	}
	env := append(os.Environ(),
		"DPSBATCH_RUN="+cx.RunID(),
		"DPSBATCH_RUN_DIR="+cx.RunDir(),
		"DPSBATCH_VISIT="+cx.Visit(),
		"DPSBATCH_STAGE="+cx.Stage(),
		"DPSBATCH_SLICE="+strconv.Itoa(cx.Slice()),
		"DPSBATCH_DATAID="+cx.DataID().String(),
	)
	for _, e := range st.env {
		v, err := cx.Expand(e.tmpl, cb)
		if err != nil {
			return fmt.Errorf("exec: env.%s: %w", e.name, err)
		}
		env = append(env, e.name+"="+v)
	}

	ctx, cancel := context.WithTimeout(cx.Context(), st.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	ignoreStopSignals(cmd)
	cmd.Dir, cmd.Env = dir, env
	// The program gets its own process group, so a timeout kills its
	// children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	stdout := &capped{max: maxStdout}
	stderr := &tail{max: stderrTail}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("exec: %s timed out after %s%s", argv[0], st.timeout, stderr.describe())
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			msg := fmt.Sprintf("exec: %s %s%s", argv[0], exitText(ee), stderr.describe())
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && killedBy(ws) {
				return &killedError{msg}
			}
			return errors.New(msg)
		}
		return fmt.Errorf("exec: %w%s", err, stderr.describe())
	}
	if stderr.n > 0 {
		cx.Logger().Debug("exec stderr", "program", argv[0], "tail", strings.TrimSpace(stderr.String()))
	}
	cx.Logger().Debug("exec done", "program", argv[0], "took", took)
	if stdout.over {
		return fmt.Errorf("exec: %s printed more than %d MiB on stdout", argv[0], maxStdout>>20)
	}
	out := bytes.TrimSpace(stdout.buf.Bytes())
	if len(out) == 0 {
		if len(st.produces) > 0 {
			return fmt.Errorf("exec: %s printed nothing, but produces declares %s", argv[0], strings.Join(st.produces, ", "))
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil || dec.More() {
		return fmt.Errorf("exec: %s: stdout is not one JSON object: %q", argv[0], clip(string(out), 200))
	}
	for _, k := range st.produces {
		if _, ok := obj[k]; !ok {
			return fmt.Errorf("exec: %s did not print %q, which produces declares", argv[0], k)
		}
	}
	for k, v := range obj {
		if st.shared[k] {
			cb.PutShared(k, plainJSON(v))
		} else {
			cb.Put(k, plainJSON(v))
		}
	}
	return nil
}

// stopShell starts a program with the stop signals ignored (see
// ignoreStopSignals): "$0" is the program's path, "$@" its arguments.
const (
	stopShell       = "/bin/sh"
	stopShellScript = `trap '' INT TERM USR1; exec "$0" "$@"`
)

// ignoreStopSignals makes cmd start its program with SIGINT, SIGTERM and
// SIGUSR1 ignored, the signals on which a run stops at the next visit
// boundary. Slurm delivers a step's signals (scancel --signal, srun's
// forwarding, the SIGTERM of a time limit) to every process of the step,
// the exec stage's programs included, whatever their process group: by
// default they would die of it and fail the visit in flight, which the
// stop is meant to let finish. Go cannot start a child with a signal
// ignored while this process handles it, so the program is started
// through /bin/sh, which ignores them and execs it (the ignored
// disposition survives exec; a program may still set its own handlers).
// The timeout and an interrupt (a second signal) kill it with SIGKILL,
// as before. Without /bin/sh, or when the program was not found (cmd.Err,
// reported by Run), cmd is left as it is.
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

func exitText(ee *exec.ExitError) string {
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "was killed by signal " + ws.Signal().String()
	}
	return fmt.Sprintf("exited with status %d", ee.ExitCode())
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
