package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/input/inputtest"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/site"
	"github.com/dpsbatch/dpsbatch/state"
)

// The unit tests of the use cases run against fakeBackend, a
// scheduler.Backend that records its calls and answers from scripted
// jobs; the state files, site files, policies and visit lists are real.
// The same use cases against the real cluster are cmd/dpsbatch's
// integration tests.

// fakeBackend is a scripted Slurm. Jobs answers from queue, History from
// history (or ErrNoAccounting when noAccounting); a job in neither is
// unknown. Submit gives IDs 1001, 1002, ... and queues each job PENDING.
type fakeBackend struct {
	mu           sync.Mutex
	next         int
	submits      []scheduler.Submission
	ids          []string // the IDs Submit gave, in order
	queue        map[string]scheduler.Job
	history      map[string]scheduler.Job
	noAccounting bool
	// submitErr, when set, is returned by the submission of that number
	// (1 for the first) instead of queueing it.
	submitErr   map[int]error
	jobsCalls   int
	histCalls   int
	askedJobs   [][]string // the IDs of each Jobs call
	askedHist   [][]string
	cancels     []string
	onJobs      func(call int, f *fakeBackend) // called (locked) before Jobs answers
	partitions  []site.Live
	partitionsN int
	// starts answers Starts (sacct --duplicates): each start of a job.
	starts     map[string][]scheduler.Job
	startCalls int
	// afterSubmit, when set, is called (unlocked) once a job is queued,
	// before Submit returns: as sbatch having accepted it.
	afterSubmit func(id string)
	named       []string // the names Named was asked about
}

func newFake() *fakeBackend {
	return &fakeBackend{next: 1001, queue: map[string]scheduler.Job{}, history: map[string]scheduler.Job{}}
}

func (f *fakeBackend) Submit(ctx context.Context, s scheduler.Submission) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submits = append(f.submits, s)
	if err := f.submitErr[len(f.submits)]; err != nil {
		return "", err
	}
	id := strconv.Itoa(f.next)
	f.next++
	f.ids = append(f.ids, id)
	f.queue[id] = scheduler.Job{ID: id, Name: s.Name, State: "PENDING", Source: "squeue"}
	if after := f.afterSubmit; after != nil {
		f.mu.Unlock()
		defer f.mu.Lock()
		after(id)
	}
	return id, nil
}

func (f *fakeBackend) Named(ctx context.Context, name string, since time.Time) ([]scheduler.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.named = append(f.named, name)
	var out []scheduler.Job
	for _, m := range []map[string]scheduler.Job{f.queue, f.history} {
		for _, j := range m {
			if j.Name == name && !slices.ContainsFunc(out, func(o scheduler.Job) bool { return o.ID == j.ID }) {
				out = append(out, j)
			}
		}
	}
	return out, nil
}

func (f *fakeBackend) Jobs(ctx context.Context, ids []string) (map[string]scheduler.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobsCalls++
	f.askedJobs = append(f.askedJobs, slices.Clone(ids))
	if f.onJobs != nil {
		f.onJobs(f.jobsCalls, f)
	}
	out := map[string]scheduler.Job{}
	for _, id := range ids {
		if j, ok := f.queue[id]; ok {
			out[id] = j
		}
	}
	return out, nil
}

func (f *fakeBackend) History(ctx context.Context, ids []string) (map[string]scheduler.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.histCalls++
	f.askedHist = append(f.askedHist, slices.Clone(ids))
	if f.noAccounting {
		return nil, scheduler.ErrNoAccounting
	}
	out := map[string]scheduler.Job{}
	for _, id := range ids {
		if j, ok := f.history[id]; ok {
			out[id] = j
		}
	}
	return out, nil
}

func (f *fakeBackend) Starts(ctx context.Context, ids []string) (map[string][]scheduler.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.startCalls++
	if f.noAccounting {
		return nil, scheduler.ErrNoAccounting
	}
	out := map[string][]scheduler.Job{}
	for _, id := range ids {
		if js, ok := f.starts[id]; ok {
			out[id] = js
		}
	}
	return out, nil
}

func (f *fakeBackend) Cancel(ctx context.Context, id, signal string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancels = append(f.cancels, id)
	return nil
}

func (f *fakeBackend) Partitions(ctx context.Context) ([]site.Live, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.partitionsN++
	return f.partitions, nil
}

// set puts job id in the queue (squeue) in state st.
func (f *fakeBackend) set(id, st string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queue[id] = scheduler.Job{ID: id, Name: f.queue[id].Name, State: st, Source: "squeue"}
}

// forget drops job id from the queue and, unless st is "", keeps it in
// accounting (sacct) in state st.
func (f *fakeBackend) forget(id, st string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := f.queue[id].Name
	delete(f.queue, id)
	if st != "" {
		f.history[id] = scheduler.Job{ID: id, Name: name, State: st, Source: "sacct", ExitCode: 1, Reason: "None",
			Ended: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	}
}

func (f *fakeBackend) calls() (jobs, hist, submits int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.jobsCalls, f.histCalls, len(f.submits)
}

var (
	_ scheduler.Backend      = (*fakeBackend)(nil)
	_ scheduler.StartHistory = (*fakeBackend)(nil)
)

// env is one test's site, runs root, pipeline and visit list.
type env struct {
	t      *testing.T
	root   string // runs root
	dir    string // where the pipeline and visit list live
	site   *site.Site
	fake   *fakeBackend
	policy string
	visits string
	bin    string
}

// siteYAML is the test site: debug (4 nodes of 4 CPUs, one hour at
// most, the default) and long (2 nodes of 4 CPUs, no time limit).
const siteYAML = `runs_root: %s
partitions:
  - name: debug
    default: true
    cpus_per_node: 4
    memory: 2000M
    nodes: 4
    max_time: "1:00:00"
  - name: long
    cpus_per_node: 4
    nodes: 2
    max_time: infinite
launcher: {kind: srun, flags: [--mpi=none], comm: tcp}
time_warning: 5m
`

func newEnv(t *testing.T, visits int) *env {
	t.Helper()
	base := t.TempDir()
	e := &env{t: t, root: filepath.Join(base, "runs"), dir: filepath.Join(base, "pipe"), fake: newFake()}
	s, err := site.Parse(filepath.Join(base, "site.yaml"), fmt.Appendf(nil, siteYAML, e.root))
	if err != nil {
		t.Fatalf("site: %v", err)
	}
	e.site = s
	e.policy = e.write("pipeline.yaml", inputtest.TinyPolicy)
	e.visits = e.write("visits.csv", visitCSV(visits))
	e.bin = e.write("dpsbatch", "#!/bin/sh\nexit 0\n")
	if err := os.Chmod(e.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return e
}

// write writes a file of the pipeline folder and returns its path.
func (e *env) write(name, text string) string {
	e.t.Helper()
	path := filepath.Join(e.dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// visitCSV is a visit list of v001, v002, ...
func visitCSV(n int) string {
	var b strings.Builder
	b.WriteString("visitId\n")
	for i := range n {
		fmt.Fprintf(&b, "v%03d\n", i+1)
	}
	return b.String()
}

func visitIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("v%03d", i+1)
	}
	return ids
}

// opts is a submission of the env's pipeline and visits as run name.
func (e *env) opts(name string) SubmitOptions {
	return SubmitOptions{Site: e.site, Backend: e.fake, Policy: e.policy, Visits: e.visits, Name: name,
		Binary: e.bin, Now: runtest.FixedNow}
}

// submit submits a run through the fake and returns its directory.
func (e *env) submit(name string) string {
	e.t.Helper()
	sub, err := Submit(context.Background(), e.opts(name))
	if err != nil {
		e.t.Fatalf("Submit %s: %v", name, err)
	}
	return sub.Dir
}

// rootEntries lists the runs root, hidden entries included; a runs root
// that does not exist is empty.
func (e *env) rootEntries() []string {
	e.t.Helper()
	ents, err := os.ReadDir(e.root)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, x := range ents {
		names = append(names, x.Name())
	}
	return names
}

// withState opens a run's state file for writing, runs f, closes it.
func withState(t *testing.T, dir string, f func(st *state.Store)) {
	t.Helper()
	st, err := state.Open(rundir.Layout{Dir: dir}.State())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f(st)
}

// counts reads a run's visit counts.
func counts(t *testing.T, dir string) map[state.VisitState]int {
	t.Helper()
	st, err := state.OpenReadOnly(rundir.Layout{Dir: dir}.State())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := st.Counts()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readAll is a file's bytes.
func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
