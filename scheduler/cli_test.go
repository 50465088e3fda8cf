package scheduler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/site"
)

// These tests run the CLI backend against fake tools (shell scripts on
// PATH) to check what surrounds the tools: arguments, stdin, errors,
// filtering. The real tools are tested by TestCLIBackend (cluster_test.go).

// fakeTools puts a script for every tool on a fresh PATH: scripts[tool] is
// its body, others exit 0 silently; the system's folders follow it on PATH
// for the scripts' own commands. Each script records its arguments in
// DIR/TOOL.args and its stdin in DIR/TOOL.stdin.
func fakeTools(t *testing.T, scripts map[string]string) (dir string) {
	t.Helper()
	dir = t.TempDir()
	for _, tool := range cliTools {
		body := "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"" + dir + "/" + tool + ".args\"\n" +
			"cat > \"" + dir + "/" + tool + ".stdin\"\n" + scripts[tool] + "\n"
		if err := os.WriteFile(filepath.Join(dir, tool), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+":/usr/bin:/bin")
	return dir
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNewCLIMissingTools(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := NewCLI(CLIOptions{})
	want := "scheduler: Slurm tools not found on PATH: sbatch, squeue, sinfo, scontrol, scancel, sacct"
	if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, ErrMissingTools) {
		t.Fatalf("NewCLI error %v, want one starting %q matching ErrMissingTools", err, want)
	}

	dir := fakeTools(t, nil)
	os.Remove(filepath.Join(dir, "sacct"))
	os.Remove(filepath.Join(dir, "sinfo"))
	t.Setenv("PATH", dir)
	_, err = NewCLI(CLIOptions{})
	if want := "Slurm tools not found on PATH: sinfo, sacct "; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("NewCLI error %v, want one containing %q", err, want)
	}
}

func TestCLISubmitFake(t *testing.T) {
	dir := fakeTools(t, map[string]string{"sbatch": "echo '77;dps'"})
	c, err := NewCLI(CLIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/bash\n#SBATCH --job-name=x\necho hi\n"
	id, err := c.Submit(context.Background(), Submission{Script: []byte(script), Dir: "/some/dir", Dependency: "afterany:12"})
	if err != nil || id != "77" {
		t.Fatalf("Submit = %q, %v; want 77", id, err)
	}
	if got, want := readFile(t, filepath.Join(dir, "sbatch.args")), "--parsable\n--chdir=/some/dir\n--dependency=afterany:12\n"; got != want {
		t.Errorf("sbatch arguments %q, want %q", got, want)
	}
	if got := readFile(t, filepath.Join(dir, "sbatch.stdin")); got != script {
		t.Errorf("sbatch stdin %q, want the script %q", got, script)
	}

	for _, s := range []Submission{
		{Script: nil, Dir: "/d"},
		{Script: []byte("  \n"), Dir: "/d"},
		{Script: []byte("true"), Dir: "relative/dir"},
		{Script: []byte("true"), Dir: "/d", Dependency: "afterok:1 --wrap=x"},
	} {
		if id, err := c.Submit(context.Background(), s); err == nil {
			t.Errorf("Submit(%+v) = %q, want an error", s, id)
		}
	}
}

func TestCLIToolErrorsFake(t *testing.T) {
	fakeTools(t, map[string]string{
		"sbatch":  "echo 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2; exit 1",
		"scancel": "echo 'scancel: error: Kill job error on job id 5: Invalid job id specified' >&2; exit 1",
		"sacct":   "echo 'sacct: error: Problem talking to the database: Connection refused' >&2; exit 1",
		"squeue":  "sleep 5",
	})
	// No retries: this is about the messages (retry_test.go retries).
	c, err := NewCLI(CLIOptions{RetryWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = c.Submit(ctx, Submission{Script: []byte("true"), Dir: "/d"})
	if want := "scheduler: sbatch --parsable --chdir=/d: exit status 1: sbatch: error: Batch job submission failed: Invalid partition name specified"; err == nil || err.Error() != want {
		t.Errorf("Submit error\n got %v\nwant %s", err, want)
	}
	err = c.Cancel(ctx, "5", "USR1")
	if want := "scheduler: scancel --signal=USR1 5: exit status 1: scancel: error: Kill job error on job id 5: Invalid job id specified"; err == nil || err.Error() != want {
		t.Errorf("Cancel error\n got %v\nwant %s", err, want)
	}
	_, err = c.History(ctx, []string{"5"})
	if err == nil || errors.Is(err, ErrNoAccounting) || !strings.Contains(err.Error(), "Connection refused") {
		t.Errorf("History error %v, want the tool's stderr and not ErrNoAccounting", err)
	}

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Jobs(short, []string{"5"})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
		t.Errorf("Jobs under a 100ms deadline: %v after %v, want context.DeadlineExceeded at once", err, time.Since(start))
	}

	for _, bad := range []struct {
		id, signal string
	}{{"5;rm", ""}, {"-5", ""}, {"", ""}, {"5", "USR1 6"}, {"5", "--full"}} {
		if err := c.Cancel(ctx, bad.id, bad.signal); !errors.Is(err, conf.ErrInvalid) {
			t.Errorf("Cancel(%q, %q) = %v, want a bad input error", bad.id, bad.signal, err)
		}
	}
	if _, err := c.Jobs(ctx, []string{"1,2"}); !errors.Is(err, conf.ErrInvalid) {
		t.Errorf("Jobs with a bad id: %v, want a bad input error", err)
	}
	if _, err := c.History(ctx, []string{"1", "--starttime=now"}); !errors.Is(err, conf.ErrInvalid) {
		t.Errorf("History with a bad id: %v, want a bad input error", err)
	}
}

func TestCLINoAccountingFake(t *testing.T) {
	fakeTools(t, map[string]string{"sacct": "echo 'Slurm accounting storage is disabled' >&2; exit 1"})
	c, err := NewCLI(CLIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.History(context.Background(), []string{"5"}); !errors.Is(err, ErrNoAccounting) {
		t.Errorf("History = %v, want ErrNoAccounting", err)
	}
}

// fakeSqueue puts a fake squeue on PATH that prints the jobs of
// testdata/squeue-text.txt with the separator of its --Format argument,
// all of them whatever its --jobs (Jobs must keep only those asked for),
// and records each call as "SLURM_TIME_FORMAT sep=SEP jobs=IDS" in the
// returned file. Job IDs starting with 99999 are unknown to it: given one
// alone, it fails as Slurm 22.05's squeue does; when strict, given any
// (as later releases may). down makes every call fail.
func fakeSqueue(t *testing.T, strict, down bool) (dir, calls string) {
	t.Helper()
	data, err := filepath.Abs(filepath.Join("testdata", "squeue-text.txt"))
	if err != nil {
		t.Fatal(err)
	}
	calls = filepath.Join(t.TempDir(), "calls")
	script := `sep=; jobs=
for a in "$@"; do case $a in --Format=JobID:0*) f=${a#--Format=JobID:0}; sep=${f%%,*};; --jobs=*) jobs=${a#--jobs=};; esac; done
echo "$SLURM_TIME_FORMAT sep=$sep jobs=$jobs" >> '` + calls + `'
`
	switch {
	case down:
		script += "echo 'slurm_load_jobs error: Unable to contact slurm controller (connect failure)' >&2; exit 1\n"
	case strict:
		script += "case $jobs in 99999*|*,99999*) echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1;; esac\n"
	default:
		script += "case $jobs in 99999*,*|*,*) ;; 99999*) echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1;; esac\n"
	}
	script += `exec sed "s/` + testSeparator + `/$sep/g" '` + data + `'`
	return fakeTools(t, map[string]string{"squeue": script}), calls
}

// callLines reads the calls fakeSqueue recorded, and removes the file.
func callLines(t *testing.T, calls string) []string {
	t.Helper()
	b, err := os.ReadFile(calls)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	os.Remove(calls)
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestCLIJobsFake(t *testing.T) {
	dir, calls := fakeSqueue(t, false, false)
	c, err := NewCLI(CLIOptions{Env: []string{"SLURM_CONF=/nowhere", "SLURM_TIME_FORMAT=standard"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	jobs, err := c.Jobs(ctx, []string{"6388", "6384", "99999", "6384", "6391_2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 3 || jobs["6384"].State != "FAILED" || jobs["6388"].Name != "cap|pending" || jobs["6391_2"].ID != "6391_2" {
		t.Errorf("Jobs = %+v, want 6384 FAILED, 6388 cap|pending and 6391_2 only", jobs)
	}
	args := strings.Split(readFile(t, filepath.Join(dir, "squeue.args")), "\n")
	if len(args) != 5 || args[0] != "--noheader" || args[1] != "--states=all" || args[2] != "--jobs=6384,6388,6391_2,99999" ||
		!strings.HasPrefix(args[3], "--Format=JobID:0~") || !strings.HasSuffix(args[3], ",Name:0"+args[3][len("--Format=JobID:0"):][:17]) {
		t.Errorf("squeue arguments %q, want --noheader --states=all --jobs=IDS (sorted, once each) --Format=...", args)
	}
	first := callLines(t, calls)
	if len(first) != 1 || !strings.HasPrefix(first[0], "%s sep=~") {
		t.Errorf("squeue calls %q, want one with SLURM_TIME_FORMAT=%%s", first)
	}

	// One forgotten ID: squeue fails, Jobs finds nothing, and says so
	// without an error. One known ID: found. Each in one call, with a
	// new separator.
	if jobs, err := c.Jobs(ctx, []string{"99999"}); err != nil || len(jobs) != 0 {
		t.Errorf("Jobs(99999) = %v, %v; want no job and no error", jobs, err)
	}
	if jobs, err := c.Jobs(ctx, []string{"6390"}); err != nil || len(jobs) != 1 || jobs["6390"].Reason != "JobHeldUser" {
		t.Errorf("Jobs(6390) = %v, %v; want the held job", jobs, err)
	}
	next := callLines(t, calls)
	if len(next) != 2 || next[0] == first[0] || next[1] == first[0] || !strings.HasSuffix(next[0], " jobs=99999") {
		t.Errorf("squeue calls %q after %q, want two, each with its own separator", next, first)
	}

	// More IDs than fit in one argument: all jobs, in one call.
	var many []string
	for i := range 20000 {
		many = append(many, strconv.Itoa(100000+i))
	}
	jobs, err = c.Jobs(ctx, append(many, "6393"))
	if err != nil || len(jobs) != 1 || jobs["6393"].Name != "ünïcødé 🙂" {
		t.Errorf("Jobs of 20,001 IDs = %v, %v; want job 6393 only", jobs, err)
	}
	if got := callLines(t, calls); len(got) != 1 || !strings.HasSuffix(got[0], " jobs=") {
		t.Errorf("squeue calls %q for 20,001 IDs, want one without --jobs", got)
	}

	// No IDs: no call at all.
	if jobs, err := c.Jobs(ctx, nil); err != nil || len(jobs) != 0 {
		t.Errorf("Jobs(nil) = %v, %v; want an empty map", jobs, err)
	}
	if got := callLines(t, calls); len(got) != 1 || got[0] != "" {
		t.Errorf("Jobs(nil) ran squeue: %q", got)
	}
}

// TestCLIJobsStrictFake checks the fallback for a squeue that fails when
// any of several IDs is unknown: one more call, for all jobs.
func TestCLIJobsStrictFake(t *testing.T) {
	_, calls := fakeSqueue(t, true, false)
	c, err := NewCLI(CLIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := c.Jobs(context.Background(), []string{"6384", "99999", "6397"})
	if err != nil || len(jobs) != 2 || jobs["6384"].ExitCode != 3 || jobs["6397"].Name != "trailing-newline\n" {
		t.Errorf("Jobs = %v, %v; want 6384 and 6397", jobs, err)
	}
	got := callLines(t, calls)
	if len(got) != 2 || !strings.HasSuffix(got[0], " jobs=6384,6397,99999") || !strings.HasSuffix(got[1], " jobs=") {
		t.Errorf("squeue calls %q, want one with the IDs, then one without", got)
	}
	jobs, err = c.Jobs(context.Background(), []string{"6384", "6397"})
	if err != nil || len(jobs) != 2 {
		t.Errorf("Jobs of known IDs = %v, %v; want both", jobs, err)
	}
	if got := callLines(t, calls); len(got) != 1 {
		t.Errorf("squeue calls %q for known IDs, want one", got)
	}
}

// TestCLIJobsDownFake checks that squeue failing while slurmctld is away
// is tried again until the bound (RetryWait), then is one error naming the
// command, the number of tries and squeue's message; Jobs does not fall
// back to a second query for it.
func TestCLIJobsDownFake(t *testing.T) {
	_, calls := fakeSqueue(t, false, true)
	const bound = 3 * time.Second
	c, err := NewCLI(CLIOptions{RetryWait: bound})
	if err != nil {
		t.Fatal(err)
	}
	for _, ids := range [][]string{{"6384"}, {"6384", "99999"}} {
		start := time.Now()
		jobs, err := c.Jobs(context.Background(), ids)
		took := time.Since(start)
		got := callLines(t, calls)
		want := fmt.Sprintf("failed %d times in ", len(got))
		if err == nil || !strings.HasPrefix(err.Error(), "scheduler: squeue --noheader --states=all --jobs=") || !strings.Contains(err.Error(), want) ||
			!strings.HasSuffix(err.Error(), "the last: exit status 1: slurm_load_jobs error: Unable to contact slurm controller (connect failure)") {
			t.Errorf("Jobs(%v) = %v, %v; want squeue's error, saying %q", ids, jobs, err, want)
		}
		if len(got) < 3 || took > bound+5*time.Second {
			t.Errorf("Jobs(%v): squeue ran %d times in %v, want several within the bound of %v", ids, len(got), took, bound)
		}
		for _, call := range got[1:] {
			if call != got[0] {
				t.Errorf("Jobs(%v): squeue calls %q, want the same call again", ids, got)
				break
			}
		}
	}
}

func TestCLIHistoryChunksFake(t *testing.T) {
	// sacct prints one COMPLETED line per ID of its --jobs argument, and
	// counts its calls and records SLURM_TIME_FORMAT.
	out := t.TempDir()
	dir := fakeTools(t, map[string]string{"sacct": `echo "$SLURM_TIME_FORMAT" >> "` + out + `/calls"; ` +
		`for a in "$@"; do case $a in --jobs=*) echo "${a#--jobs=}" | tr , '\n' | ` +
		`while read id; do echo "$id|COMPLETED|0:0|None|1795448453|1795448454|1795448455|n1|debug|job $id"; done;; esac; done`})
	c, err := NewCLI(CLIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range historyChunk + 5 {
		ids = append(ids, strconv.Itoa(1000+i))
	}
	jobs, err := c.History(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if j := jobs["1000"]; len(jobs) != len(ids) || j.Name != "job 1000" || j.Source != "sacct" || !j.Ended.Equal(time.Unix(1795448455, 0)) {
		t.Errorf("History of %d ids: %d jobs, job 1000 %+v", len(ids), len(jobs), j)
	}
	if got := readFile(t, filepath.Join(out, "calls")); got != "%s\n%s\n" {
		t.Errorf("sacct calls (one line each, SLURM_TIME_FORMAT) %q, want two with %%s", got)
	}
	args := readFile(t, filepath.Join(dir, "sacct.args"))
	if !strings.Contains(args, "--format="+sacctFormat+"\n") || !strings.Contains(args, "--allocations\n") {
		t.Errorf("sacct arguments %q", args)
	}
}

// TestAccountingParse runs Accounting against a fake sacctmgr.
func TestAccountingParse(t *testing.T) {
	dir := fakeTools(t, nil)
	fake := `#!/bin/sh
case "$4" in
account) printf 'root\nscience\nphysics\n' ;;
qos) printf 'normal\nhigh\n' ;;
assoc) printf '%s\n' "$5" > "` + dir + `/assoc.user"; printf 'dps|science||normal,high\ndps|physics|debug|\n' ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "sacctmgr"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := NewCLI(CLIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.Accounting(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := site.Accounting{User: a.User, Accounts: []string{"root", "science", "physics"}, QoS: []string{"normal", "high"},
		Assocs: []site.Assoc{{Cluster: "dps", Account: "science", QoS: []string{"normal", "high"}}, {Cluster: "dps", Account: "physics", Partition: "debug"}}}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("Accounting:\n%+v\nwant\n%+v", a, want)
	}
	if got := strings.TrimSpace(readFile(t, filepath.Join(dir, "assoc.user"))); got != "user="+a.User || a.User == "" {
		t.Errorf("sacctmgr list assoc was given %q, user %q", got, a.User)
	}
}
