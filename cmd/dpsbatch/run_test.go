package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/examples"
	"github.com/dpsbatch/dpsbatch/internal/testenv"
)

// The tests of `dpsbatch run` run the example pipeline (ccdproc) in one
// process (--comm local), and as separate processes on the local Slurm
// cluster (scripts/cluster.sh: four simulated nodes n1..n4 on this host):
// under srun over tcp here, under srun --mpi=pmix and mpirun in
// run_mpi_test.go (build tag mpi). Each distributed run's output files must
// be byte-identical to the local run's.

func slurmSkipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	testenv.SkipOrFail(t, format, args...)
}

func needCluster(t *testing.T, nodes int, tools ...string) {
	t.Helper()
	testenv.NeedCluster(t, nodes, tools...)
}

var (
	binMu    sync.Mutex
	binPaths = map[string]string{}
	// tempDirs are made outside t.TempDir, for every test of the process
	// to share; TestMain removes them.
	tempDirs []string
)

func TestMain(m *testing.M) {
	code := m.Run()
	binMu.Lock()
	for _, d := range tempDirs {
		os.RemoveAll(d)
	}
	binMu.Unlock()
	os.Exit(code)
}

// buildBinary builds dpsbatch once per test process and set of tags, into a
// directory every simulated node can read.
func buildBinary(t *testing.T, tags string) string {
	t.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	if p, ok := binPaths[tags]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "dpsbatch-bin-")
	if err != nil {
		t.Fatal(err)
	}
	tempDirs = append(tempDirs, dir)
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "dpsbatch")
	args := []string{"build", "-o", bin}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	binPaths[tags] = bin
	return bin
}

// exampleRunDir prepares a run directory the way whoever submits a run
// does: the example's pipeline.yaml, visit files and data copied in. The
// directory and its parents are world-readable, so every node's tasks see
// them.
func exampleRunDir(t *testing.T, name string) string {
	t.Helper()
	parent := t.TempDir()
	for d := parent; d != "/" && d != "."; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o005 != 0o005 {
			os.Chmod(d, fi.Mode().Perm()|0o755)
		}
	}
	dir := filepath.Join(parent, name)
	if _, _, err := examples.Extract(examples.Default, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// cleanEnv is this process's environment without the Slurm, PMI(x) and
// Open MPI variables of whatever started the tests, plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLURM_") && !strings.HasPrefix(kv, "PMIX_") && !strings.HasPrefix(kv, "PMI_") &&
			!strings.HasPrefix(kv, "OMPI_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// runCmd runs name with args, bounded by timeout, and returns stdout,
// stderr and the exit code (-1 when it did not exit by itself).
func runCmd(t *testing.T, timeout time.Duration, env []string, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t.Logf("$ %s %s", name, strings.Join(args, " "))
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if ctx.Err() != nil {
		t.Fatalf("%s did not end within %v\nstdout:\n%s\nstderr:\n%s", name, timeout, &stdout, &stderr)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s: %v", name, err)
	}
	return stdout.String(), stderr.String(), code
}

var rankStarted = regexp.MustCompile(`msg="rank started".* rank=(\d+) size=(\d+) node=(\S+)`)

// rankNodes reads the "rank started" log lines: node by rank.
func rankNodes(t *testing.T, stderr string, size int) map[int]string {
	t.Helper()
	nodes := map[int]string{}
	for _, m := range rankStarted.FindAllStringSubmatch(stderr, -1) {
		var r, s int
		fmt.Sscan(m[1], &r)
		fmt.Sscan(m[2], &s)
		if s != size {
			t.Errorf("rank %d reports size %s, want %d", r, m[2], size)
		}
		nodes[r] = m[3]
	}
	if len(nodes) != size {
		t.Errorf("%d ranks said they started, want %d:\n%s", len(nodes), size, stderr)
	}
	return nodes
}

func distinct(nodes map[int]string) []string {
	var out []string
	for _, n := range nodes {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// localReference runs the example with every rank in this process
// (`dpsbatch run --comm local`, in-process) once per test process and
// returns its run directory, the reference for the distributed runs.
var localReference = sync.OnceValues(func() (string, error) {
	parent, err := os.MkdirTemp("", "dpsbatch-ref-")
	if err != nil {
		return "", err
	}
	binMu.Lock()
	tempDirs = append(tempDirs, parent)
	binMu.Unlock()
	dir := filepath.Join(parent, "ref")
	if _, _, err := examples.Extract(examples.Default, dir); err != nil {
		return "", err
	}
	app := newApp()
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &out
	if err := app.Run([]string{"dpsbatch", "run", "--comm", "local", "--size", "5", "--run-dir", dir}); err != nil {
		return "", fmt.Errorf("local reference run: %w\n%s", err, &out)
	}
	return dir, nil
})

// sameOutputs checks that got's run directory holds the same files as
// want's, byte for byte, and links to the same places within its own run
// directory; the tcp rendezvous directory is left out. It returns the
// number of output files compared.
func sameOutputs(t *testing.T, want, got string) int {
	t.Helper()
	return sameFiles(t, treeOf(t, want), treeOf(t, got))
}

// treeOf reads every file under root (by path relative to root), and
// every link's target, written RUN-DIR/... when it points inside root;
// the tcp rendezvous directory is left out.
func treeOf(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		switch {
		case d.IsDir() && d.Name() == ".rendezvous":
			return filepath.SkipDir
		case d.IsDir():
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if r, err := filepath.Rel(root, target); err == nil && filepath.IsAbs(target) {
				target = "RUN-DIR/" + r
			}
			m[rel] = "link to " + target
		default:
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			m[rel] = string(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// sameFiles compares two trees read by treeOf and returns the number of
// output files (under output/ and work/) compared.
func sameFiles(t *testing.T, w, g map[string]string) int {
	t.Helper()
	for name, data := range w {
		if gd, ok := g[name]; !ok {
			t.Errorf("%s: missing", name)
		} else if gd != data {
			t.Errorf("%s differs:\n got %q\nwant %q", name, gd, data)
		}
	}
	for name := range g {
		if _, ok := w[name]; !ok {
			t.Errorf("%s: not made by the local run", name)
		}
	}
	outputs := 0
	for name := range w {
		if strings.HasPrefix(name, "output"+string(filepath.Separator)) || strings.HasPrefix(name, "work"+string(filepath.Separator)) {
			outputs++
		}
	}
	return outputs
}

// checkAgainstLocal compares a distributed run's outputs with the local
// reference run's.
func checkAgainstLocal(t *testing.T, dir string) {
	t.Helper()
	ref, err := localReference()
	if err != nil {
		t.Fatal(err)
	}
	// 3 visits × 4 CCDs: a statistics file each, and a link per CCD.
	if n := sameOutputs(t, ref, dir); n != 16 {
		t.Errorf("compared %d output files and links, want 16", n)
	}
}

func TestRunLocalComm(t *testing.T) {
	dir := exampleRunDir(t, "loc")
	out, err := run(t, "run", "--comm", "local", "--size", "3", "--run-dir", dir)
	if err != nil || !strings.Contains(out, "visits: 3 run, 3 done, 0 failed") {
		t.Fatalf("%v\n%s", err, out)
	}
	checkAgainstLocal(t, dir)

	// The same visits through `dpsbatch local`: the same outputs.
	loc := filepath.Join(t.TempDir(), "l")
	if out, err := run(t, "local", filepath.Join(dir, "pipeline.yaml"), "--visits", filepath.Join(dir, "visits.csv"), "--run-dir", loc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, f := range []string{"output/1001/ccd1-r.json", "output/1003/ccd4-i.json"} {
		a, _ := os.ReadFile(filepath.Join(dir, f))
		b, err := os.ReadFile(filepath.Join(loc, f))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: run and local differ (%v)", f, err)
		}
	}
}

func TestRunExitCodes(t *testing.T) {
	dir := exampleRunDir(t, "ex")
	bad := exampleRunDir(t, "bad")
	data, _ := os.ReadFile(filepath.Join(bad, "pipeline.yaml"))
	os.WriteFile(filepath.Join(bad, "pipeline.yaml"), bytes.Replace(data, []byte("type: exec"), []byte("type: exce"), 1), 0o644)
	os.WriteFile(filepath.Join(bad, "visits.csv"), []byte("visitId,filter,exptime\n1,r,3\n1,g,4\n"), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"some visits failed", []string{"run", "--comm", "local", "--size", "3", "--run-dir", dir, "--visits", filepath.Join(dir, "visits-with-failure.csv")}, 3, "1 of 4 visits"},
		{"bad policy", []string{"run", "--comm", "local", "--run-dir", bad}, 2, `pipeline.yaml:33: stages[1].type: unknown stage type "exce"`},
		{"bad visits", []string{"run", "--comm", "local", "--size", "3", "--run-dir", bad, "--pipeline", filepath.Join(dir, "pipeline.yaml")}, 2, `visits.csv:3: visit "1" repeats line 2`},
		{"no run dir", []string{"run", "--comm", "local"}, 2, "run-dir"},
		{"missing run dir", []string{"run", "--comm", "local", "--size", "2", "--run-dir", filepath.Join(dir, "nope")}, 2, "run directory"},
		{"unknown comm", []string{"run", "--comm", "pvm", "--run-dir", dir}, 2, `communicator "pvm"`},
		{"rank without size", []string{"run", "--comm", "tcp", "--rank", "1", "--run-dir", dir}, 2, "--rank and --size go together"},
		{"one rank", []string{"run", "--comm", "local", "--size", "1", "--run-dir", dir}, 2, "at least 2 ranks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, tc.args...)
			if got := exitCode(err); got != tc.code {
				t.Errorf("exit code %d, want %d (err: %v)\n%s", got, tc.code, err, out)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("error %v does not contain %q", err, tc.want)
			}
		})
	}
}

// TestRunBinaryOutsideSlurm runs the binary with no launcher around it.
func TestRunBinaryOutsideSlurm(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t, "")
	dir := exampleRunDir(t, "out")
	_, stderr, code := runCmd(t, time.Minute, cleanEnv(), bin, "run", "--run-dir", dir)
	if code != 2 || !strings.Contains(stderr, "not started by srun or mpirun") {
		t.Errorf("--comm auto outside srun: exit %d, stderr %s", code, stderr)
	}
	_, stderr, code = runCmd(t, time.Minute, cleanEnv(), bin, "run", "--comm", "mpi", "--run-dir", dir)
	if code == 0 || !strings.Contains(stderr, "built without MPI support (rebuild with -tags mpi)") {
		t.Errorf("--comm mpi without the tag: exit %d, stderr %s", code, stderr)
	}
	// tcp with --rank and --size: three processes on this host.
	type result struct {
		out, err string
		code     int
	}
	res := make([]result, 3)
	var wg sync.WaitGroup
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(t.Context(), bin, "run", "--comm", "tcp", "--rank", fmt.Sprint(r), "--size", "3", "--run-dir", dir)
			cmd.Env = cleanEnv()
			cmd.WaitDelay = 5 * time.Second
			var o, e bytes.Buffer
			cmd.Stdout, cmd.Stderr = &o, &e
			cmd.Run()
			res[r] = result{o.String(), e.String(), cmd.ProcessState.ExitCode()}
		}()
	}
	wg.Wait()
	for r, x := range res {
		if x.code != 0 {
			t.Errorf("rank %d: exit %d\n%s", r, x.code, x.err)
		}
	}
	if !strings.Contains(res[0].out, "visits: 3 run, 3 done, 0 failed") || res[1].out != "" {
		t.Errorf("rank 0 printed %q, rank 1 %q", res[0].out, res[1].out)
	}
	checkAgainstLocal(t, dir)
}

// TestRunSrunTCP runs the example as 5 tasks over the four simulated
// nodes: `srun -N4 -n5 --mpi=none dpsbatch run --comm tcp`.
func TestRunSrunTCP(t *testing.T) {
	needCluster(t, 4)
	bin := buildBinary(t, "")
	dir := exampleRunDir(t, "tcp")
	stdout, stderr, code := runCmd(t, 3*time.Minute, cleanEnv(), "srun", "-N4", "-n5", "--mpi=none", "--time=3",
		"-J", "dpsbatch-test-tcp", "--chdir", dir, bin, "run", "--comm", "tcp", "--run-dir", dir)
	t.Logf("stdout:\n%s", stdout)
	if code != 0 || !strings.Contains(stdout, "visits: 3 run, 3 done, 0 failed") {
		t.Fatalf("srun: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if strings.Count(stdout, "visits:") != 1 {
		t.Errorf("the summary should be printed once, by rank 0:\n%s", stdout)
	}
	nodes := rankNodes(t, stderr, 5)
	t.Logf("nodes by rank: %v", nodes)
	if got := distinct(nodes); !slices.Equal(got, []string{"n1", "n2", "n3", "n4"}) {
		t.Errorf("ranks ran on %v, want n1..n4", got)
	}
	checkAgainstLocal(t, dir)

	// A failed visit: srun's exit status is the Pipeline's, 3.
	fdir := exampleRunDir(t, "tcpf")
	stdout, stderr, code = runCmd(t, 3*time.Minute, cleanEnv(), "srun", "-N2", "-n3", "--mpi=none", "--time=3",
		"-J", "dpsbatch-test-tcp", bin, "run", "--comm", "tcp", "--run-dir", fdir, "--visits", filepath.Join(fdir, "visits-with-failure.csv"))
	if code != 3 || !strings.Contains(stdout, "visits: 4 run, 3 done, 1 failed") {
		t.Errorf("a failed visit: exit %d, want 3\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}

	// Bad input found by one rank only (the visit file, read by rank 0):
	// every rank stops with it, srun exits 2 at once.
	bdir := exampleRunDir(t, "tcpb")
	os.WriteFile(filepath.Join(bdir, "visits.csv"), []byte("visitId,filter,exptime\n1,r,3\n1,g,4\n"), 0o644)
	start := time.Now()
	stdout, stderr, code = runCmd(t, 3*time.Minute, cleanEnv(), "srun", "-N2", "-n3", "--mpi=none", "--time=3",
		"-J", "dpsbatch-test-tcp", bin, "run", "--run-dir", bdir)
	if code != 2 || strings.Count(stderr, `visits.csv:3: visit "1" repeats line 2`) != 3 {
		t.Errorf("bad visits: exit %d, want 2 with the error on every rank\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("bad visits took %v to end", took)
	}
}
