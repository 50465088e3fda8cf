package templates_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/templates"
)

// After runs once the launch has ended, whatever its status, without the
// job's Slurm variables (but a slurmrestd token) and with the job's ID in
// DPSBATCH_ENDING_JOB; the script still exits with the launch's status.
func TestAfterRunsWithoutSlurmVariables(t *testing.T) {
	dir := t.TempDir()
	seen := filepath.Join(dir, "after.env")
	j := minimalJob()
	j.RunDir = dir
	j.Launch = []string{"bash", "-c", "exit 3"}
	j.After = []string{"bash", "-c", `env > "$1"`, "after", seen}
	t.Setenv("SLURM_JOB_ID", "4242")
	t.Setenv("SLURM_MEM_PER_CPU", "500")
	t.Setenv("SBATCH_PARTITION", "debug")
	t.Setenv("SLURM_JWT", "a-token")
	cmd, out, _ := startScript(t, j)
	if code := waitScript(t, cmd, out, time.Minute); code != 3 {
		t.Errorf("exit %d; want the launch's 3\n%s", code, out)
	}
	env, err := os.ReadFile(seen)
	if err != nil {
		t.Fatalf("After did not run: %v\n%s", err, out)
	}
	kept := strings.ReplaceAll(string(env), "\nSLURM_JWT=a-token\n", "\n")
	if !strings.Contains(string(env), "\nDPSBATCH_ENDING_JOB=4242\n") || strings.Contains(kept, "\nSLURM_") ||
		strings.Contains(kept, "\nSBATCH_") || kept == string(env) {
		t.Errorf("After's environment:\n%s", env)
	}
}

// A site template that never uses .After is refused for a job with one:
// its jobs would never submit the next.
func TestAfterNeedsTemplate(t *testing.T) {
	tmpl, err := templates.Parse("site.tmpl", "#!/bin/bash\n#SBATCH --ntasks={{.Tasks}}\ncd {{q .RunDir}} && exec {{args .Launch}}\n")
	if err != nil {
		t.Fatal(err)
	}
	j := minimalJob()
	j.After = []string{"/bin/dpsbatch", "resume", "--auto", "/runs/r"}
	var fe *templates.FieldError
	if err := tmpl.Render(&bytes.Buffer{}, j); !errors.As(err, &fe) || fe.Field != "After" {
		t.Errorf("Render: %v; want a FieldError on After", err)
	}
}
