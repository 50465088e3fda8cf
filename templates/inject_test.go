package templates_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/templates"
)

// The test binary doubles as the fake launcher: started with
// FAKE_LAUNCHER_OUT set (through a link named srun, or any other name),
// it appends what it received there, one JSON line per start (a job's
// steps and broker each start one), and exits with FAKE_LAUNCHER_STATUS.
const (
	fakeOutEnv    = "FAKE_LAUNCHER_OUT"
	fakeStatusEnv = "FAKE_LAUNCHER_STATUS"
	fakeAwaitEnv  = "FAKE_AWAIT_BROKER"
)

// launched is what the fake launcher received.
type launched struct {
	Argv []string          // its argv, argv[0] included, as exec gave it
	Dir  string            // its working directory
	Env  map[string]string // the DPS_* variables
}

func TestMain(m *testing.M) {
	if out := os.Getenv(fakeOutEnv); out != "" {
		os.Exit(fakeLauncher(out))
	}
	os.Exit(m.Run())
}

func fakeLauncher(out string) int {
	l := launched{Argv: os.Args, Env: map[string]string{}}
	l.Dir, _ = os.Getwd()
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "DPS_") {
			l.Env[k] = v
		}
	}
	b, err := json.Marshal(l)
	if err == nil {
		var f *os.File
		if f, err = os.OpenFile(out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			_, err = f.Write(append(b, '\n')) // one write: whole lines
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake launcher:", err)
		return 99
	}
	// A broker says it has started (its record is written); with
	// FAKE_AWAIT_BROKER set, the other launches wait for that before they
	// end, so that the shell does not stop the broker before it wrote.
	if strings.HasPrefix(filepath.Base(os.Args[0]), "broker") {
		if err := os.WriteFile(out+".broker", nil, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "fake launcher:", err)
			return 99
		}
	} else if os.Getenv(fakeAwaitEnv) != "" {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(out + ".broker"); err == nil {
				break
			}
		}
	}
	status, _ := strconv.Atoi(os.Getenv(fakeStatusEnv))
	return status
}

// hostileValues returns values that would run a command that creates a
// file in marks if they reached the shell unquoted (or badly quoted), and
// other shell and sbatch hazards.
func hostileValues(marks string) []string {
	return []string{
		`it's "double" and 'single'`,
		"$(touch " + marks + "/dollar)",
		"`touch " + marks + "/backtick`",
		"x; touch " + marks + "/semicolon",
		"x && touch " + marks + "/and",
		"x || touch " + marks + "/or",
		"x | touch " + marks + "/pipe",
		"x > " + marks + "/redirect",
		"x & touch " + marks + "/background",
		"'; touch " + marks + "/single; '",
		`"; touch ` + marks + `/double; "`,
		`"$(touch ` + marks + `/dquoted)"`,
		`\'$(touch ` + marks + `/escaped)\'`,
		`trailing backslash \`,
		`\`,
		"* ? [a-z] ~ ~root {a,b} $HOME ${PATH} $((1+1)) !! %s %n",
		"line one\ntouch " + marks + "/newline",
		"x\n#SBATCH --job-name=evil\n#PBS -N evil\n#BSUB -J evil\ntouch " + marks + "/afterdirectives",
		"x'\ntouch " + marks + "/quotenewline\n'",
		"tab\there, escape \x1b[31m, naïve ☃",
		"-n",
		"--help",
		" ",
	}
}

// setter is one string field of Job, or an element of a list field.
// Setup is not among them: its lines are the site's trusted shell.
type setter struct {
	field     string
	directive bool // placed on an #SBATCH line: a newline is an error
	rejected  bool // checked strictly: every hostile value is an error
	set       func(j *templates.Job, v string, base string)
}

func setters() []setter {
	return []setter{
		{"Name", true, false, func(j *templates.Job, v, _ string) { j.Name = v }},
		{"RunID", false, false, func(j *templates.Job, v, _ string) { j.RunID = v }},
		{"RunDir", false, false, func(j *templates.Job, v, base string) { j.RunDir = filepath.Join(base, "rundir") + "/" + v }},
		{"Partition", true, false, func(j *templates.Job, v, _ string) { j.Partition = v }},
		{"Account", true, false, func(j *templates.Job, v, _ string) { j.Account = v }},
		{"QoS", true, false, func(j *templates.Job, v, _ string) { j.QoS = v }},
		// Render refuses a backslash in Output (TestOutputPattern).
		{"Output", true, false, func(j *templates.Job, v, _ string) { j.Output = strings.ReplaceAll(v, `\`, "") }},
		{"Signal", true, false, func(j *templates.Job, v, _ string) { j.Signal = v }},
		{"Dependency", true, false, func(j *templates.Job, v, _ string) { j.Dependency = v }},
		{"Extra[1]", true, false, func(j *templates.Job, v, _ string) { j.Extra = []string{"--exclusive", "--comment=" + v} }},
		{"Env[1] value", false, false, func(j *templates.Job, v, _ string) { j.Env = [][2]string{{"DPS_PLAIN", "plain"}, {"DPS_HOSTILE", v}} }},
		{"Launch[0]", false, false, func(j *templates.Job, v, base string) {
			// An absolute path to the fake launcher, through folders
			// named by the hostile value.
			j.Launch = []string{filepath.Join(base, "launchers") + "/" + v + "/launcher", "a"}
		}},
		{"Launch[2]", false, false, func(j *templates.Job, v, _ string) { j.Launch = []string{"srun", "--mpi=none", v, "after"} }},
		{"Launch[3]", false, false, func(j *templates.Job, v, _ string) { j.Launch = []string{"srun", "before", "", v} }},
		{"StopFile", false, false, func(j *templates.Job, v, base string) { j.StopFile = filepath.Join(base, "stop") + "/" + v }},
		// A production's job: steps (Launch unset) and a broker.
		{"Steps[1].Name", false, false, func(j *templates.Job, v, _ string) { j.Launch, j.Steps = nil, hostileSteps(v, "x") }},
		{"Steps[1].Launch[2]", false, false, func(j *templates.Job, v, _ string) { j.Launch, j.Steps = nil, hostileSteps("two", v) }},
		{"Steps[0].Launch[0]", false, false, func(j *templates.Job, v, base string) {
			j.Launch, j.Steps = nil, hostileSteps("two", "x")
			j.Steps[0].Launch = []string{filepath.Join(base, "launchers") + "/" + v + "/step", "a"}
		}},
		{"Broker[2]", false, false, func(j *templates.Job, v, _ string) {
			j.Launch, j.Steps = nil, hostileSteps("two", "x")
			j.Broker = []string{"broker", "--run", v}
		}},
		{"Broker[0]", false, false, func(j *templates.Job, v, base string) {
			j.Broker = []string{filepath.Join(base, "launchers") + "/" + v + "/broker", "--run", v}
		}},
		{"Time", true, true, func(j *templates.Job, v, _ string) { j.Time = v }},
		{"Env[0] name", false, true, func(j *templates.Job, v, _ string) { j.Env = [][2]string{{v, "x"}} }},
	}
}

// hostileSteps are two steps, the second named name with v among its
// arguments.
func hostileSteps(name, v string) []templates.Step {
	return []templates.Step{
		{Name: "one", Launch: []string{"srun", "--mpi=none", "first"}},
		{Name: name, Launch: []string{"srun", "--mpi=none", v, "after"}},
	}
}

// TestInjection renders jobs whose string fields, one at a time, hold
// hostile values, runs each script with bash and a fake srun first on the
// PATH, and checks that no injected command ran, that the launcher got
// exactly Job.Launch in the run directory with the Env values, and that
// the script exits with the launcher's status. A newline in a field that
// goes on an #SBATCH line, and any hostile Time or Env name, must be an
// error naming the field.
func TestInjection(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	marks := filepath.Join(base, "marks")
	bin := filepath.Join(base, "bin")
	for _, d := range []string{marks, bin, filepath.Join(base, "cwd")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"srun", "broker"} {
		if err := os.Symlink(self, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	runs := 0
	for _, s := range setters() {
		for i, v := range hostileValues(marks) {
			j := fullJob()
			j.Time = "00:10:00"
			j.RunDir = filepath.Join(base, "rundir")
			j.Setup = nil
			j.Env = nil
			s.set(&j, v, base)
			name := fmt.Sprintf("%s/%d", s.field, i)

			var script bytes.Buffer
			err := templates.Default().Render(&script, j)
			if s.rejected || s.directive && strings.ContainsAny(v, "\n") {
				var fe *templates.FieldError
				if !errors.As(err, &fe) || fe.Field != s.field || !errors.Is(err, templates.ErrInvalid) {
					t.Errorf("%s = %q: want an error naming Job.%s, got %v", name, v, s.field, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s = %q: %v", name, v, err)
				continue
			}
			runs++
			if !runFake(t, name, base, script.Bytes(), j) {
				t.Logf("script:\n%s", script.Bytes())
			}
			if left, _ := os.ReadDir(marks); len(left) > 0 {
				t.Fatalf("%s = %q: an injected command ran (%s created); script:\n%s", name, v, left[0].Name(), script.Bytes())
			}
		}
	}
	if runs < 100 {
		t.Errorf("only %d scripts ran", runs)
	}
}

// runFake runs script with bash, with the fake launcher first on the PATH,
// and checks what the launchers (Launch, or each of Steps, and Broker)
// got against j. It reports whether all was well.
func runFake(t *testing.T, name, base string, script []byte, j templates.Job) bool {
	t.Helper()
	if err := os.MkdirAll(j.RunDir, 0o755); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	want := [][]string{j.Launch}
	if len(j.Steps) > 0 {
		want = nil
		for _, st := range j.Steps {
			want = append(want, st.Launch)
		}
	}
	if len(j.Broker) > 0 {
		want = append(want, j.Broker)
	}
	self, _ := os.Executable()
	for _, argv := range want {
		if strings.HasPrefix(argv[0], "/") {
			if err := os.MkdirAll(filepath.Dir(argv[0]), 0o755); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if err := os.Symlink(self, argv[0]); err != nil && !os.IsExist(err) {
				t.Fatalf("%s: %v", name, err)
			}
		}
	}
	path := filepath.Join(base, "job.sh")
	out := filepath.Join(base, "launched.json")
	os.Remove(out)
	os.Remove(out + ".broker")
	if err := os.WriteFile(path, script, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", path)
	cmd.Dir = filepath.Join(base, "cwd")
	cmd.Env = []string{"PATH=" + filepath.Join(base, "bin") + ":/usr/bin:/bin", "HOME=" + base,
		fakeOutEnv + "=" + out, fakeStatusEnv + "=7"}
	if len(j.Broker) > 0 {
		cmd.Env = append(cmd.Env, fakeAwaitEnv+"=1")
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	ok := true
	fail := func(format string, args ...any) {
		t.Errorf("%s: "+format, append([]any{name}, args...)...)
		ok = false
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 7 {
		fail("the script exited with %v, want the launcher's status 7; stderr:\n%s", err, stderr.Bytes())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		fail("the launcher did not run: %v; stderr:\n%s", err, stderr.Bytes())
		return false
	}
	var got []launched
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var l launched
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("%s: %v in %q", name, err, line)
		}
		got = append(got, l)
	}
	// Every launch ran once, with its argv exactly (steps in any order).
	if len(got) != len(want) {
		fail("%d launches ran, want %d: %q", len(got), len(want), got)
	}
	for _, w := range want {
		i := slices.IndexFunc(got, func(l launched) bool { return slices.Equal(l.Argv, w) })
		if i < 0 {
			fail("no launcher got argv\n%q\namong\n%q", w, got)
			continue
		}
		l := got[i]
		got = slices.Delete(got, i, i+1)
		if l.Dir != j.RunDir {
			fail("the launcher %q ran in %q, want %q", w[0], l.Dir, j.RunDir)
		}
		for _, kv := range j.Env {
			if l.Env[kv[0]] != kv[1] {
				fail("the launcher %q got %s=%q, want %q", w[0], kv[0], l.Env[kv[0]], kv[1])
			}
		}
	}
	if want := fmt.Sprintf("run %s, attempt %d: launching\n", j.RunID, j.Attempt); !strings.Contains(stdout.String(), want) {
		fail("the log line does not say %q:\n%s", want, stdout.Bytes())
	}
	ends := []string{"the launch exited with status 7\n"}
	if len(j.Steps) > 0 {
		ends = []string{"the steps exited with status 7\n"}
		for _, st := range j.Steps {
			q := bashQ(t, st.Name)
			if strings.Contains(q, "\n") {
				fail("the step name %q is logged on several lines: %q", st.Name, q)
			}
			ends = append(ends, "dpsbatch: step "+q+" starting (", "dpsbatch: step "+q+" exited 7 (")
		}
	}
	if len(j.Broker) > 0 {
		// 7 when the broker ended before the shell stopped it.
		ends = append(ends, "dpsbatch: broker stopped, status ")
	}
	for _, want := range ends {
		if !strings.Contains(stdout.String(), want) {
			fail("the log does not say %q:\n%s", want, stdout.Bytes())
		}
	}
	return ok
}

// bashQ is s as bash's printf %q writes it in runFake's environment (%q
// depends on the locale, which is none there).
func bashQ(t *testing.T, s string) string {
	t.Helper()
	cmd := exec.Command("bash", "-c", `printf %q "$1"`, "bash", s)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash printf %%q: %v", err)
	}
	return string(out)
}

// TestHostileJobRuns runs the golden hostile job, every field hostile at
// once, the same way.
func TestHostileJobRuns(t *testing.T) {
	base := t.TempDir()
	marks := filepath.Join(base, "marks")
	for _, d := range []string{marks, filepath.Join(base, "bin"), filepath.Join(base, "cwd")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, _ := os.Executable()
	if err := os.Symlink(self, filepath.Join(base, "bin", "srun")); err != nil {
		t.Fatal(err)
	}
	j := hostileJob(marks)
	j.RunDir = base + j.RunDir
	j.Setup = append(j.Setup, `echo "setup runs with $UNSET_VARIABLE unset"`, "false")
	var script bytes.Buffer
	if err := templates.Default().Render(&script, j); err != nil {
		t.Fatal(err)
	}
	if !runFake(t, "hostile", base, script.Bytes(), j) {
		t.Logf("script:\n%s", script.Bytes())
	}
	if left, _ := os.ReadDir(marks); len(left) > 0 {
		t.Errorf("an injected command ran (%s created); script:\n%s", left[0].Name(), script.Bytes())
	}
}

// TestSetupHygiene checks that the site's setup lines run under the
// shell's defaults (an unset variable or a failing line does not stop
// them), and that dpsbatch's own lines run under set -u afterwards.
func TestSetupHygiene(t *testing.T) {
	base := t.TempDir()
	for _, d := range []string{filepath.Join(base, "bin"), filepath.Join(base, "cwd"), filepath.Join(base, "run")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, _ := os.Executable()
	if err := os.Symlink(self, filepath.Join(base, "bin", "srun")); err != nil {
		t.Fatal(err)
	}
	j := minimalJob()
	j.RunDir = filepath.Join(base, "run")
	j.Env = [][2]string{{"DPS_SETUP", "from the job"}}
	j.Setup = []string{
		`echo "unset: [$NOT_SET_ANYWHERE]"`,
		"false",
		"export DPS_FROM_SETUP=1",
	}
	var script bytes.Buffer
	if err := templates.Default().Render(&script, j); err != nil {
		t.Fatal(err)
	}
	j.Env = append(j.Env, [2]string{"DPS_FROM_SETUP", "1"})
	if !runFake(t, "setup", base, script.Bytes(), j) {
		t.Logf("script:\n%s", script.Bytes())
	}

	// The same script with the launch replaced by a reference to an unset
	// variable: set -u stops it.
	s := strings.Replace(script.String(), "status=$?", `echo "$DPS_NEVER_SET"; status=$?`, 1)
	cmd := exec.Command("bash", "-c", s)
	cmd.Env = []string{"PATH=" + filepath.Join(base, "bin") + ":/usr/bin:/bin", fakeOutEnv + "=" + filepath.Join(base, "out.json")}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "DPS_NEVER_SET: unbound variable") {
		t.Errorf("set -u is not in force after the setup lines: %v\n%s", err, out)
	}
}

// TestStopFile sends SIGUSR1 to the batch shell, as Slurm's B:USR1 warning
// does: the shell writes the stop file, the launch keeps running (it ends
// once it sees the file, here) and the script exits with its status.
func TestStopFile(t *testing.T) {
	base := t.TempDir()
	stop := filepath.Join(base, "stop here")
	j := minimalJob()
	j.RunDir = base
	j.StopFile = stop
	j.Launch = []string{"sh", "-c", `while [ ! -e "$1" ]; do sleep 0.05; done; exit 5`, "sh", stop}
	var script bytes.Buffer
	if err := templates.Default().Render(&script, j); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", script.String())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the trap is set before the launch starts
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the script did not end after SIGUSR1\n%s", &out)
	}
	if code := cmd.ProcessState.ExitCode(); code != 5 {
		t.Errorf("exit status %d, want the launch's 5\n%s", code, &out)
	}
	data, err := os.ReadFile(stop)
	if err != nil || !strings.HasPrefix(string(data), "time limit near: SIGUSR1 from Slurm") {
		t.Errorf("stop file: %q, %v", data, err)
	}
}
