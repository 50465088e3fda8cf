package templates_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/templates"
)

// The tests here run scripts of several steps with bash, the steps and the
// broker being small shell commands; cluster_test.go runs one under Slurm.

// startScript renders j and starts it with bash in its own process group
// (killed when the test ends), its output in out.
func startScript(t *testing.T, j templates.Job) (*exec.Cmd, *bytes.Buffer, string) {
	t.Helper()
	var script bytes.Buffer
	if err := templates.Default().Render(&script, j); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", script.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// A step the shell leaves running (Slurm would end it with the job)
	// holds the output open: stop reading a second after the shell ends.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) })
	return cmd, out, script.String()
}

// waitScript waits for the script to end and returns its exit status.
func waitScript(t *testing.T, cmd *exec.Cmd, out *bytes.Buffer, limit time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(limit):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Fatalf("the script did not end within %v; output:\n%s", limit, out)
	}
	return cmd.ProcessState.ExitCode()
}

var brokerPID = regexp.MustCompile(`dpsbatch: broker started, pid (\d+) `)

// brokerGone checks that the log names the broker's pid and that no
// process has it any more.
func brokerGone(t *testing.T, log string) {
	t.Helper()
	m := brokerPID.FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("the log does not say the broker started:\n%s", log)
	}
	pid, _ := strconv.Atoi(m[1])
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the broker (pid %d) is still there (kill -0: %v); log:\n%s", pid, err, log)
	}
	if !strings.Contains(log, "dpsbatch: broker stopped, status ") {
		t.Errorf("the log does not say the broker stopped:\n%s", log)
	}
}

// TestStepsRun runs three steps at once with a broker: the second fails
// at once, the first ends later all the same, the third fails too; the
// script exits with the second's status (the first non-zero in step
// order), the log names each step's start and end, and the broker is
// gone.
func TestStepsRun(t *testing.T) {
	base := t.TempDir()
	j := minimalJob()
	j.RunDir = base
	j.Launch = nil
	j.Broker = []string{"sleep", "300"}
	j.Steps = []templates.Step{
		// first waits for the second to have ended: they run at once.
		{Name: "first", Launch: []string{"sh", "-c", `while [ ! -e second.done ]; do sleep 0.05; done; touch first.done`}},
		{Name: "second", Launch: []string{"sh", "-c", `touch second.done; exit 3`}},
		{Name: "third one", Launch: []string{"sh", "-c", `while [ ! -e first.done ]; do sleep 0.05; done; exit 4`}},
	}
	cmd, out, _ := startScript(t, j)
	if code := waitScript(t, cmd, out, 20*time.Second); code != 3 {
		t.Errorf("exit status %d, want 3 (the second step's)\n%s", code, out)
	}
	log := out.String()
	for _, want := range []string{
		"dpsbatch: step first starting (", "dpsbatch: step second starting (", `dpsbatch: step third\ one starting (`,
		"dpsbatch: step first exited 0 (", "dpsbatch: step second exited 3 (", `dpsbatch: step third\ one exited 4 (`,
		"the steps exited with status 3\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not say %q:\n%s", want, log)
		}
	}
	// The log tells the steps' ends in the order they happened.
	if a, b := strings.Index(log, "step second exited"), strings.Index(log, "step first exited"); a > b {
		t.Errorf("the second step's end is logged after the first's:\n%s", log)
	}
	if _, err := os.Stat(filepath.Join(base, "first.done")); err != nil {
		t.Errorf("the first step did not finish after the second failed: %v", err)
	}
	brokerGone(t, log)
	// The broker was stopped before the last line.
	if a, b := strings.Index(log, "broker stopped"), strings.Index(log, "the steps exited"); a < 0 || a > b {
		t.Errorf("the broker is not stopped before the last line:\n%s", log)
	}
}

// TestStepsAllSucceed: every step exits 0, so does the script; no broker.
func TestStepsAllSucceed(t *testing.T) {
	j := minimalJob()
	j.RunDir = t.TempDir()
	j.Launch = nil
	j.Steps = []templates.Step{{Name: "a", Launch: []string{"true"}}, {Name: "b", Launch: []string{"sh", "-c", "sleep 0.2"}}}
	cmd, out, _ := startScript(t, j)
	if code := waitScript(t, cmd, out, 20*time.Second); code != 0 {
		t.Errorf("exit status %d, want 0\n%s", code, out)
	}
	if strings.Contains(out.String(), "broker") {
		t.Errorf("a job without a broker talks of one:\n%s", out)
	}
}

// TestStepsStopFile sends SIGUSR1 to the batch shell of three steps that
// each run until they see the stop file: the shell writes it, every step
// ends, and the script exits with the first non-zero status.
func TestStepsStopFile(t *testing.T) {
	base := t.TempDir()
	stop := filepath.Join(base, "stop here")
	j := minimalJob()
	j.RunDir = base
	j.StopFile = stop
	j.Launch = nil
	watch := `while [ ! -e "$1" ]; do sleep 0.05; done; exit "$2"`
	j.Steps = []templates.Step{
		{Name: "a", Launch: []string{"sh", "-c", watch, "sh", stop, "0"}},
		{Name: "b", Launch: []string{"sh", "-c", watch, "sh", stop, "6"}},
		{Name: "c", Launch: []string{"sh", "-c", watch, "sh", stop, "5"}},
	}
	cmd, out, _ := startScript(t, j)
	time.Sleep(300 * time.Millisecond) // the trap is set before the steps start
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if code := waitScript(t, cmd, out, 20*time.Second); code != 6 {
		t.Errorf("exit status %d, want 6 (step b's)\n%s", code, out)
	}
	data, err := os.ReadFile(stop)
	if err != nil || strings.Count(string(data), "time limit near: SIGUSR1 from Slurm") != 1 {
		t.Errorf("stop file: %q, %v", data, err)
	}
	for _, want := range []string{"step a exited 0", "step b exited 6", "step c exited 5"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, out)
		}
	}
}

// TestBrokerStoppedOnTerm sends SIGTERM to the batch shell while its step
// runs: the shell exits 143 and the broker is gone. (The step is left to
// Slurm, which ends every step of a job when its batch shell ends.)
func TestBrokerStoppedOnTerm(t *testing.T) {
	for _, steps := range []bool{true, false} {
		j := minimalJob()
		j.RunDir = t.TempDir()
		j.Broker = []string{"sleep", "300"}
		j.Launch = []string{"sleep", "300"}
		if steps {
			j.Launch, j.Steps = nil, []templates.Step{{Name: "long", Launch: []string{"sleep", "300"}}}
		}
		cmd, out, _ := startScript(t, j)
		time.Sleep(300 * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := waitScript(t, cmd, out, 20*time.Second); code != 143 {
			t.Errorf("steps %v: exit status %d, want 143\n%s", steps, code, out)
		}
		brokerGone(t, out.String())
	}
}

// TestBrokerGoneOnEarlyExit: the broker starts only once the script is in
// its run directory; a script that cannot enter it starts none.
func TestBrokerGoneOnEarlyExit(t *testing.T) {
	j := stepsBrokerJob()
	j.RunDir = filepath.Join(t.TempDir(), "missing")
	j.Broker = []string{"sleep", "300"}
	cmd, out, _ := startScript(t, j)
	if code := waitScript(t, cmd, out, 20*time.Second); code != 1 {
		t.Errorf("exit status %d, want 1\n%s", code, out)
	}
	if strings.Contains(out.String(), "broker started") {
		t.Errorf("the broker started although the script could not enter its run directory:\n%s", out)
	}
}

// TestBrokerEndedEarly: a broker that ends by itself before the steps is
// reported with its status, and the steps' status is the script's.
func TestBrokerEndedEarly(t *testing.T) {
	j := minimalJob()
	j.RunDir = t.TempDir()
	j.Broker = []string{"sh", "-c", "exit 9"}
	j.Launch = []string{"sh", "-c", "sleep 0.3; exit 2"}
	cmd, out, _ := startScript(t, j)
	if code := waitScript(t, cmd, out, 20*time.Second); code != 2 {
		t.Errorf("exit status %d, want the launch's 2\n%s", code, out)
	}
	if !strings.Contains(out.String(), "dpsbatch: broker stopped, status 9 (") {
		t.Errorf("the log does not give the broker's own status 9:\n%s", out)
	}
}

// TestSiteTemplateWithoutSteps: a site template that never mentions
// .Steps (or .Broker, or .GPUsPerTask) cannot render a job that has them.
func TestSiteTemplateWithoutSteps(t *testing.T) {
	tmpl, err := templates.Parse("site.tmpl", "#!/bin/bash\n#SBATCH --ntasks={{.Tasks}}\ncd {{q .RunDir}} && exec {{args .Launch}}\n")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = tmpl.Render(&out, stepsBrokerJob())
	var fe *templates.FieldError
	if !errors.As(err, &fe) || fe.Field != "Steps" || !strings.Contains(err.Error(), "site.tmpl never uses .Steps") {
		t.Errorf("Render of steps with a template without them: %v", err)
	}
	j := minimalJob()
	j.Broker = []string{"nats-server"}
	if err := tmpl.Render(&out, j); !errors.As(err, &fe) || fe.Field != "Broker" {
		t.Errorf("Render of a broker with a template without one: %v", err)
	}
	j = minimalJob()
	j.GPUsPerTask = 1
	if err := tmpl.Render(&out, j); !errors.As(err, &fe) || fe.Field != "GPUsPerTask" || !strings.Contains(err.Error(), "would not run on GPUs") {
		t.Errorf("Render of GPUs with a template without them: %v", err)
	}
	if out.Len() > 0 {
		t.Errorf("wrote %d bytes despite the errors", out.Len())
	}
	// Mentioned through $ in a range, it counts.
	tmpl, err = templates.Parse("site2.tmpl", "#!/bin/bash\n{{range $.Steps}}{{args .Launch}} &\n{{end}}{{with .Broker}}{{args .}} &{{end}}\n{{args .Launch}}\nwait\n")
	if err != nil {
		t.Fatal(err)
	}
	if err := tmpl.Render(&out, stepsBrokerJob()); err != nil {
		t.Errorf("Render with a template using $.Steps: %v", err)
	}
}
