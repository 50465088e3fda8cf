package site_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/site"
)

// twoPartitions has site-wide settings and a partition (b) overriding
// every one of them; line numbers in TestPartitionSettingsErrors count
// from it.
const twoPartitions = `runs_root: runs
account: science
qos: normal
constraint: intel
reservation: siteres
env: {OMP_NUM_THREADS: "1", LANG: C}
setup: [module load go]
sbatch_options: [--exclusive]
partitions:
  - name: a
    default: true
    cpus_per_node: 4
    nodes: 2
  - name: b
    cpus_per_node: 4
    nodes: 2
    account: physics
    qos: high
    constraint: "[rack1|rack2]&gpu*2"
    reservation: maint_1
    setup: [module load cuda]
    env:
      OMP_NUM_THREADS: 4
      CUDA_CACHE: "/tmp/a b"
`

func TestPartitionSettings(t *testing.T) {
	s, err, _ := loadText(t, twoPartitions)
	if err != nil {
		t.Fatal(err)
	}
	siteWide := site.Settings{Account: "science", QoS: "normal", Constraint: "intel", Reservation: "siteres",
		Sbatch: []string{"--exclusive", "--constraint=intel", "--reservation=siteres"},
		Setup:  []string{"module load go"},
		Env:    [][2]string{{"OMP_NUM_THREADS", "1"}, {"LANG", "C"}}}
	for _, name := range []string{"a", ""} {
		if got := s.Settings(name); !reflect.DeepEqual(got, siteWide) {
			t.Errorf("Settings(%q) = %+v, want the site's %+v", name, got, siteWide)
		}
	}
	want := site.Settings{Account: "physics", QoS: "high", Constraint: "[rack1|rack2]&gpu*2", Reservation: "maint_1",
		Sbatch: []string{"--exclusive", "--constraint=[rack1|rack2]&gpu*2", "--reservation=maint_1"},
		Setup:  []string{"module load go", "module load cuda"},
		Env:    [][2]string{{"OMP_NUM_THREADS", "4"}, {"LANG", "C"}, {"CUDA_CACHE", "/tmp/a b"}}}
	if got := s.Settings("b"); !reflect.DeepEqual(got, want) {
		t.Errorf("Settings(b) = %+v, want %+v", got, want)
	}
	// The caller may extend what it gets without changing the site.
	got := s.Settings("b")
	got.Sbatch = append(got.Sbatch, "--hold")
	got.Env = append(got.Env, [2]string{"X", "y"})
	if again := s.Settings("b"); !reflect.DeepEqual(again, want) {
		t.Errorf("Settings(b) after the caller extended it = %+v", again)
	}
	if f := site.Features("[rack1|rack2]&gpu*2"); !reflect.DeepEqual(f, []string{"rack1", "rack2", "gpu"}) {
		t.Errorf("Features = %q", f)
	}
}

func TestPartitionSettingsErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, new string
		want     string
	}{
		{"constraint with a space", `"[rack1|rack2]&gpu*2"`, `"intel ib"`,
			`site.yaml:19: partitions[1].constraint: "intel ib": expected node features joined by & or |`},
		{"constraint with a quote", `"[rack1|rack2]&gpu*2"`, `"a'b"`, `site.yaml:19: partitions[1].constraint:`},
		{"constraint of operators only", `"[rack1|rack2]&gpu*2"`, `"&|"`, `site.yaml:19: partitions[1].constraint:`},
		{"site constraint with a hash", "constraint: intel", `constraint: "intel#x"`, `site.yaml:4: constraint: "intel#x"`},
		{"reservation with a semicolon", "maint_1", "maint;x", `site.yaml:20: partitions[1].reservation: "maint;x": expected a reservation name`},
		{"account with a space", "account: physics", `account: "phys ics"`, `site.yaml:17: partitions[1].account: expected a single word`},
		{"qos empty", "qos: high", `qos: ""`, `site.yaml:18: partitions[1].qos: must not be empty`},
		{"setup with a newline", "[module load cuda]", `["a\nb"]`, `site.yaml:21: partitions[1].setup[0]: must be one line`},
		{"env bad name", "CUDA_CACHE:", "2CUDA:", `site.yaml:24: partitions[1].env.2CUDA: expected a shell variable name`},
		{"env dpsbatch name", "CUDA_CACHE:", "DPSBATCH_RUN:", `site.yaml:24: partitions[1].env.DPSBATCH_RUN: DPSBATCH_ variables are set by dpsbatch itself`},
		{"env value with a newline", `"/tmp/a b"`, `"a\nb"`, `site.yaml:24: partitions[1].env.CUDA_CACHE: must be one line`},
		{"env not a map", "env: {OMP_NUM_THREADS: \"1\", LANG: C}", "env: [a]", `site.yaml:6: env: expected a map`},
		{"constraint in sbatch_options", "[--exclusive]", "[--constraint=x]", `site.yaml:8: sbatch_options[0]: --constraint is set by dpsbatch itself: use the site file's constraint key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(twoPartitions, tc.old) {
				t.Fatalf("%q not in the site file", tc.old)
			}
			_, err, _ := loadText(t, strings.Replace(twoPartitions, tc.old, tc.new, 1))
			wantOneError(t, err, tc.want)
		})
	}
}
