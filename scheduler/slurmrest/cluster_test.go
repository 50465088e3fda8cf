package slurmrest_test

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
	"github.com/dpsbatch/dpsbatch/scheduler/schedtest"
	"github.com/dpsbatch/dpsbatch/scheduler/slurmrest"
)

// These tests run the client against the real slurmrestd's of the local
// cluster: scripts/cluster.sh start-rest (local auth on a unix socket, as
// user slurmrest) and start-rest-jwt (JWT on 127.0.0.1:6820, with the
// accounting API). scripts/test.sh starts both.

const (
	localURL = "unix:/run/dpsbatch/slurmrestd.sock"
	jwtURL   = "http://127.0.0.1:6820"
	restUser = "slurmrest" // slurmrestd's own user: local auth's jobs run as it
	testUser = "dpsuser"   // an ordinary user in account physics (cluster.sh)
)

// localClient is a client of the local-auth slurmrestd, or skips.
func localClient(t *testing.T) *slurmrest.Client {
	t.Helper()
	testenv.NeedCluster(t, 1)
	if _, err := os.Stat("/run/dpsbatch/slurmrestd.sock"); err != nil {
		testenv.SkipOrFail(t, "no local-auth slurmrestd (run scripts/cluster.sh start-rest): %v", err)
	}
	c, err := slurmrest.New(slurmrest.Options{URL: localURL})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// jwtClient is a client of the JWT slurmrestd with a token of user's in
// a file (minted by scontrol token, which root may do for any user), or
// skips; it also returns the token.
func jwtClient(t *testing.T, user string) (*slurmrest.Client, string) {
	t.Helper()
	testenv.NeedCluster(t, 1, "scontrol")
	out, err := exec.Command("scontrol", "token", "username="+user, "lifespan=600").Output()
	if err != nil {
		testenv.SkipOrFail(t, "scontrol token: %v (the cluster needs AuthAltTypes=auth/jwt: scripts/cluster.sh start)", err)
	}
	token := strings.TrimPrefix(strings.TrimSpace(string(out)), "SLURM_JWT=")
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := slurmrest.New(slurmrest.Options{URL: jwtURL, TokenFile: file})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Ping(context.Background()); err != nil {
		testenv.SkipOrFail(t, "no JWT slurmrestd on %s (run scripts/cluster.sh start-rest-jwt): %v", jwtURL, err)
	}
	return c, token
}

// waitJob polls job id until cond holds, for up to two minutes.
func waitJob(t *testing.T, c *slurmrest.Client, id, what string, cond func(slurmrest.Job) bool) slurmrest.Job {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		j, err := c.Job(context.Background(), id)
		if err != nil {
			t.Fatalf("Job(%s): %v", id, err)
		}
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not %s after two minutes: %+v", id, what, j)
		}
		time.Sleep(schedtest.Poll)
	}
}

func ended(j slurmrest.Job) bool { return !j.Ended.IsZero() }

// whoami submits a job writing its user's name and returns the job and
// the name.
func whoami(t *testing.T, c *slurmrest.Client, account string) (slurmrest.Job, string) {
	t.Helper()
	dir := schedtest.Dir(t)
	id, err := c.Submit(context.Background(), []byte("#!/bin/bash\nid -un > who.txt\n"), slurmrest.JobDesc{
		Name: "slurmrest-whoami", Partition: schedtest.Partition, Account: account, WorkDir: dir,
		Output: dir + "/%j.out", Tasks: 1, TimeLimit: 2 * time.Minute,
	})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	j := waitJob(t, c, id, "ended", ended)
	who := strings.TrimSpace(schedtest.WaitFile(t, filepath.Join(dir, "who.txt"), 10*time.Second))
	return j, who
}

// TestLocalAuth: over the unix socket, the client reads the version,
// pings, lists partitions and nodes, and a job it submits runs as
// slurmrestd's user and completes; accounting is not served there.
func TestLocalAuth(t *testing.T) {
	c := localClient(t)
	ctx := context.Background()
	if v, err := c.Version(ctx); err != nil || v != "v0.0.38" {
		t.Fatalf("Version = %q, %v; want v0.0.38 (Slurm 22.05)", v, err)
	}
	if pings, err := c.Ping(ctx); err != nil || len(pings) == 0 || !pings[0].Up {
		t.Errorf("Ping = %+v, %v; want the controller up", pings, err)
	}
	parts, err := c.Partitions(ctx)
	if err != nil || !slices.ContainsFunc(parts, func(p slurmrest.Partition) bool { return p.Name == schedtest.Partition && p.Up }) {
		t.Errorf("Partitions = %+v, %v; want %s up", parts, err, schedtest.Partition)
	}
	if nodes, err := c.Nodes(ctx); err != nil || len(nodes) != 4 {
		t.Errorf("Nodes = %+v, %v; want n1..n4", nodes, err)
	}

	j, who := whoami(t, c, "")
	if j.State != "COMPLETED" || j.ExitCode != 0 || j.User != restUser || who != restUser {
		t.Errorf("job %+v ran as %q; want COMPLETED as %s (local auth: slurmrestd's user)", j, who, restUser)
	}
	jobs, err := c.Jobs(ctx)
	if err != nil || !slices.ContainsFunc(jobs, func(k slurmrest.Job) bool { return k.ID == j.ID && k.State == "COMPLETED" }) {
		t.Errorf("Jobs: %v; want job %s among %d", err, j.ID, len(jobs))
	}
	if _, err := c.Associations(ctx, restUser); !errors.Is(err, slurmrest.ErrNoAccounting) {
		t.Errorf("Associations over the local-auth server = %v, want ErrNoAccounting", err)
	}
}

// TestCancel: a running job is cancelled; an unknown one is ErrNoJob.
func TestCancel(t *testing.T) {
	c := localClient(t)
	ctx := context.Background()
	dir := schedtest.Dir(t)
	id, err := c.Submit(ctx, []byte("#!/bin/bash\nsleep 300\n"), slurmrest.JobDesc{
		Name: "slurmrest-cancel", Partition: schedtest.Partition, WorkDir: dir, Output: "/dev/null", TimeLimit: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Cancel(ctx, id) })
	waitJob(t, c, id, "running", func(j slurmrest.Job) bool { return j.State == "RUNNING" })
	if err := c.Cancel(ctx, id); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if j := waitJob(t, c, id, "ended", ended); j.State != "CANCELLED" {
		t.Errorf("job ended %+v, want CANCELLED", j)
	}
	if err := c.Cancel(ctx, "999999999"); !errors.Is(err, slurmrest.ErrNoJob) {
		t.Errorf("Cancel of an unknown job = %v, want ErrNoJob", err)
	}
}

// TestJWT: over HTTP with an ordinary user's token, a job runs as that
// user (in its account), accounting knows it when it ended, and lists the
// user's associations; a wrong token is refused, and no error holds the
// token.
func TestJWT(t *testing.T) {
	c, token := jwtClient(t, testUser)
	ctx := context.Background()
	since := time.Now()
	j, who := whoami(t, c, "physics")
	if j.State != "COMPLETED" || j.User != testUser || who != testUser || j.Account != "physics" {
		t.Errorf("job %+v ran as %q; want COMPLETED as %s in physics (JWT: the token's user)", j, who, testUser)
	}

	deadline := time.Now().Add(time.Minute)
	for {
		jobs, err := c.FinishedJobs(ctx, slurmrest.JobFilter{Name: "slurmrest-whoami", Since: since.Add(-time.Minute)})
		if err != nil {
			t.Fatalf("FinishedJobs: %v", err)
		}
		i := slices.IndexFunc(jobs, func(k slurmrest.Job) bool { return k.ID == j.ID })
		if i >= 0 && jobs[i].State == "COMPLETED" {
			if k := jobs[i]; k.User != testUser || !k.ExitKnown || k.ExitCode != 0 {
				t.Errorf("accounting's job %+v, want %s's, exit code 0", k, testUser)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("accounting does not list job %s as completed after a minute: %+v", j.ID, jobs)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if k, err := c.FinishedJob(ctx, j.ID); err != nil || k.ID != j.ID {
		t.Errorf("FinishedJob(%s) = %+v, %v", j.ID, k, err)
	}
	if _, err := c.FinishedJob(ctx, "999999999"); !errors.Is(err, slurmrest.ErrNoJob) {
		t.Errorf("FinishedJob of an unknown job = %v, want ErrNoJob", err)
	}
	as, err := c.Associations(ctx, testUser)
	if err != nil || !slices.ContainsFunc(as, func(a slurmrest.Association) bool { return a.Account == "physics" && a.User == testUser }) {
		t.Errorf("Associations(%s) = %+v, %v; want physics", testUser, as, err)
	}

	// A token of another user's, sent as this user: refused.
	file := filepath.Join(t.TempDir(), "token")
	os.WriteFile(file, []byte(token), 0o600)
	wrong, err := slurmrest.New(slurmrest.Options{URL: jwtURL, TokenFile: file, User: restUser, RetryWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = wrong.Jobs(ctx)
	if err == nil || strings.Contains(err.Error(), token) || strings.Contains(err.Error(), token[strings.LastIndexByte(token, '.')+1:]) {
		t.Errorf("Jobs with a mismatched user = %v; want an error without the token", err)
	}
	t.Logf("a mismatched token: %v", err)
}
