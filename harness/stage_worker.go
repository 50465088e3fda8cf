package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dpsbatch/dpsbatch/mapper"
)

// The worker stage runs one long-lived program per Slice, started when the
// stage initialises (before the first visit) and kept for the run, and
// asks it for each data ID in turn. Its protocol, which a worker in any
// language follows (python/dpsworker.py is one in Python):
//
//   - The program is started with the stage's command, dir and env (its
//     templates may use the run's names and the locations, not a visit's
//     or a clipboard's values) and DPSBATCH_RUN, DPSBATCH_RUN_DIR,
//     DPSBATCH_STAGE and DPSBATCH_SLICE in its environment.
//   - For each data ID the Slice writes one line on the program's stdin, a
//     JSON object: {"run", "stage", "slice", "visit": the visit ID,
//     "dataId": {key: value}, "properties": the trigger properties,
//     "locations": {name: absolute path} of the policy's locations for
//     this data ID (their directories are not made: the worker makes
//     those it writes into), "inputs": {key: value} for the clipboard
//     keys the stage's inputs
//     setting lists, "params": the stage's params setting ({} when
//     unset)}. Byte strings (the raw format) arrive base64-encoded.
//   - The program answers with one line on stdout, a JSON object:
//     {"outputs": {key: value}}, whose items go on the clipboard (every
//     key of produces must be there; those in shared are shared), or
//     {"error": "message"}, which fails that data ID and keeps the
//     program (as does an object with neither). Only then does the next
//     request come: one request at a time, in order. A stdout line that
//     is not a JSON object (a banner, a stray print) is logged and
//     skipped; the answer is the first line that is one.
//   - Its stderr goes to the log line by line (message "worker stderr"):
//     what it wrote before an answer carries that request's visit and
//     data ID; lines between requests carry the stage and slice.
//   - A program that exits, or answers a line over 16 MiB, or takes
//     longer than timeout for one data ID (for the first, the time since
//     it started counts too; it is then killed, with its process group),
//     fails only that data ID and is started again for the next one. After workerGiveUp such losses in a row, it is logged
//     once and not started again: every later data ID of the run on that
//     Slice fails at once with that one message. One ended by a job's stop
//     signal interrupts the visit, as an exec stage's program does
//     (stopsignals.go).
//   - At the end of the run its stdin is closed: it should exit. After
//     grace it is killed, with its process group.
//
// Process calls are served one at a time (a mutex), so the stage is safe
// to call from several visits at once.
type workerStage struct {
	program
	produced
	inputs []string
	params json.RawMessage
	grace  time.Duration

	mu      sync.Mutex
	start   workerStart // the command as expanded on this Slice, set by Initialize
	running *workerProc // nil before Initialize and after a loss
	losses  int         // losses in a row
	broken  error       // set after workerGiveUp losses in a row
}

// workerGiveUp is how many losses in a row (exit, timeout) stop a
// worker from being started again.
const workerGiveUp = 3

// workerStart is a worker's command line, directory and environment.
type workerStart struct {
	argv []string
	dir  string
	env  []string
	log  *slog.Logger // stage and slice: stderr outside a request
}

func newWorker(s Settings) (Stage, error) {
	prog, err := parseProgram(s)
	if err != nil {
		return nil, err
	}
	if err := startNamesOnly(prog); err != nil {
		return nil, err
	}
	prod, err := parseProduced(s)
	if err != nil {
		return nil, err
	}
	params, err := workerParams(s.Raw("params"))
	if err != nil {
		return nil, err
	}
	if s.Duration("grace") < 0 {
		return nil, errors.New("grace may not be negative")
	}
	return &workerStage{program: prog, produced: prod, inputs: s.Strings("inputs"), params: params, grace: s.Duration("grace")}, nil
}

// startNamesOnly rejects templates a worker cannot expand when it starts,
// before any visit: a visit's or a clipboard's values.
func startNamesOnly(p program) error {
	for _, t := range p.templates() {
		for _, n := range t.Names() {
			if n == "visit" || !isLocation(n) && !contains(builtinNames, n) {
				return fmt.Errorf("command: %q uses {%s}: a worker starts once, before any visit, so its command, dir and env may use only the run's names (run, slice, stage, pipeline, pipelinedir) and the locations", t, n)
			}
		}
	}
	return nil
}

// workerParams checks the params setting, a mapping sent to the worker
// with every request, and encodes it once.
func workerParams(v any) (json.RawMessage, error) {
	if v == nil {
		return json.RawMessage("{}"), nil
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, fmt.Errorf("params: expected a mapping of names to values, got %T", v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("params: %w", err)
	}
	return b, nil
}

func (st *workerStage) Keys() (needs, produces []string) { return st.inputs, st.keys }

// Initialize starts the worker on a Slice (the Pipeline runs none).
func (st *workerStage) Initialize(cx *Context) error {
	if cx.Slice() == 0 {
		return nil
	}
	argv, err := st.argv(cx, nil)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	dir, err := st.workDir(cx, nil)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	env, err := st.environ(cx, nil)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.start = workerStart{argv: argv, dir: dir, env: env, log: cx.Logger()}
	st.running, err = startWorker(st.start)
	return err
}

// Shutdown stops the worker: stdin closed, then after grace killed.
func (st *workerStage) Shutdown(cx *Context) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.running != nil {
		st.running.stop(st.grace)
		st.running = nil
	}
	return nil
}

// Process asks the worker about one data ID, starting it again if it was
// lost.
func (st *workerStage) Process(cx *Context, cb *Clipboard) error {
	req, err := st.request(cx, cb)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.broken != nil {
		return st.broken
	}
	if st.start.argv == nil {
		return errors.New("worker: not started: the stage was not initialised on this slice")
	}
	if st.running == nil {
		if st.running, err = startWorker(st.start); err != nil {
			return st.lose(cx, err)
		}
		cx.Logger().Info("worker started again", "program", st.start.argv[0], "lossesInARow", st.losses)
	}
	answer, err := st.running.ask(cx.Context(), req, st.timeout, cx.Logger())
	if err != nil {
		return st.lose(cx, err)
	}
	st.losses = 0
	return st.answer(cb, answer)
}

// request is the JSON line that asks about cb.
func (st *workerStage) request(cx *Context, cb *Clipboard) ([]byte, error) {
	props := map[string]any{}
	for _, k := range cx.run.trigger {
		if v, ok := cb.Get(k); ok {
			props[k] = v
		}
	}
	inputs := make(map[string]any, len(st.inputs))
	for _, k := range st.inputs {
		v, ok := cb.Get(k)
		if !ok {
			return nil, fmt.Errorf("input %q: the clipboard has no such key", k)
		}
		inputs[k] = v
	}
	b, err := json.Marshal(struct {
		Run        string            `json:"run"`
		Stage      string            `json:"stage"`
		Slice      int               `json:"slice"`
		Visit      string            `json:"visit"`
		DataID     mapper.DataID     `json:"dataId"`
		Properties map[string]any    `json:"properties"`
		Locations  map[string]string `json:"locations"`
		Inputs     map[string]any    `json:"inputs"`
		Params     json.RawMessage   `json:"params"`
	}{cx.RunID(), cx.Stage(), cx.Slice(), cx.Visit(), cx.DataID(), props, locations(cx, cb), inputs, st.params})
	if err != nil {
		return nil, fmt.Errorf("the request does not encode as JSON: %w", err)
	}
	return append(b, '\n'), nil
}

// locations are the policy's locations expanded for cb, as absolute
// paths; one that does not expand for it is left out.
func locations(cx *Context, cb *Clipboard) map[string]string {
	out := map[string]string{}
	for _, name := range locationNames {
		if _, ok := cx.run.locs.tmpls[name]; !ok {
			continue
		}
		if p, err := cx.Path(mustPattern("{"+name+"}"), cb); err == nil {
			out[name] = p
		}
	}
	return out
}

// lose kills the worker after err, a loss, and gives it up after
// workerGiveUp losses in a row (not counting an interrupted run's).
func (st *workerStage) lose(cx *Context, err error) error {
	if st.running != nil {
		st.running.kill()
		st.running = nil
	}
	if cx.Context().Err() != nil {
		return fmt.Errorf("worker: %w", err)
	}
	if st.losses++; st.losses >= workerGiveUp {
		st.broken = fmt.Errorf("worker: %s was lost %d times in a row and is not started again in this run; the last time: %w",
			st.start.argv[0], st.losses, err)
		cx.Logger().Error("worker given up", "program", st.start.argv[0], "err", st.broken)
	}
	return fmt.Errorf("worker: %w", err)
}

// answer puts the worker's outputs on cb, or returns the error it sent.
func (st *workerStage) answer(cb *Clipboard, obj map[string]any) error {
	prog := st.start.argv[0]
	if e, ok := obj["error"]; ok && e != nil {
		return fmt.Errorf("worker: %s: %v", prog, e)
	}
	out, ok := obj["outputs"].(map[string]any)
	if !ok {
		b, _ := json.Marshal(obj)
		return fmt.Errorf(`worker: %s answered %s; want {"outputs": {...}} or {"error": "..."}`, prog, clip(string(b), 200))
	}
	if err := st.put(cb, out, prog); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return nil
}

// workerProc is one run of a worker program.
type workerProc struct {
	prog    string
	cmd     *exec.Cmd
	stdin   *os.File
	stdout  *os.File
	out     *bufio.Reader
	exited  chan struct{} // closed when the program ended (cmd.ProcessState is set)
	drained chan struct{} // closed when its stderr was read to the end

	errPipe *os.File     // the read end of its stderr, for settle
	read    atomic.Int64 // bytes read from its stderr
	mu      sync.Mutex
	logged  int64 // bytes of its stderr logged
	stderr  tail
	log     *slog.Logger // where stderr lines go
	base    *slog.Logger
}

// startWorker starts the program in its own process group with pipes
// for stdin, stdout and stderr.
func startWorker(ws workerStart) (*workerProc, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		closeAll(inR, inW)
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(inR, inW, outR, outW)
		return nil, err
	}
	cmd := exec.Command(ws.argv[0], ws.argv[1:]...)
	cmd.Dir, cmd.Env = ws.dir, ws.env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	closeAll(inR, outW, errW)
	if err != nil {
		closeAll(inW, outR, errR)
		return nil, fmt.Errorf("starting %s: %w", ws.argv[0], err)
	}
	p := &workerProc{prog: ws.argv[0], cmd: cmd, stdin: inW, stdout: outR, out: bufio.NewReaderSize(outR, 64<<10),
		exited: make(chan struct{}), drained: make(chan struct{}), stderr: tail{max: stderrTail}, log: ws.log, base: ws.log}
	p.errPipe = errR
	go p.readStderr(errR)
	go p.wait()
	return p, nil
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// wait reaps the program, then kills what is left of its process group
// (children holding its pipes open).
func (p *workerProc) wait() {
	p.cmd.Wait()
	killGroup(p.cmd.Process)
	close(p.exited)
}

// readStderr logs the program's stderr line by line and keeps its tail.
func (p *workerProc) readStderr(r *os.File) {
	defer close(p.drained)
	defer r.Close()
	buf := make([]byte, 64<<10)
	var partial []byte
	for {
		n, err := r.Read(buf)
		p.read.Add(int64(n))
		partial = p.logLines(append(partial, buf[:n]...), n, err != nil)
		if err != nil {
			return
		}
	}
}

// logLines logs the whole lines of b (all of it at the end, or when it
// is long) and returns what is left; n bytes of it were just read.
func (p *workerProc) logLines(b []byte, n int, end bool) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stderr.Write(b[len(b)-n:])
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 && (end || len(b) >= 64<<10) && len(b) > 0 {
			i = len(b) - 1
		}
		if i < 0 {
			break
		}
		p.log.Info("worker stderr", "program", p.prog, "line", strings.TrimRight(string(b[:i+1]), "\r\n"))
		b = b[i+1:]
	}
	p.logged += int64(n)
	return b
}

// settle waits (briefly) until the stderr the program wrote before its
// answer is logged, so that its lines carry the request's data ID: until
// the pipe is empty and every byte read from it was logged.
func (p *workerProc) settle() {
	for deadline := time.Now().Add(100 * time.Millisecond); time.Now().Before(deadline); time.Sleep(100 * time.Microsecond) {
		if pipeBuffered(p.errPipe) > 0 {
			continue
		}
		p.mu.Lock()
		done := p.logged == p.read.Load()
		p.mu.Unlock()
		if done {
			return
		}
	}
}

// syscallConner is an *os.File, for pipeBuffered.
type syscallConner interface {
	SyscallConn() (syscall.RawConn, error)
}

// longAgo is a deadline in the past: it ends a pending read or write.
var longAgo = time.Unix(1, 0)

// ask writes req and reads lines until the answer, a JSON object, logging
// the lines before it. Its error is a loss: the program ended, timed out,
// printed too long a line, or ctx ended.
func (p *workerProc) ask(ctx context.Context, req []byte, timeout time.Duration, log *slog.Logger) (map[string]any, error) {
	p.setLog(log)
	defer p.setLog(p.base)
	deadline := time.Now().Add(timeout)
	p.stdin.SetWriteDeadline(deadline)
	p.stdout.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() {
		p.stdin.SetWriteDeadline(longAgo)
		p.stdout.SetReadDeadline(longAgo)
	})
	defer stop()
	if _, err := p.stdin.Write(req); err != nil {
		return nil, p.lost(ctx, err, timeout)
	}
	for {
		line, err := readLine(p.out, maxStdout)
		if err != nil {
			return nil, p.lost(ctx, err, timeout)
		}
		if obj, ok := jsonObject(line); ok {
			p.settle()
			return obj, nil
		}
		if s := strings.TrimSpace(string(line)); s != "" {
			log.Info("worker stdout (not an answer)", "program", p.prog, "line", clip(s, 1000))
		}
	}
}

func (p *workerProc) setLog(l *slog.Logger) {
	p.mu.Lock()
	p.log = l
	p.mu.Unlock()
}

var errLineTooLong = fmt.Errorf("printed a line over %d MiB on stdout", maxStdout>>20)

// readLine reads one line of at most max bytes.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(frag) > max {
			return nil, errLineTooLong
		}
		line = append(line, frag...)
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}

// lost describes why ask failed with err.
func (p *workerProc) lost(ctx context.Context, err error, timeout time.Duration) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", p.prog, ctx.Err())
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%s timed out after %s%s", p.prog, timeout, p.stderrTail())
	case errors.Is(err, errLineTooLong):
		return fmt.Errorf("%s %w", p.prog, err)
	}
	// It ended (end of stdout, or a broken stdin): say how.
	select {
	case <-p.exited:
	case <-time.After(stopGrace):
		return fmt.Errorf("%s closed its stdout (%v)%s", p.prog, err, p.stderrTail())
	}
	select {
	case <-p.drained:
	case <-time.After(time.Second):
	}
	ps := p.cmd.ProcessState
	msg := p.prog + " " + exitText(ps) + p.stderrTail()
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && killedBy(ws) {
		return &killedError{msg}
	}
	return errors.New(msg)
}

func (p *workerProc) stderrTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.describe()
}

// kill kills the program and its process group at once, unless it
// ended (wait killed what was left of the group then).
func (p *workerProc) kill() {
	select {
	case <-p.exited:
	default:
		killGroup(p.cmd.Process)
	}
	p.close()
}

// stop closes the program's stdin, waits up to grace for it to end, and
// kills it then.
func (p *workerProc) stop(grace time.Duration) {
	p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(grace):
		p.base.Warn("worker killed: it did not end within its grace after its stdin closed", "program", p.prog, "grace", grace)
		killGroup(p.cmd.Process)
	}
	p.close()
}

// close waits for the program's end and closes the pipes.
func (p *workerProc) close() {
	<-p.exited
	closeAll(p.stdin, p.stdout)
}
