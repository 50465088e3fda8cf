package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness/comm"
)

func envOf(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestChooseComm(t *testing.T) {
	mpiOr := func(other string) string {
		if mpiBuilt {
			return CommMPI
		}
		return other
	}
	for _, tc := range []struct {
		name string
		o    RunOptions
		want string // "" with err
		err  string
	}{
		{name: "explicit tcp", o: RunOptions{Ranks: CommTCP, lookup: envOf()}, want: CommTCP},
		{name: "explicit mpi", o: RunOptions{Ranks: CommMPI, lookup: envOf()}, want: CommMPI},
		{name: "explicit local", o: RunOptions{Ranks: CommLocal, lookup: envOf()}, want: CommLocal},
		{name: "unknown", o: RunOptions{Ranks: "pvm", lookup: envOf()}, err: `communicator "pvm": expected auto, tcp, mpi or local`},
		{name: "srun --mpi=none", o: RunOptions{Ranks: CommAuto, lookup: envOf("SLURM_PROCID", "1")}, want: CommTCP},
		{name: "rank and size given", o: RunOptions{Ranks: CommAuto, Rank: 0, Size: 3, lookup: envOf()}, want: CommTCP},
		{name: "srun --mpi=pmix", o: RunOptions{lookup: envOf("SLURM_PROCID", "1", "PMIX_RANK", "1")}, want: mpiOr(CommTCP)},
		{name: "nothing", o: RunOptions{Ranks: CommAuto, lookup: envOf()}, err: "not started by srun or mpirun"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chooseComm(tc.o)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("chooseComm = %q, %v; want an invalid-input error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("chooseComm = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	// mpirun without MPI support is an error; with it, mpi.
	got, err := chooseComm(RunOptions{lookup: envOf("OMPI_COMM_WORLD_SIZE", "3", "SLURM_PROCID", "0")})
	if mpiBuilt {
		if err != nil || got != CommMPI {
			t.Errorf("under mpirun: %q, %v; want mpi", got, err)
		}
	} else if err == nil || !strings.Contains(err.Error(), "rebuild it with -tags mpi") {
		t.Errorf("under mpirun without MPI: %q, %v; want an error saying how to rebuild", got, err)
	}
}

func TestTCPConfigFromOptions(t *testing.T) {
	cfg, err := tcpConfig(RunOptions{Rank: 2, Size: 4, RunID: "r1", Rendezvous: "/x", lookup: envOf("SLURMD_NODENAME", "n2")})
	if err != nil || cfg.Rank != 2 || cfg.Size != 4 || cfg.RunID != "r1" || cfg.Rendezvous != "/x" || cfg.Host != "n2" {
		t.Errorf("explicit rank and size: %+v, %v", cfg, err)
	}
	if _, err := tcpConfig(RunOptions{Rank: 4, Size: 4, lookup: envOf()}); err == nil || !errors.Is(err, ErrInvalid) {
		t.Errorf("rank out of range: %v", err)
	}
	if _, err := tcpConfig(RunOptions{lookup: envOf("OMPI_COMM_WORLD_SIZE", "3")}); err == nil || !strings.Contains(err.Error(), "under mpirun") {
		t.Errorf("tcp under mpirun: %v", err)
	}
	// From srun's variables (the real environment: TCPConfigFromEnv reads it).
	for k, v := range map[string]string{"SLURM_PROCID": "1", "SLURM_NTASKS": "5", "SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0", "SLURMD_NODENAME": "n3"} {
		t.Setenv(k, v)
	}
	cfg, err = tcpConfig(RunOptions{RunID: "r1", Rendezvous: "/x", lookup: envOf()})
	if err != nil || cfg.Rank != 1 || cfg.Size != 5 || cfg.RunID != "r1.77.0" || cfg.Host != "n3" {
		t.Errorf("from srun: %+v, %v", cfg, err)
	}
}

func TestOpenCommMisuse(t *testing.T) {
	ctx := context.Background()
	if _, err := openComm(ctx, RunOptions{Ranks: CommMPI, Rank: 0, Size: 2, lookup: envOf()}, CommMPI); err == nil || !errors.Is(err, ErrInvalid) {
		t.Errorf("mpi with --size: %v", err)
	}
	if _, err := openComm(ctx, RunOptions{Ranks: CommLocal, lookup: envOf()}, CommLocal); err == nil || !errors.Is(err, ErrInvalid) {
		t.Errorf("local: %v", err)
	}
	if !mpiBuilt {
		if _, err := openComm(ctx, RunOptions{Ranks: CommMPI, lookup: envOf()}, CommMPI); !errors.Is(err, comm.ErrNoMPI) {
			t.Errorf("mpi without the tag: %v, want ErrNoMPI", err)
		}
	}
	// tcp with rank and size: two ranks meet through a rendezvous directory.
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := openComm(ctx, RunOptions{Ranks: CommTCP, Rank: r, Size: 2, RunID: "t", Rendezvous: dir, lookup: envOf()}, CommTCP)
			if err != nil {
				errs[r] = err
				return
			}
			if c.Rank() != r || c.Size() != 2 {
				errs[r] = fmt.Errorf("rank %d size %d", c.Rank(), c.Size())
			} else {
				errs[r] = c.Barrier()
			}
			c.Close()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
	}
}

func TestAgree(t *testing.T) {
	for _, tc := range []struct {
		name    string
		errs    map[int]error
		invalid bool
		want    string // in every rank's error; "" when they all start
	}{
		{name: "all fine"},
		{name: "one slice, bad input", errs: map[int]error{2: fmt.Errorf("%w: x.yaml:3: bad", ErrInvalid)},
			invalid: true, want: "rank 2: invalid input: x.yaml:3: bad"},
		{name: "every rank, same problem", errs: map[int]error{0: errors.New("gone"), 1: errors.New("gone"), 2: errors.New("gone"), 3: errors.New("gone")},
			want: "gone"},
		{name: "mixed", errs: map[int]error{1: errors.New("disk"), 3: fmt.Errorf("%w: v", ErrInvalid)},
			invalid: true, want: "rank 1: disk; rank 3: invalid input: v"},
		{name: "two ranks, same problem", errs: map[int]error{1: errors.New("nfs"), 3: errors.New("nfs")},
			want: "ranks 1,3: nfs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eps := comm.NewLocal(4)
			got := make([]error, 4)
			var wg sync.WaitGroup
			for r, c := range eps {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got[r] = agree(c, tc.errs[r])
				}()
			}
			wg.Wait()
			for r, err := range got {
				if tc.want == "" {
					if err != nil {
						t.Errorf("rank %d: %v", r, err)
					}
					continue
				}
				if err == nil {
					t.Errorf("rank %d started", r)
					continue
				}
				if mine := tc.errs[r]; mine != nil {
					if err != mine {
						t.Errorf("rank %d: %v, want its own error", r, err)
					}
					continue
				}
				if !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrInvalid) != tc.invalid {
					t.Errorf("rank %d: %v; want %q (invalid %v)", r, err, tc.want, tc.invalid)
				}
			}
		})
	}
}

func TestRunRanksBadInput(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "p.yaml")
	os.WriteFile(policy, []byte("pipeline: p\nslices: 1\nmapper: {type: rank}\nevents: {trigger: {topic: v}}\nstages:\n  - {name: a, type: nope}\n"), 0o644)
	_, err := Run(context.Background(), RunOptions{Ranks: CommLocal, Size: 3, PolicyPath: policy, VisitsPath: filepath.Join(dir, "v.csv"), RunID: "r", RunDir: dir})
	if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "p.yaml") {
		t.Errorf("bad policy: %v", err)
	}
	_, err = Run(context.Background(), RunOptions{Ranks: CommLocal, Size: 3, PolicyPath: policy, RunID: "r", RunDir: filepath.Join(dir, "none")})
	if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "run directory") {
		t.Errorf("missing run directory: %v", err)
	}
	_, err = Run(context.Background(), RunOptions{Ranks: CommLocal, Size: 1, PolicyPath: policy, RunID: "r", RunDir: dir})
	if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "at least 2 ranks") {
		t.Errorf("one rank: %v", err)
	}
	// A run of its own visit file is new input: data ID values and visit
	// IDs that could leave the run directory are refused.
	ids := filepath.Join(dir, "ids.yaml")
	os.WriteFile(ids, []byte("pipeline: p\nslices: 1\nmapper: {type: list, settings: {ids: [{ccd: ../x}]}}\nstages:\n  - {name: a, type: noop}\n"), 0o644)
	visits := filepath.Join(dir, "v.csv")
	os.WriteFile(visits, []byte("visitId\nv1\n"), 0o644)
	_, err = Run(context.Background(), RunOptions{Ranks: CommLocal, Size: 2, PolicyPath: ids, VisitsPath: visits, RunID: "r", RunDir: dir})
	if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `ids.yaml:3: mapper.settings.ids[0].ccd: data ID value "../x" contains '/'`) {
		t.Errorf("data ID value climbing out: %v", err)
	}
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("pipeline: p\nslices: 1\nmapper: {type: rank}\nstages:\n  - {name: a, type: noop}\n"), 0o644)
	os.WriteFile(visits, []byte("visitId\nv1\n../../..\n"), 0o644)
	_, err = Run(context.Background(), RunOptions{Ranks: CommLocal, Size: 2, PolicyPath: good, VisitsPath: visits, RunID: "r", RunDir: dir})
	if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `v.csv:3: visitId: visit ID "../../.." contains '/'`) {
		t.Errorf("visit ID climbing out: %v", err)
	}
}

// The Rank0 hook runs on rank 0 before the ranks agree: it can feed the
// visits itself, and its error reaches every rank. PipelineDir moves
// {pipelinedir} away from the policy's folder.
func TestRunRanksRank0Hook(t *testing.T) {
	dir := t.TempDir()
	scripts := filepath.Join(dir, "scripts")
	os.MkdirAll(filepath.Join(scripts, "data"), 0o755)
	os.WriteFile(filepath.Join(scripts, "data", "x.txt"), []byte("hello\n"), 0o644)
	policy := filepath.Join(dir, "copy.yaml") // no data folder beside it
	os.WriteFile(policy, []byte("pipeline: p\nslices: 2\nmapper: {type: rank}\nevents: {trigger: {topic: v}}\n"+
		"stages:\n  - {name: read, type: input, settings: {files: {raw: \"{pipelinedir}/data/x.txt\"}, format: text}}\n"), 0o644)
	feed := func(p *Policy, dr *RunOptions) error {
		b := events.NewMemory()
		dr.Broker, dr.Feed = b, true
		return publishVisits(context.Background(), b, p.Trigger.Topic, dr.RunID, []Visit{{ID: "a"}, {ID: "b"}})
	}
	base := RunOptions{PolicyPath: policy, RunID: "r", RunDir: dir, PipelineDir: scripts, Rank0: feed}
	base.Ranks, base.Size = CommLocal, 3
	sum, err := Run(context.Background(), base)
	if err != nil || sum == nil || sum.Done != 2 {
		t.Fatalf("fed by Rank0: %+v, %v; want 2 visits done", sum, err)
	}
	noDir := base
	noDir.PipelineDir = ""
	noDir.Ranks, noDir.Size = CommLocal, 3
	if sum, err := Run(context.Background(), noDir); !errors.Is(err, ErrVisitsFailed) || sum.Failed != 2 {
		t.Errorf("without PipelineDir the input is missing: %+v, %v; want 2 failed visits", sum, err)
	}
	refuse := base
	refuse.Rank0 = func(*Policy, *RunOptions) error { return errors.New("state file locked") }
	refuse.Ranks, refuse.Size = CommLocal, 3
	_, err = Run(context.Background(), refuse)
	if err == nil || !strings.Contains(err.Error(), "state file locked") {
		t.Errorf("Rank0 error: %v; want it returned", err)
	}
}
