package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/testenv"
)

// restJWTURL is the JWT slurmrestd of the local cluster (scripts/cluster.sh
// start-rest-jwt; scripts/test.sh starts it).
const restJWTURL = "http://127.0.0.1:6820"

// restSite writes a copy of the env's site file whose scheduler section
// chooses slurmrestd over JWT, with a token of root's (jobs then run as
// root, as they do through Slurm's tools here) in a file; it skips
// without that slurmrestd. It returns the file and the token.
func (e *batchEnv) restSite() (path, token string) {
	e.t.Helper()
	minted, err := exec.Command("scontrol", "token", "username=root", "lifespan=1800").Output()
	if err != nil {
		testenv.SkipOrFail(e.t, "scontrol token: %v (the cluster needs AuthAltTypes=auth/jwt: scripts/cluster.sh start)", err)
	}
	tokenFile := filepath.Join(e.t.TempDir(), "jwt")
	if err := os.WriteFile(tokenFile, minted, 0o600); err != nil {
		e.t.Fatal(err)
	}
	site, err := os.ReadFile(e.site)
	if err != nil {
		e.t.Fatal(err)
	}
	path = filepath.Join(filepath.Dir(e.site), "site-rest.yaml")
	writeFile(e.t, path, string(site)+"scheduler: {backend: rest, url: '"+restJWTURL+"', token_file: '"+tokenFile+"'}\n")
	if out, err := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", restJWTURL+"/slurm/v0.0.38/ping").Output(); err != nil || string(out) != "401" {
		testenv.SkipOrFail(e.t, "no JWT slurmrestd on %s (run scripts/cluster.sh start-rest-jwt): %v %s", restJWTURL, err, out)
	}
	return path, strings.TrimPrefix(strings.TrimSpace(string(minted)), "SLURM_JWT=")
}

// TestBatchThroughREST: with the site file choosing slurmrestd, site
// check matches, and a run is submitted, watched, cancelled and resumed
// through it; Slurm's tools (the same site without the scheduler section)
// say the same of the run at every step; the token is in none of the
// run's files.
// restRunner runs dpsbatch with the site file restSite (slurmrestd's).
type restRunner struct {
	e    *batchEnv
	site string
}

// must runs dpsbatch through slurmrestd and fails the test unless it
// exits with want.
func (r restRunner) must(want int, args ...string) string {
	t := r.e.t
	t.Helper()
	out, errOut, code := runCmd(t, 2*time.Minute, cleanEnv("DPSBATCH_SITE="+r.site), r.e.bin, args...)
	if code != want {
		t.Fatalf("dpsbatch %s through slurmrestd: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errOut)
	}
	return out
}

// status is status --json of run through slurmrestd.
func (r restRunner) status(run string) statusJSON {
	r.e.t.Helper()
	var all []statusJSON
	if out := r.must(0, "status", "--json", run); json.Unmarshal([]byte(out), &all) != nil || len(all) != 1 {
		r.e.t.Fatalf("status --json through slurmrestd:\n%s", out)
	}
	return all[0]
}

// agree checks that status through Slurm's tools (a) and through
// slurmrestd (b, asked after a) say the same of the run and its jobs.
func agree(t *testing.T, when string, a, b statusJSON) {
	t.Helper()
	if a.Outcome != b.Outcome || a.Live != b.Live || a.Counts["done"] > b.Counts["done"] || len(a.Jobs) != len(b.Jobs) {
		t.Fatalf("%s: through the tools %+v\nthrough slurmrestd %+v", when, a, b)
	}
	for i := range a.Jobs {
		x, y := a.Jobs[i], b.Jobs[i]
		if x.ID != y.ID || x.State != y.State || x.Live != y.Live || x.Attempt != y.Attempt {
			t.Errorf("%s: job %d through the tools %+v, through slurmrestd %+v", when, i, x, y)
		}
	}
}

// waitEnded polls status through the tools until the run is not live.
func (e *batchEnv) waitEnded(run string, timeout time.Duration) statusJSON {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	st := e.status(run)
	for st.Live {
		if time.Now().After(deadline) {
			e.t.Fatalf("run %s still live after %v: %+v", run, timeout, st)
		}
		time.Sleep(time.Second)
		st = e.status(run)
	}
	return st
}

func TestBatchThroughREST(t *testing.T) {
	e := newBatchEnv(t)
	restSite, token := e.restSite()
	rest := restRunner{e, restSite}

	if out := rest.must(0, "site", "check"); !strings.Contains(out, "matches") {
		t.Errorf("site check through slurmrestd:\n%s", out)
	}
	policy, vf := e.slowPipeline("rest", 8, "1")
	rest.must(0, "submit", policy, "--visits", vf, "--name", "rest-1")
	e.cancelAtEnd("rest-1")
	byTools := e.waitDone("rest-1", 1, 3*time.Minute)
	byREST := rest.status("rest-1")
	agree(t, "running", byTools, byREST)
	if len(byREST.Jobs) != 1 || byREST.Jobs[0].Source != "slurmrestd" || byTools.Jobs[0].Source != "squeue" {
		t.Errorf("sources: %+v and %+v, want squeue and slurmrestd", byTools.Jobs, byREST.Jobs)
	}

	rest.must(0, "cancel", "rest-1")
	byTools = e.waitEnded("rest-1", 2*time.Minute)
	agree(t, "cancelled", byTools, rest.status("rest-1"))
	if byTools.Jobs[0].State != "CANCELLED" {
		t.Errorf("job after cancel through slurmrestd: %+v, want CANCELLED", byTools.Jobs[0])
	}

	rest.must(0, "resume", "rest-1")
	e.waitDone("rest-1", 8, 4*time.Minute)
	done := e.waitEnded("rest-1", time.Minute)
	agree(t, "resumed and done", done, rest.status("rest-1"))
	if done.Outcome != "done" || len(done.Jobs) != 2 || done.Jobs[1].Attempt != 2 {
		t.Errorf("run after resume through slurmrestd: %+v, want done by a second attempt", done)
	}

	filepath.WalkDir(done.Dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(path); strings.Contains(string(b), token) {
				t.Errorf("%s holds the token", path)
			}
		}
		return nil
	})
}

// TestBatchAutoResumeThroughREST: a run submitted through slurmrestd with
// a follow-on job (--auto-resume 1, chained afterany) whose first job is
// cancelled is finished by the follow-on; both backends agree throughout.
func TestBatchAutoResumeThroughREST(t *testing.T) {
	e := newBatchEnv(t)
	restSite, _ := e.restSite()
	rest := restRunner{e, restSite}
	policy, vf := e.slowPipeline("restfollow", 6, "1")
	rest.must(0, "submit", policy, "--visits", vf, "--name", "rest-follow", "--auto-resume", "1")
	e.cancelAtEnd("rest-follow")
	st := e.waitDone("rest-follow", 1, 3*time.Minute)
	agree(t, "running, follow-on queued", st, rest.status("rest-follow"))
	if len(st.Jobs) != 2 {
		t.Fatalf("jobs %+v, want the job and its follow-on", st.Jobs)
	}
	if out, err := exec.Command("scancel", st.Jobs[0].ID).CombinedOutput(); err != nil {
		t.Fatalf("scancel %s: %v %s", st.Jobs[0].ID, err, out)
	}
	e.waitDone("rest-follow", 6, 4*time.Minute)
	done := e.waitEnded("rest-follow", time.Minute)
	agree(t, "finished by the follow-on", done, rest.status("rest-follow"))
	if done.Outcome != "done" || done.Jobs[0].State != "CANCELLED" || done.Jobs[1].State != "COMPLETED" {
		t.Errorf("run %+v, want done, the first job cancelled and the follow-on completed", done)
	}
}
