package templates_test

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/templates"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the rendered scripts")

// minimalJob has only the required fields.
func minimalJob() templates.Job {
	return templates.Job{
		Name:   "ccd-run",
		RunDir: "/runs/ccd-run",
		Tasks:  5,
		Launch: []string{"srun", "--mpi=none", "/opt/dpsbatch/bin/dpsbatch", "run", "--run-dir", "/runs/ccd-run"},
	}
}

// fullJob has every field set, with ordinary values.
func fullJob() templates.Job {
	return templates.Job{
		Name: "ccdproc-2024", RunID: "ccdproc-2024-r7", RunDir: "/scratch/runs/ccdproc-2024",
		Partition: "debug", Account: "science", QoS: "normal",
		Nodes: 2, Tasks: 9, TasksPerNode: 5, CPUsPerTask: 1, MemPerCPUMB: 400, GPUsPerTask: 2,
		Time: "1-02:00:00", Output: "/scratch/runs/ccdproc-2024/logs/slurm-%j.out",
		Signal: "B:USR1@300", StopFile: "/scratch/runs/ccd 2024/stop-attempt-2", Dependency: "afterany:1234",
		Extra: []string{"--exclusive", "--constraint=haswell", "--comment=nightly batch"},
		Setup: []string{"module load openmpi/4.1", `source "$HOME/venv/bin/activate"`, `[ -n "$UNSET_BY_SITE" ] || true`},
		Env:   [][2]string{{"OMP_NUM_THREADS", "1"}, {"DPSBATCH_BROKER", "nats://head:4222"}},
		Launch: []string{"srun", "--mpi=none", "--kill-on-bad-exit=1", "/opt/dpsbatch/bin/dpsbatch", "run",
			"--run-dir", "/scratch/runs/ccdproc-2024", "--attempt", "3"},
		Attempt: 3,
	}
}

// hostileJob has every string field hostile, as far as each may be: the
// fields that go on #SBATCH lines hold no newline.
func hostileJob(marks string) templates.Job {
	sh := "it's \"$(touch " + marks + "/a)\" `touch " + marks + "/b`; touch " + marks + "/c && \\ * ?"
	multi := sh + "\ntouch " + marks + "/d\n#SBATCH --job-name=evil\n#PBS -N evil\n#BSUB -J evil"
	return templates.Job{
		Name: "name " + sh + " # hetjob PackJob", RunID: "run " + multi, RunDir: "/runs/" + multi,
		Partition: "part " + sh, Account: "acct " + sh, QoS: "qos " + sh,
		Nodes: 1, Tasks: 1,
		// Output holds no backslash: Render refuses one (TestOutputPattern).
		Time: "infinite", Output: "/runs/out " + strings.ReplaceAll(sh, `\`, "") + " %j.out",
		Signal: "USR1@300 " + sh, Dependency: "afterany:1 " + sh,
		Extra:  []string{"--comment=" + sh, "--exclusive"},
		Setup:  []string{"# the site's lines are trusted and placed verbatim"},
		Env:    [][2]string{{"DPS_HOSTILE", multi}},
		Launch: []string{"srun", "--mpi=none", multi, "", sh, "$HOME", "-n"},
	}
}

// stepsBrokerJob is a production's job: two steps and a broker.
func stepsBrokerJob() templates.Job {
	j := minimalJob()
	j.Name, j.RunID, j.RunDir, j.Tasks, j.Attempt = "nightly", "nightly", "/runs/nightly", 8, 1
	j.Launch = nil
	j.Broker = []string{"/opt/dpsbatch/bin/dpsbatch", "broker", "--run-dir", "/runs/nightly"}
	j.Steps = []templates.Step{
		{Name: "detect", Launch: []string{"srun", "--mpi=none", "--ntasks=5", "--exact", "/opt/dpsbatch/bin/dpsbatch", "run", "--pipeline", "detect"}},
		{Name: "association", Launch: []string{"srun", "--mpi=none", "--ntasks=3", "--exact", "/opt/dpsbatch/bin/dpsbatch", "run", "--pipeline", "association"}},
	}
	return j
}

// stepsStopJob is a production's job of three steps with a stop file and
// no broker.
func stepsStopJob() templates.Job {
	j := fullJob()
	j.Launch = nil
	j.Steps = []templates.Step{
		{Name: "detect", Launch: []string{"srun", "--ntasks=3", "/opt/dpsbatch/bin/dpsbatch", "run", "--stop-file", j.StopFile}},
		{Name: "association", Launch: []string{"srun", "--ntasks=2", "/opt/dpsbatch/bin/dpsbatch", "run", "--stop-file", j.StopFile}},
		{Name: "moving objects", Launch: []string{"srun", "--ntasks=4", "/opt/dpsbatch/bin/dpsbatch", "run", "--stop-file", j.StopFile}},
	}
	return j
}

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		job  templates.Job
	}{
		{"minimal", minimalJob()},
		{"full", fullJob()},
		{"hostile", hostileJob("/tmp/marks")},
		{"steps-broker", stepsBrokerJob()},
		{"steps-stopfile", stepsStopJob()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := templates.Default().Render(&out, tc.job); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./templates -update to create it)", err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("%s differs from the rendered script (go test ./templates -update rewrites it); got:\n%s", path, out.Bytes())
			}
			if err := exec.Command("bash", "-n", "-c", out.String()).Run(); err != nil {
				t.Errorf("bash -n: %v", err)
			}
		})
	}
}

// TestGoldenDirectives checks what the golden scripts say about sbatch:
// #SBATCH lines only before the first command, one per set field, and
// none for what is left out.
func TestGoldenDirectives(t *testing.T) {
	directives := func(job templates.Job) []string {
		var out bytes.Buffer
		if err := templates.Default().Render(&out, job); err != nil {
			t.Fatal(err)
		}
		var ds []string
		commands := false
		for _, line := range strings.Split(out.String(), "\n")[1:] {
			switch {
			case strings.HasPrefix(line, "#SBATCH"):
				if commands {
					t.Errorf("an #SBATCH line after the first command: %q", line)
				}
				ds = append(ds, strings.Fields(line)[1])
			case strings.TrimSpace(line) != "" && !strings.HasPrefix(strings.TrimSpace(line), "#"):
				commands = true
			}
		}
		return ds
	}
	got := strings.Join(directives(minimalJob()), " ")
	if want := "--job-name=ccd-run --ntasks=5 --ignore-pbs --open-mode=append"; got != want {
		t.Errorf("minimal job directives:\n got %s\nwant %s", got, want)
	}
	got = strings.Join(directives(fullJob()), " ")
	want := "--job-name=ccdproc-2024 --partition=debug --account=science --qos=normal --nodes=2 --ntasks=9 " +
		"--ntasks-per-node=5 --cpus-per-task=1 --mem-per-cpu=400M --gpus-per-task=2 --time=1-02:00:00 " +
		"--output=/scratch/runs/ccdproc-2024/logs/slurm-%j.out --error=/scratch/runs/ccdproc-2024/logs/slurm-%j.out " +
		"--signal=B:USR1@300 --dependency=afterany:1234 --ignore-pbs --open-mode=append --exclusive --constraint=haswell \"--comment=nightly"
	if got != want {
		t.Errorf("full job directives:\n got %s\nwant %s", got, want)
	}
	j := fullJob()
	j.Time = "UNLIMITED"
	if got := strings.Join(directives(j), " "); strings.Contains(got, "--time") {
		t.Errorf("an unlimited time is written: %s", got)
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":            "''",
		"plain/x-1.2": "plain/x-1.2",
		"--mpi=none":  "'--mpi=none'",
		"a b":         "'a b'",
		"it's":        `'it'\''s'`,
		"a\n#b":       "'a'\"\n\"'#b'",
		"~":           "'~'",
		"%j@host:1,2": "%j@host:1,2",
	} {
		if got := templates.Quote(in); got != want {
			t.Errorf("Quote(%q) = %q, want %q", in, got, want)
		}
	}
	// Whatever the value, bash reads back exactly it, and no line of the
	// quoted text starts with #.
	values := []string{"", " ", "'", "''", `"`, `\`, `\'`, "a'b\"c", "$(touch x)", "`touch x`", "$HOME ${PATH}",
		"; && || | > < & !", "* ? [a-z] {a,b} ~root", "\n", "\n\n", "a\n#SBATCH --x\n#PBS -N y\n", "\t\x1b\x7f",
		"naïve ☃", "-n", "--help", "'\n'", "\\\n"}
	var script strings.Builder
	for _, v := range values {
		q := templates.Quote(v)
		for _, line := range strings.Split(q, "\n")[1:] {
			if strings.HasPrefix(line, "#") {
				t.Errorf("Quote(%q) has a line starting with #: %q", v, q)
			}
		}
		script.WriteString("printf '%s\\0' " + q + "\n")
	}
	dir := t.TempDir()
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash: %v", err)
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("a value ran a command (it created %s)", left[0].Name())
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(got) != len(values) {
		t.Fatalf("bash printed %d values, want %d: %q", len(got), len(values), out)
	}
	for i, v := range values {
		if got[i] != v {
			t.Errorf("bash read Quote(%q) = %s back as %q", v, templates.Quote(v), got[i])
		}
	}
}

func TestDirective(t *testing.T) {
	for in, want := range map[string]string{
		"debug":              "debug",
		"USR1@300":           "USR1@300",
		"afterany:1,2":       "afterany:1,2",
		"a=b":                "a=b",
		"":                   `""`,
		"a b":                `"a b"`,
		`say "hi"`:           `"say \"hi\""`,
		`back\slash`:         `"back\\slash"`,
		"it's # not":         `"it's # not"`,
		"x-hetjob":           `"x-het\job"`,
		"PackJob and HETJOB": `"Pack\Job and HET\JOB"`,
		"hetjo":              "hetjo",
		"tab\there":          "\"tab\there\"",
	} {
		got, err := templates.Directive("Name", in)
		if err != nil || got != want {
			t.Errorf("Directive(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"a\nb", "a\rb", "a\x00b", "\n"} {
		got, err := templates.Directive("Extra[3]", in)
		var fe *templates.FieldError
		if !errors.As(err, &fe) || fe.Field != "Extra[3]" || !errors.Is(err, templates.ErrInvalid) {
			t.Errorf("Directive(%q) = %q, %v; want a FieldError for Extra[3]", in, got, err)
			continue
		}
		if !strings.Contains(err.Error(), "templates: Job.Extra[3]: ") || !strings.Contains(err.Error(), "#SBATCH") {
			t.Errorf("Directive(%q): unclear error %q", in, err)
		}
	}
}

// TestRenderRejects checks that every field that cannot be placed, and
// every missing required field, is one error naming the field, and that
// nothing is written.
func TestRenderRejects(t *testing.T) {
	for _, tc := range []struct {
		field string
		edit  func(*templates.Job)
	}{
		{"Name", func(j *templates.Job) { j.Name = "" }},
		{"RunDir", func(j *templates.Job) { j.RunDir = "" }},
		{"RunDir", func(j *templates.Job) { j.RunDir = "runs/relative" }},
		{"Tasks", func(j *templates.Job) { j.Tasks = 0 }},
		{"Tasks", func(j *templates.Job) { j.Tasks = -1 }},
		{"Nodes", func(j *templates.Job) { j.Nodes = -2 }},
		{"MemPerCPUMB", func(j *templates.Job) { j.MemPerCPUMB = -1 }},
		{"GPUsPerTask", func(j *templates.Job) { j.GPUsPerTask = -1 }},
		{"Launch", func(j *templates.Job) { j.Launch = nil }},
		{"Launch", func(j *templates.Job) { j.Launch = []string{"", "x"} }},
		{"Time", func(j *templates.Job) { j.Time = "90m" }},
		{"Time", func(j *templates.Job) { j.Time = "01:00:00; touch x" }},
		{"Time", func(j *templates.Job) { j.Time = "soon" }},
		{"Name", func(j *templates.Job) { j.Name = "two\nlines" }},
		{"Partition", func(j *templates.Job) { j.Partition = "debug\n#SBATCH --uid=0" }},
		{"Account", func(j *templates.Job) { j.Account = "a\nb" }},
		{"QoS", func(j *templates.Job) { j.QoS = "\n" }},
		{"Output", func(j *templates.Job) { j.Output = "/x\n/y" }},
		{"Signal", func(j *templates.Job) { j.Signal = "USR1@300\ntouch x" }},
		{"Dependency", func(j *templates.Job) { j.Dependency = "afterany:1\n" }},
		{"Extra[1]", func(j *templates.Job) { j.Extra = []string{"--exclusive", "--comment=a\nb"} }},
		{"Extra[0]", func(j *templates.Job) { j.Extra = []string{"-N 2"} }},
		{"Extra[0]", func(j *templates.Job) { j.Extra = []string{"hetjob"} }},
		{"Extra[0]", func(j *templates.Job) { j.Extra = []string{"--"} }},
		{"Env[0] name", func(j *templates.Job) { j.Env = [][2]string{{"A B", "x"}} }},
		{"Env[1] name", func(j *templates.Job) { j.Env = [][2]string{{"A", "x"}, {"X=$(touch y)", "x"}} }},
		{"Env[0] name", func(j *templates.Job) { j.Env = [][2]string{{"1A", "x"}} }},
		{"Env[0] value", func(j *templates.Job) { j.Env = [][2]string{{"A", "x\x00y"}} }},
		{"RunID", func(j *templates.Job) { j.RunID = "r\r\n1" }},
		{"Launch[2]", func(j *templates.Job) { j.Launch = []string{"srun", "x", "a\x00b"} }},
		{"Setup[0]", func(j *templates.Job) { j.Setup = []string{"module load x\r"} }},
		{"Steps", func(j *templates.Job) { j.Steps = stepsBrokerJob().Steps }},
		{"Launch", func(j *templates.Job) { j.Launch, j.Steps = nil, []templates.Step{} }},
		{"Steps[1].Name", func(j *templates.Job) {
			j.Launch, j.Steps = nil, []templates.Step{{Name: "a", Launch: []string{"true"}}, {Launch: []string{"true"}}}
		}},
		{"Steps[0].Launch", func(j *templates.Job) { j.Launch, j.Steps = nil, []templates.Step{{Name: "a"}} }},
		{"Steps[0].Launch", func(j *templates.Job) {
			j.Launch, j.Steps = nil, []templates.Step{{Name: "a", Launch: []string{"", "x"}}}
		}},
		{"Steps[1].Launch[2]", func(j *templates.Job) {
			j.Launch, j.Steps = nil, []templates.Step{{Name: "a", Launch: []string{"true"}}, {Name: "b", Launch: []string{"srun", "x", "a\x00b"}}}
		}},
		{"Steps[0].Name", func(j *templates.Job) {
			j.Launch, j.Steps = nil, []templates.Step{{Name: "a\rb", Launch: []string{"true"}}}
		}},
		{"Broker", func(j *templates.Job) { j.Broker = []string{"", "x"} }},
		{"Broker[1]", func(j *templates.Job) { j.Broker = []string{"nats-server", "a\x00"} }},
	} {
		j := fullJob()
		tc.edit(&j)
		var out bytes.Buffer
		err := templates.Default().Render(&out, j)
		var fe *templates.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("want an error for Job.%s, got %v", tc.field, err)
			continue
		}
		if !errors.Is(err, templates.ErrInvalid) || !strings.HasPrefix(err.Error(), "templates: Job."+tc.field+": ") ||
			strings.Count(err.Error(), "\n") > 0 {
			t.Errorf("Job.%s: unclear error %q", tc.field, err)
		}
		if out.Len() > 0 {
			t.Errorf("Job.%s: wrote %d bytes despite the error", tc.field, out.Len())
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}

	// A site's own template: its own directives, the same functions.
	path := write("site.tmpl", `#!/bin/bash
#SBATCH --job-name={{directive "Name" .Name}}
#SBATCH --ntasks={{.Tasks}}
#SBATCH --gres=gpu:1
#SBATCH --open-mode=append
{{range .Setup}}{{.}}
{{end -}}
cd {{q .RunDir}} && exec {{args .Launch}}
`)
	tmpl, err := templates.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.Name() != path {
		t.Errorf("Name() = %q, want %q", tmpl.Name(), path)
	}
	var out bytes.Buffer
	j := minimalJob()
	j.Name = "gpu job"
	j.Setup = []string{"module load cuda"}
	if err := tmpl.Render(&out, j); err != nil {
		t.Fatal(err)
	}
	want := `#!/bin/bash
#SBATCH --job-name="gpu job"
#SBATCH --ntasks=5
#SBATCH --gres=gpu:1
#SBATCH --open-mode=append
module load cuda
cd /runs/ccd-run && exec srun '--mpi=none' /opt/dpsbatch/bin/dpsbatch run --run-dir /runs/ccd-run
`
	if out.String() != want {
		t.Errorf("site template rendered:\n%s\nwant:\n%s", out.String(), want)
	}
	// The job is checked whatever the template.
	j.Name = "a\nb"
	if err := tmpl.Render(&out, j); err == nil || !strings.Contains(err.Error(), "Job.Name") {
		t.Errorf("site template with a newline in Name: %v", err)
	}

	for _, tc := range []struct {
		name, text, want string
	}{
		{"syntax.tmpl", "#!/bin/bash\n#SBATCH --ntasks={{.Tasks}}\n{{end}}\n", "syntax.tmpl:3: unexpected {{end}}"},
		{"eof.tmpl", "#!/bin/bash\n#SBATCH --ntasks={{.Tasks}}\n\n{{if .Account}}\n", "eof.tmpl:5: unexpected EOF"},
		{"func.tmpl", "#!/bin/bash\n\n\n{{quote .Name}}\n", `func.tmpl:4: function "quote" not defined`},
		{"field.tmpl", "#!/bin/bash\n#SBATCH --ntasks={{.Tasks}}\n{{q .Nmae}}\n", `field.tmpl:3: unknown Job field Nmae (did you mean "Name"?)`},
		{"shebang.tmpl", "#SBATCH --ntasks={{.Tasks}}\n", "shebang.tmpl:1: the script must start with #!"},
		{"args.tmpl", "#!/bin/bash\n{{args .Name}}\n", "args.tmpl:2:"},
		// Slurm would truncate the log of a requeued job's earlier start.
		{"truncate.tmpl", "#!/bin/bash\n#SBATCH --ntasks={{.Tasks}}\n#SBATCH --open-mode=truncate\n{{args .Launch}}\n",
			`truncate.tmpl: no "#SBATCH --open-mode=append" line: without it Slurm truncates the job's log`},
		{"noappend.tmpl", "#!/bin/bash\n#SBATCH --ntasks={{.Tasks}}\n# --open-mode=append\n{{args .Launch}}\n",
			`noappend.tmpl: no "#SBATCH --open-mode=append" line`},
	} {
		path := write(tc.name, tc.text)
		_, err := templates.Load(path)
		if err == nil || !strings.HasPrefix(err.Error(), "templates: "+filepath.Join(dir, tc.want)) ||
			!errors.Is(err, templates.ErrInvalid) {
			t.Errorf("Load(%s): got %v, want an error starting %q", tc.name, err, "templates: "+filepath.Join(dir, tc.want))
		}
	}
	if _, err := templates.Load(filepath.Join(dir, "missing.tmpl")); err == nil || !strings.Contains(err.Error(), "missing.tmpl") {
		t.Errorf("Load of a missing file: %v", err)
	}
	if _, err := templates.Parse("inline", "#!/bin/sh\n{{.Name}\n"); err == nil || !strings.HasPrefix(err.Error(), "templates: inline:2: ") {
		t.Errorf("Parse with a bad action: %v", err)
	}
}

// TestOutputPattern checks that a path with % reaches Slurm's --output
// pattern as %%, and that an Output with a backslash (which turns off
// Slurm's patterns) is refused naming the field.
func TestOutputPattern(t *testing.T) {
	if got, want := templates.EscapePattern("/runs/100% done/%j"), "/runs/100%% done/%%j"; got != want {
		t.Errorf("EscapePattern: %q, want %q", got, want)
	}
	j := templates.Job{Name: "n", RunDir: "/r", Tasks: 1, Launch: []string{"true"}, Output: `/runs/a\b/slurm-%j.out`}
	err := templates.Default().Render(io.Discard, j)
	var fe *templates.FieldError
	if !errors.As(err, &fe) || fe.Field != "Output" || !strings.Contains(err.Error(), "backslash") {
		t.Errorf("Output with a backslash: %v", err)
	}
}
