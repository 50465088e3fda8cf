package scheduler

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/scheduler/slurmrest"
)

// TestJobDesc reads a script's #SBATCH lines, as templates/sbatch.tmpl
// writes them (values quoted when they need it), into the job description
// the REST backend sends.
func TestJobDesc(t *testing.T) {
	script := `#!/bin/bash
# A comment, then the options.
#SBATCH --job-name="name it's \"\$(touch x)\" # not a comment"
#SBATCH --partition debug
#SBATCH --account=science --qos=normal
#SBATCH --nodes=2-3
#SBATCH --ntasks=9
#SBATCH --ntasks-per-node=5
#SBATCH --cpus-per-task=2
#SBATCH --mem-per-cpu=1G
#SBATCH --time=1-00:30:00
#SBATCH --output="/runs/a b/logs/slurm-%j.out" # a comment
#SBATCH --error=/runs/logs/slurm-%j.out
#SBATCH --signal=B:USR1@300
#SBATCH --dependency=afterany:12
#SBATCH --ignore-pbs
#SBATCH --open-mode=append
#SBATCH --no-requeue
#SBATCH --constraint=haswell
#SBATCH --gres=gpu:2
#SBATCH --exclusive

echo start
#SBATCH --qos=ignored-after-a-command
`
	d, err := jobDesc([]byte(script))
	no := false
	want := slurmrest.JobDesc{
		Name: `name it's "$(touch x)" # not a comment`, Partition: "debug", Account: "science", QoS: "normal",
		Nodes: 2, MaxNodes: 3, Tasks: 9, TasksPerNode: 5, CPUsPerTask: 2, MemPerCPUMB: 1024, TimeLimit: 24*time.Hour + 30*time.Minute,
		Output: "/runs/a b/logs/slurm-%j.out", Error: "/runs/logs/slurm-%j.out", Signal: "B:USR1@300", Dependency: "afterany:12",
		OpenAppend: true, Requeue: &no, Constraint: "haswell", GRES: "gpu:2", Exclusive: "true",
	}
	if err != nil || !reflect.DeepEqual(d, want) {
		t.Errorf("jobDesc = %+v, %v\nwant %+v", d, err, want)
	}

	for _, tc := range []struct{ line, want string }{
		{"#SBATCH --mail-type=END", "#SBATCH --mail-type=END: the REST backend passes on only the long options --account, "},
		{"#SBATCH -p debug", "#SBATCH -p: the REST backend passes on only the long options"},
		{"#SBATCH --mem-per-cpu=lots", "#SBATCH --mem-per-cpu=lots: want megabytes"},
		{"#SBATCH --time=soon", "#SBATCH --time=soon: "},
		{"#SBATCH --partition", "#SBATCH --partition: no value"},
		{`#SBATCH --job-name="open`, `line 2: unterminated " quote`},
	} {
		_, err := jobDesc([]byte("#!/bin/bash\n" + tc.line + "\ntrue\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.line, err, tc.want)
		}
	}
}

// TestRESTEnvironment: a job submitted through slurmrestd gets this
// process's environment as sbatch would give it, without the token's
// variable, SLURM_JWT or this process's own job's SLURM_* variables.
func TestRESTEnvironment(t *testing.T) {
	t.Setenv("DPS_REST_TOKEN", "x.y.z")
	t.Setenv("SLURM_JWT", "a.b.c")
	t.Setenv("SLURM_JOB_ID", "5")
	t.Setenv("DPS_KEEP", "kept")
	env := (&REST{tokenEnv: "DPS_REST_TOKEN"}).environment()
	for _, k := range []string{"DPS_REST_TOKEN", "SLURM_JWT", "SLURM_JOB_ID"} {
		if _, ok := env[k]; ok {
			t.Errorf("the job's environment holds %s", k)
		}
	}
	if env["DPS_KEEP"] != "kept" || env["PATH"] == "" {
		t.Errorf("the job's environment lacks DPS_KEEP or PATH: %v", env)
	}
}
