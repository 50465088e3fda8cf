package jobs

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/site"
)

// partitionSettings adds site-wide settings to the test site, and its
// own to the long partition.
const partitionSettings = `account: science
qos: normal
setup: [module load go]
env: {OMP_NUM_THREADS: "1", LANG: C}
`

const longSettings = `    account: physics
    qos: high
    constraint: gpu&fast
    reservation: maint_1
    setup: ["module load cuda"]
    env: {OMP_NUM_THREADS: "4", CUDA_CACHE: "/tmp/a b"}
`

// A job on a partition with its own account, QoS, constraint,
// reservation, setup lines and environment carries them; a job on one
// without carries the site's.
func TestScriptPartitionSettings(t *testing.T) {
	e := newEnv(t, 2)
	text := partitionSettings + strings.Replace(siteYAML, "    max_time: infinite\n", "    max_time: infinite\n"+longSettings, 1)
	s, err := site.Parse(filepath.Join(t.TempDir(), "site.yaml"), fmt.Appendf(nil, text, e.root))
	if err != nil {
		t.Fatal(err)
	}
	e.site = s
	for _, tc := range []struct {
		partition   string
		want, never []string
	}{
		{"long", []string{"#SBATCH --account=physics", "#SBATCH --qos=high", `#SBATCH "--constraint=gpu&fast"`,
			"#SBATCH --reservation=maint_1", "module load go\nmodule load cuda\n",
			"export OMP_NUM_THREADS=4\nexport LANG=C\nexport CUDA_CACHE='/tmp/a b'\nexport DPSBATCH_RUN="},
			[]string{"science", "normal", "OMP_NUM_THREADS=1"}},
		{"debug", []string{"#SBATCH --account=science", "#SBATCH --qos=normal", "module load go\n",
			"export OMP_NUM_THREADS=1\nexport LANG=C\nexport DPSBATCH_RUN="},
			[]string{"physics", "high", "constraint", "reservation", "cuda", "CUDA_CACHE"}},
	} {
		t.Run(tc.partition, func(t *testing.T) {
			o := e.opts("run-" + tc.partition)
			o.Request = rundir.Request{Partition: tc.partition}
			sub, err := Submit(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			script := string(readAll(t, sub.Script))
			for _, w := range tc.want {
				if !strings.Contains(script, w) {
					t.Errorf("script lacks %q:\n%s", w, script)
				}
			}
			for _, w := range tc.never {
				if strings.Contains(script, w) {
					t.Errorf("script holds %q:\n%s", w, script)
				}
			}
		})
	}
}
