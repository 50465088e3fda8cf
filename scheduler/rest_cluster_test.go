package scheduler_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/testenv"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/scheduler/schedtest"
)

// slurmrestd's of the local cluster (scripts/cluster.sh start-rest and
// start-rest-jwt; scripts/test.sh starts both).
const (
	restSocket = "/run/dpsbatch/slurmrestd.sock"
	restJWTURL = "http://127.0.0.1:6820"
)

// localREST is the REST backend over the local-auth slurmrestd, or skips.
func localREST(t *testing.T) *scheduler.REST {
	t.Helper()
	testenv.NeedCluster(t, 4, cliTools...)
	if _, err := os.Stat(restSocket); err != nil {
		testenv.SkipOrFail(t, "no local-auth slurmrestd (run scripts/cluster.sh start-rest): %v", err)
	}
	b, err := scheduler.NewREST(scheduler.RESTOptions{URL: "unix:" + restSocket})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jwtREST is the REST backend over the JWT slurmrestd with a token of
// user's in a file, or skips.
func jwtREST(t *testing.T, user string) *scheduler.REST {
	t.Helper()
	testenv.NeedCluster(t, 4, cliTools...)
	out, err := exec.Command("scontrol", "token", "username="+user, "lifespan=1200").Output()
	if err != nil {
		testenv.SkipOrFail(t, "scontrol token: %v (the cluster needs AuthAltTypes=auth/jwt: scripts/cluster.sh start)", err)
	}
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, out, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := scheduler.NewREST(scheduler.RESTOptions{URL: restJWTURL, TokenFile: file})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Jobs(context.Background(), []string{"1"}); err != nil {
		testenv.SkipOrFail(t, "no JWT slurmrestd on %s (run scripts/cluster.sh start-rest-jwt): %v", restJWTURL, err)
	}
	return b
}

// TestRESTBackendLocal runs the shared backend suite through slurmrestd
// with local auth, which serves no accounting here.
func TestRESTBackendLocal(t *testing.T) {
	schedtest.Run(t, localREST(t), schedtest.Options{NoAccounting: true, NoStepSignal: true})
}

// TestRESTBackendJWT runs the shared backend suite through slurmrestd
// with a JWT of root's, and its accounting API.
func TestRESTBackendJWT(t *testing.T) {
	schedtest.Run(t, jwtREST(t, "root"), schedtest.Options{NoStepSignal: true})
}

// TestBackendsAgree submits through each backend and checks that both
// describe every job alike, running and ended: state, exit code, times,
// nodes, partition and name; and that a job cancelled through one is
// cancelled for the other.
func TestBackendsAgree(t *testing.T) {
	rest := jwtREST(t, "root")
	cli, err := scheduler.NewCLI(scheduler.CLIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir := schedtest.Dir(t)
	ids := []string{
		schedtest.Submit(t, cli, dir, schedtest.Script("agree-ok", "true"), ""),
		schedtest.Submit(t, rest, dir, schedtest.Script("agree-fail", "exit 4"), ""),
		schedtest.Submit(t, rest, dir, schedtest.Script("agree-run", "sleep 300"), ""),
		schedtest.Submit(t, cli, dir, schedtest.Script("agree-run2", "sleep 300"), ""),
	}
	t.Cleanup(func() { cli.Cancel(ctx, ids[2], ""); cli.Cancel(ctx, ids[3], "") })
	schedtest.WaitEnded(t, cli, ids[0], time.Minute)
	schedtest.WaitEnded(t, cli, ids[1], time.Minute)
	schedtest.WaitFor(t, cli, ids[2], time.Minute, "running", func(j scheduler.Job) bool { return j.State == "RUNNING" })
	schedtest.WaitFor(t, cli, ids[3], time.Minute, "running", func(j scheduler.Job) bool { return j.State == "RUNNING" })
	compare(t, "running and ended", cli, rest, ids)

	if err := rest.Cancel(ctx, ids[3], ""); err != nil {
		t.Fatalf("Cancel through slurmrestd: %v", err)
	}
	if err := cli.Cancel(ctx, ids[2], ""); err != nil {
		t.Fatalf("Cancel through scancel: %v", err)
	}
	schedtest.WaitEnded(t, rest, ids[2], time.Minute)
	schedtest.WaitEnded(t, cli, ids[3], time.Minute)
	compare(t, "cancelled", cli, rest, ids)
}

// compare checks that both backends say the same of ids.
func compare(t *testing.T, when string, a, b scheduler.Backend, ids []string) {
	t.Helper()
	ja, err := a.Jobs(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := b.Jobs(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		x, y := ja[id], jb[id]
		x.Source, y.Source = "", ""
		// squeue prints the reason's description where slurmrestd has
		// its code (see parseSqueueText): compare the code's part.
		x.Reason, _, _ = strings.Cut(x.Reason, ",")
		if x.ID == "" || x != y {
			t.Errorf("%s: job %s\n cli:  %+v\n rest: %+v", when, id, x, y)
		}
	}
}

// TestRESTAccounting: through JWT, the token's user's associations (as
// sacctmgr gives them to the CLI backend); through local auth, none.
func TestRESTAccounting(t *testing.T) {
	ctx := context.Background()
	a, err := jwtREST(t, "dpsuser").Accounting(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a.User != "dpsuser" || !slices.Contains(a.Accounts, "physics") || !slices.Contains(a.Accounts, "science") ||
		!slices.Contains(a.QoS, "normal") || len(a.Assocs) != 1 || a.Assocs[0].Account != "physics" || a.Assocs[0].Cluster != "dps" {
		t.Errorf("Accounting = %+v; want dpsuser in physics alone, accounts physics and science, QoS normal", a)
	}
	if _, err := localREST(t).Accounting(ctx); !errors.Is(err, scheduler.ErrNoAccounting) {
		t.Errorf("Accounting over local auth = %v, want ErrNoAccounting", err)
	}
}
