package templates_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/testenv"
	"github.com/dpsbatch/dpsbatch/templates"
)

// sbatchScript submits script on stdin with --parsable from dir and
// returns the job ID; the job is cancelled when the test ends.
func sbatchScript(t *testing.T, dir string, script []byte) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sbatch", "--parsable")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sbatch: %v: %s\nscript:\n%s", err, stderr.Bytes(), script)
	}
	id, _, _ := strings.Cut(strings.TrimSpace(string(out)), ";")
	if id == "" {
		t.Fatalf("sbatch printed no job ID: %q", out)
	}
	t.Cleanup(func() { exec.Command("scancel", id).Run() })
	return id
}

// squeueJob is what squeue --json says of a job, as far as these tests
// look.
type squeueJob struct {
	JobID   int    `json:"job_id"`
	Name    string `json:"name"`
	Comment string `json:"comment"`
}

// squeueJSON returns the jobs squeue --json knows (finished ones too, for
// MinJobAge), by ID. squeue --json of Slurm 22.05 ignores its filters, so
// it is asked once for all.
func squeueJSON(t *testing.T) map[string]squeueJob {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "squeue", "--json").Output()
	if err != nil {
		t.Fatalf("squeue --json: %v", err)
	}
	var doc struct{ Jobs []squeueJob }
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("squeue --json: %v", err)
	}
	jobs := map[string]squeueJob{}
	for _, j := range doc.Jobs {
		jobs[fmt.Sprint(j.JobID)] = j
	}
	return jobs
}

// waitJob polls until the job has ended and returns its final state.
func waitJob(t *testing.T, id string, limit time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		out, err := exec.Command("scontrol", "-o", "show", "job", id).Output()
		if err != nil {
			t.Fatalf("scontrol show job %s: %v", id, err)
		}
		state := ""
		for _, f := range strings.Fields(string(out)) {
			if v, ok := strings.CutPrefix(f, "JobState="); ok {
				state = v
			}
		}
		switch state {
		case "PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "SIGNALING", "STAGE_OUT":
		default:
			return state
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after %v", id, state, limit)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestClusterHostileJob submits a rendered script whose fields are
// hostile to the real sbatch, runs it on the local cluster, and checks
// from the job's output that the step got its args, its environment and
// its run directory intact, that no injected command ran, and that Slurm
// holds the job name and comment that were set.
func TestClusterHostileJob(t *testing.T) {
	testenv.NeedCluster(t, 1, "sbatch", "squeue", "scontrol", "scancel")
	base := t.TempDir()
	marks := filepath.Join(base, "marks")
	sh := "it's \"double\" $(touch " + marks + "/a) `touch " + marks + "/b`; touch " + marks + "/c && \\ * ? # x"
	multi := sh + "\ntouch " + marks + "/d\n#SBATCH --job-name=evil\n#PBS -N evil\n#BSUB -J evil"
	j := templates.Job{
		Name:      "dps " + sh + " hetjob PACKJOB",
		RunID:     "run " + multi,
		RunDir:    base + "/run " + multi,
		Partition: "debug",
		Nodes:     1, Tasks: 1,
		Time:   "00:05:00",
		Output: base + "/logs 'single' \"double\" #/slurm-%j.out",
		Signal: "USR1@60",
		Extra:  []string{"--comment=" + sh},
		Env:    [][2]string{{"DPS_HOSTILE", multi}},
		Launch: []string{"srun", "--mpi=none", "/bin/sh", "-c",
			`printf 'arg<%s>\n' "$@"; printf 'env<%s>\n' "$DPS_HOSTILE"; printf 'pwd<%s>\n' "$(pwd)"`,
			"sh", multi, "", sh, "$HOME", "-n"},
		Attempt: 1,
	}
	for _, d := range []string{marks, j.RunDir, filepath.Dir(j.Output)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var script bytes.Buffer
	if err := templates.Default().Render(&script, j); err != nil {
		t.Fatal(err)
	}
	id := sbatchScript(t, base, script.Bytes())
	state := waitJob(t, id, 2*time.Minute)
	logPath := strings.ReplaceAll(j.Output, "%j", id)
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatalf("the job's output: %v (state %s)", err, state)
	}
	if state != "COMPLETED" {
		t.Errorf("job %s ended %s, want COMPLETED; output:\n%s", id, state, log)
	}
	var want strings.Builder
	for _, a := range j.Launch[6:] {
		fmt.Fprintf(&want, "arg<%s>\n", a)
	}
	fmt.Fprintf(&want, "env<%s>\npwd<%s>\n", multi, j.RunDir)
	if !strings.Contains(string(log), want.String()) {
		t.Errorf("the step's output does not hold its args, env and folder intact; got:\n%s\nwant, within it:\n%s", log, want.String())
	}
	if line := fmt.Sprintf("run %s, attempt 1: launching\n", j.RunID); !strings.Contains(string(log), line) {
		t.Errorf("the log line does not say %q:\n%s", line, log)
	}
	if left, _ := os.ReadDir(marks); len(left) > 0 {
		t.Errorf("an injected command ran (%s created); output:\n%s", left[0].Name(), log)
	}
	got, ok := squeueJSON(t)[id]
	if !ok {
		t.Fatalf("squeue --json does not list job %s", id)
	}
	if got.Name != j.Name {
		t.Errorf("Slurm's job name is\n%q\nwant\n%q", got.Name, j.Name)
	}
	if want := strings.TrimPrefix(j.Extra[0], "--comment="); got.Comment != want {
		t.Errorf("Slurm's job comment is\n%q\nwant\n%q", got.Comment, want)
	}
}

// TestClusterDirectives submits held jobs whose names and comments are
// values that sbatch's reading of #SBATCH lines could alter, and checks
// that Slurm holds exactly them: the real sbatch agrees with Directive.
func TestClusterDirectives(t *testing.T) {
	testenv.NeedCluster(t, 1, "sbatch", "squeue", "scancel")
	base := t.TempDir()
	values := []string{
		"a b", "  two  spaces  ", `'`, `"`, `\`, `\\`, `\"`, `it's "quoted"`, "# not a comment", "x #y",
		"hetjob", "x-hetjob-y PackJob", `het\job`, ":colon", "-n", "a=b", "%j %x", "tab\there",
		"naïve ☃", "$(touch /tmp/x) `y` ; && | > * ? ~ {a,b}", "trailing backslash \\",
	}
	var ids []string
	for i := 0; i < len(values); i += 2 {
		name, comment := values[i], values[(i+1)%len(values)]
		j := templates.Job{
			Name: name, RunDir: base, Partition: "debug", Tasks: 1, Output: "/dev/null",
			Extra:  []string{"--hold", "--comment=" + comment},
			Launch: []string{"true"},
		}
		var script bytes.Buffer
		if err := templates.Default().Render(&script, j); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sbatchScript(t, base, script.Bytes()))
	}
	jobs := squeueJSON(t)
	for k, id := range ids {
		name, comment := values[2*k], values[(2*k+1)%len(values)]
		got, ok := jobs[id]
		switch {
		case !ok:
			t.Errorf("squeue --json does not list job %s", id)
		case got.Name != name:
			t.Errorf("job name %q came back as %q", name, got.Name)
		case got.Comment != comment:
			t.Errorf("comment %q came back as %q", comment, got.Comment)
		}
	}
}

// TestClusterSteps submits a rendered script of two concurrent steps and
// a broker (sleep 300) to the local cluster: the first step waits for the
// second to have run (so they ran at once) and exits 3, the second runs
// two tasks and exits 0. The job must end with exit code 3, its log must
// name each step's end and the broker's stop before the last line, and
// the broker must be gone.
//
// Each srun has --exact: in Slurm 22.05 a step without it takes every
// CPU of its nodes, and the next step waits ("step creation temporarily
// disabled") until it ends.
func TestClusterSteps(t *testing.T) {
	testenv.NeedCluster(t, 1, "sbatch", "scontrol", "scancel")
	base := t.TempDir()
	run := filepath.Join(base, "run dir")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	j := templates.Job{
		Name: "dps-steps", RunID: "steps", RunDir: run, Partition: "debug",
		Nodes: 1, Tasks: 3, CPUsPerTask: 1, Time: "00:05:00",
		Output:  filepath.Join(base, "slurm-%j.out"),
		Broker:  []string{"sleep", "300"},
		Attempt: 1,
		Steps: []templates.Step{
			{Name: "one", Launch: []string{"srun", "--exact", "-n1", "sh", "-c",
				`for i in $(seq 300); do [ -e two.ran.1 ] && { echo one ran; exit 3; }; sleep 0.1; done; echo one ran alone; exit 4`}},
			{Name: "two", Launch: []string{"srun", "--exact", "-n2", "sh", "-c", `echo "two ran $SLURM_PROCID"; touch "two.ran.$SLURM_PROCID"`}},
		},
	}
	var script bytes.Buffer
	if err := templates.Default().Render(&script, j); err != nil {
		t.Fatal(err)
	}
	id := sbatchScript(t, base, script.Bytes())
	state := waitJob(t, id, 2*time.Minute)
	logb, err := os.ReadFile(strings.ReplaceAll(j.Output, "%j", id))
	if err != nil {
		t.Fatalf("the job's output: %v (state %s)", err, state)
	}
	log := string(logb)
	t.Logf("job %s log:\n%s", id, log)
	out, err := exec.Command("scontrol", "-o", "show", "job", id).Output()
	if err != nil {
		t.Fatalf("scontrol show job %s: %v", id, err)
	}
	if !strings.Contains(" "+string(out), " ExitCode=3:0 ") || state != "FAILED" {
		t.Errorf("job %s ended %s, %s; want FAILED with ExitCode=3:0 (step one's)\nlog:\n%s", id, state, out, log)
	}
	for _, want := range []string{"one ran\n", "two ran 0\n", "two ran 1\n",
		"dpsbatch: step one starting (", "dpsbatch: step two starting (",
		"dpsbatch: step one exited 3 (", "dpsbatch: step two exited 0 (",
		"dpsbatch: broker stopped, status 143 (", "the steps exited with status 3\n"} {
		if !strings.Contains(log, want) {
			t.Errorf("the job's log does not say %q:\n%s", want, log)
		}
	}
	if a, b := strings.Index(log, "broker stopped"), strings.Index(log, "the steps exited"); a < 0 || a > b {
		t.Errorf("the broker is not stopped before the last line:\n%s", log)
	}
	m := regexp.MustCompile(`dpsbatch: broker started, pid (\d+) `).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("the log does not give the broker's pid:\n%s", log)
	}
	// The nodes run on this host: the broker's pid is ours to look at. A
	// pid taken again since would not be a sleep 300.
	if cmdline, err := os.ReadFile("/proc/" + m[1] + "/cmdline"); err == nil && string(cmdline) == "sleep\x00300\x00" {
		t.Errorf("the broker (pid %s) is still running after the job", m[1])
	}
}
