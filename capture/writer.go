package capture

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/version"
)

// Dir is the captures folder's name in a run directory.
const Dir = "captures"

// limitFile marks a run whose captures reached Limits.PerRun; it holds
// the message, which the process that made it logs.
const limitFile = "LIMIT-REACHED"

// Limits bound what captures keep. The zero value of a field means its
// default.
type Limits struct {
	// CopyBelow: input files smaller than this many bytes are kept in
	// the capture (default 16 MiB).
	CopyBelow int64
	// PerRun: the run's captures together take at most this many bytes
	// (default 1 GiB).
	PerRun int64
}

// The default limits.
const (
	DefaultCopyBelow = 16 << 20
	DefaultPerRun    = 1 << 30
)

// OrDefaults fills in the defaults.
func (l Limits) OrDefaults() Limits {
	if l.CopyBelow <= 0 {
		l.CopyBelow = DefaultCopyBelow
	}
	if l.PerRun <= 0 {
		l.PerRun = DefaultPerRun
	}
	return l
}

// ErrLimit: the run's captures have reached Limits.PerRun.
var ErrLimit = errors.New("capture: the run's captures reached their size limit")

// Writer writes a run's captures into RUN-DIR/captures, within the run's
// size budget. Every rank of a run has its own; they share the budget
// through the folder (each counts what it finds there, again every
// recount writes), so a run may pass it by what its ranks write at once.
// It is safe for concurrent use.
type Writer struct {
	runDir string
	limits Limits
	log    *slog.Logger

	mu      sync.Mutex
	used    int64 // bytes in the folder, as last counted plus written since
	counted bool
	since   int // writes since the last count
}

// recount is how many writes go by between counts of the folder.
const recount = 32

// NewWriter returns the Writer of the run in runDir (absolute). log
// hears the one message that the budget is spent.
func NewWriter(runDir string, l Limits, log *slog.Logger) *Writer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Writer{runDir: runDir, limits: l.OrDefaults(), log: log}
}

// CopyBelow is the size below which input files are kept.
func (w *Writer) CopyBelow() int64 { return w.limits.CopyBelow }

// Write fills in c's format, version, time and host, and writes it as a
// new file of the captures folder. It returns the file's path relative
// to the run directory, or ErrLimit when the budget does not allow it.
func (w *Writer) Write(c *Capture) (string, error) {
	c.Format, c.Version = FormatVersion, version.Get().String()
	if c.At.IsZero() {
		c.At = time.Now().UTC()
	}
	if c.Host == "" {
		c.Host, _ = os.Hostname()
	}
	data, err := json.MarshalIndent(c, "", " ")
	if err != nil {
		return "", fmt.Errorf("capture: %w", err)
	}
	dir := filepath.Join(w.runDir, Dir, "visit-"+safe(c.Visit))
	if err := w.reserve(int64(len(data))); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("capture: %w", err)
	}
	path, err := writeNew(dir, fileName(c), data)
	if err != nil {
		return "", fmt.Errorf("capture: %w", err)
	}
	return filepath.Rel(w.runDir, path)
}

// reserve takes n bytes of the budget, or says it is spent (and, in the
// one process that finds so first, logs it).
func (w *Writer) reserve(n int64) error {
	folder := filepath.Join(w.runDir, Dir)
	if _, err := os.Stat(filepath.Join(folder, limitFile)); err == nil {
		return ErrLimit
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.counted || w.since >= recount {
		w.used, w.counted, w.since = folderSize(folder), true, 0
	}
	if w.used+n > w.limits.PerRun {
		w.markLimit(folder)
		return ErrLimit
	}
	w.used += n
	w.since++
	return nil
}

// markLimit writes the limit's mark once for the run, and logs it if
// this process wrote it.
func (w *Writer) markLimit(folder string) {
	msg := fmt.Sprintf("freeze-dry: the run's captures reached their limit of %d bytes (freeze_dry_limits.per_run in the policy): no more captures are written in this run", w.limits.PerRun)
	if err := os.MkdirAll(folder, 0o755); err != nil {
		return
	}
	f, err := os.OpenFile(filepath.Join(folder, limitFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return // another rank got there first, and said it
	}
	defer f.Close()
	fmt.Fprintln(f, msg)
	w.log.Warn(msg)
}

// LimitReached returns the limit's message if the run in runDir reached
// it, else "".
func LimitReached(runDir string) string {
	b, err := os.ReadFile(filepath.Join(runDir, Dir, limitFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func folderSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// fileName is the capture's name in its visit's folder: stage, where, why.
func fileName(c *Capture) string {
	where := "pipeline"
	if c.Side == SideSlice {
		where = fmt.Sprintf("slice%d", c.Slice)
		if id := dataIDText(c.DataID); id != "" {
			where += "-" + safe(id)
		}
	}
	return fmt.Sprintf("%s.%s.%s", safe(c.Stage), where, c.Why)
}

// writeNew writes data as dir/NAME.json, or NAME.2.json and up when that
// exists (a visit's later attempt): never over another capture.
func writeNew(dir, name string, data []byte) (string, error) {
	tmp, err := os.CreateTemp(dir, ".new-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	for i := 1; ; i++ {
		path := filepath.Join(dir, name+".json")
		if i > 1 {
			path = filepath.Join(dir, name+"."+strconv.Itoa(i)+".json")
		}
		err := os.Link(tmp.Name(), path)
		if err == nil {
			return path, nil
		}
		if !errors.Is(err, fs.ErrExist) || i > 1000 {
			return "", err
		}
	}
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._,=+-]+`)

// safe makes s one harmless path element.
func safe(s string) string {
	s = unsafeChars.ReplaceAllString(s, "_")
	if s == "" || s == "." || s == ".." {
		return "_"
	}
	return s
}

func dataIDText(id map[string]any) string {
	keys := make([]string, 0, len(id))
	for k := range id {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, id[k])
	}
	return strings.Join(parts, ",")
}
