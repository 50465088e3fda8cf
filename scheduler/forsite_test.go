package scheduler_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/site"
)

// TestForSite: the site file's scheduler section chooses the backend; a
// site option the REST backend cannot carry is refused at once, naming
// the file and key.
func TestForSite(t *testing.T) {
	parse := func(extra string) *site.Site {
		t.Helper()
		s, err := site.Parse("/etc/dps/site.yaml", []byte("runs_root: /runs\npartitions:\n  - {name: debug, cpus_per_node: 4, nodes: 2}\n"+extra))
		if err != nil {
			t.Fatal(err)
		}
		s.Path = "/etc/dps/site.yaml"
		return s
	}
	rest := "scheduler: {backend: rest, url: 'unix:/run/slurmrestd.sock'}\n"
	if b, err := scheduler.ForSite(parse(rest + "sbatch_options: [--exclusive]\n")); err != nil {
		t.Errorf("ForSite(rest) = %v", err)
	} else if _, ok := b.(*scheduler.REST); !ok {
		t.Errorf("ForSite(rest) = %T, want *scheduler.REST", b)
	}
	_, err := scheduler.ForSite(parse(rest + "sbatch_options: [--mail-type=END]\n"))
	if !errors.Is(err, conf.ErrInvalid) || !strings.HasPrefix(err.Error(), "/etc/dps/site.yaml: sbatch_options: scheduler: rest: the job script's #SBATCH --mail-type=END") {
		t.Errorf("ForSite with an option REST cannot carry = %v", err)
	}
	if b, err := scheduler.ForSite(parse("sbatch_options: [--mail-type=END]\n")); err == nil {
		if _, ok := b.(*scheduler.CLI); !ok {
			t.Errorf("ForSite without a scheduler section = %T, want *scheduler.CLI", b)
		}
	}
}
