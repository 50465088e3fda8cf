package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/testenv"
)

// TestBatchRunsRootWithPercent runs a job whose runs root holds a space,
// a % and a %j: Slurm expands % patterns in the --output path, so each
// literal % must reach it as %%, and the log must land in the run's own
// logs folder.
func TestBatchRunsRootWithPercent(t *testing.T) {
	e := newBatchEnv(t)
	root := filepath.Join(filepath.Dir(e.dir), "runs 100% of %j x")
	writeFile(t, e.site, fmt.Sprintf(`runs_root: %q
partitions:
  - {name: debug, default: true, cpus_per_node: 4, memory: 2000M, node_list: "n[1-4]", max_time: infinite}
launcher: {kind: srun, flags: [--mpi=none], comm: tcp}
time_warning: 50s
`, root))
	policy, vf := e.slowPipeline("pct", 2, "0.1")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "pct-1", "--time", "5")
	e.must(0, 3*time.Minute, "wait", "pct-1", "--interval", "1s")
	st := e.status("pct-1")
	if st.Dir != filepath.Join(root, "pct-1") || st.Counts["done"] != 2 || len(st.Jobs) != 1 {
		t.Fatalf("status: %+v", st)
	}
	log := filepath.Join(st.Dir, "logs", "slurm-"+st.Jobs[0].ID+".out")
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatalf("the job's log is not in the run directory: %v", err)
	}
	if !strings.Contains(string(data), "launching") {
		t.Errorf("%s:\n%s", log, data)
	}
}

// testUser is the ordinary user scripts/cluster.sh creates, associated
// with Slurm account physics only.
const testUser = "dpsuser"

// needEnforcement skips (or fails, in CI) unless the local cluster
// enforces associations and has the ordinary test user, as
// scripts/cluster.sh sets it up.
func needEnforcement(t *testing.T) {
	t.Helper()
	out, err := exec.Command("scontrol", "show", "config").Output()
	if err != nil || !regexp.MustCompile(`AccountingStorageEnforce\s*=\s*\S*associations`).Match(out) {
		testenv.SkipOrFail(t, "the cluster does not enforce associations (AccountingStorageEnforce): run scripts/cluster.sh start")
	}
	if _, err := user.Lookup(testUser); err != nil {
		testenv.SkipOrFail(t, "no user %s: run scripts/cluster.sh start", testUser)
	}
}

// TestSiteCheckAccounting checks that site check verifies the account
// and QoS in Slurm's accounting: an account that does not exist (a'b,
// which must also reach sbatch intact), a QoS that does not exist, and,
// as an ordinary user, an account the user is not associated with, are
// mismatches (exit 2); the user's own account and an existing QoS match.
// And a submission with the unknown account is refused by Slurm, not run
// under the user's default account.
func TestSiteCheckAccounting(t *testing.T) {
	e := newBatchEnv(t)
	needEnforcement(t)
	base, err := os.ReadFile(e.site)
	if err != nil {
		t.Fatal(err)
	}
	withKeys := func(name, keys string) string {
		p := filepath.Join(filepath.Dir(e.site), name)
		writeFile(t, p, string(base)+keys)
		return p
	}
	check := func(asUser bool, file string) (string, int) {
		t.Helper()
		args := []string{"site", "check", "--site", file}
		name := e.bin
		if asUser {
			args = append([]string{"--reuid=" + testUser, "--regid=" + testUser, "--init-groups", e.bin}, args...)
			name = "setpriv"
		}
		out, errOut, code := runCmd(t, time.Minute, cleanEnv(), name, args...)
		return out + errOut, code
	}
	for _, tc := range []struct {
		name   string
		asUser bool
		keys   string
		want   string // "" for a match
	}{
		{"quote in the account", false, "account: \"a'b\"\n", "account: site file says a'b, the cluster has no such account"},
		{"unknown qos", false, "account: science\nqos: nosuchqos\n", "qos: site file says nosuchqos, the cluster has no such QoS"},
		{"root in science", false, "account: science\nqos: normal\n", ""},
		{"user not in science", true, "account: science\n", "account: site file says science, the cluster has no association of user " + testUser + " with it"},
		{"user in physics", true, "account: physics\nqos: normal\n", ""},
	} {
		out, code := check(tc.asUser, withKeys(strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.keys))
		switch {
		case tc.want == "" && (code != 0 || !strings.Contains(out, "matches the cluster")):
			t.Errorf("%s: exit %d, want a match:\n%s", tc.name, code, out)
		case tc.want != "" && (code != exitBadInput || !strings.Contains(out, tc.want)):
			t.Errorf("%s: exit %d, want %d and %q:\n%s", tc.name, code, exitBadInput, tc.want, out)
		}
	}

	// The job script carries the account as written: sbatch reads a'b
	// back from it.
	bad := withKeys("bad-account.yaml", "account: \"a'b\"\n")
	script := filepath.Join(filepath.Dir(e.site), "dry.sbatch")
	dry, _, _ := runCmd(t, time.Minute, cleanEnv("DPSBATCH_SITE="+bad), e.bin, "submit",
		filepath.Join(e.dir, "pipeline.yaml"), "--visits", filepath.Join(e.dir, "visits.csv"), "--name", "acct-0", "--dry-run")
	if i := strings.Index(dry, "#!/bin/bash"); i < 0 {
		t.Fatalf("submit --dry-run prints no script:\n%s", dry)
	} else {
		writeFile(t, script, dry[i:])
	}
	if v, _ := exec.Command("sbatch", "-v", "--test-only", script).CombinedOutput(); !regexp.MustCompile(`account\s*: a'b\n`).Match(v) {
		t.Errorf("sbatch does not read the account a'b from the script:\n%s", v)
	}

	// Submitting under the unknown account: Slurm refuses the job, not
	// run under the user's default account.
	out, errOut, code := runCmd(t, time.Minute, cleanEnv("DPSBATCH_SITE="+bad), e.bin, "submit",
		filepath.Join(e.dir, "pipeline.yaml"), "--visits", filepath.Join(e.dir, "visits.csv"), "--name", "acct-1")
	if code == 0 || !strings.Contains(errOut, "Invalid account") {
		t.Errorf("submit with account a'b: exit %d, want a refusal by sbatch:\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(e.root, "acct-1")); err == nil {
		t.Errorf("a refused submission left its run directory")
	}
}

// mountTmpfs mounts a tmpfs of size (such as "300m") on a new folder.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	testenv.MountTmpfs(t, dir, "size="+size+",mode=0755")
	return dir
}

// TestBatchSmallFilesystem runs jobs whose runs root is a small file
// system: the embedded broker starts where its events fit (a 300 MiB
// file system with the default stream size, where nats-server's own
// default of 75% of the free space refused the 1 GiB stream at every job
// start), a runs root without room for the stream is refused by submit,
// naming the folder, the space free and needed, a smaller
// broker.stream_size runs there, and resume checks the space again.
func TestBatchSmallFilesystem(t *testing.T) {
	e := newBatchEnv(t)
	siteOn := func(root, broker string) {
		writeFile(t, e.site, fmt.Sprintf(`runs_root: %s
partitions:
  - {name: debug, default: true, cpus_per_node: 4, memory: 2000M, node_list: "n[1-4]", max_time: infinite}
launcher: {kind: srun, flags: [--mpi=none], comm: tcp}
time_warning: 50s
%s`, root, broker))
	}
	policy, vf := e.slowPipeline("small", 2, "0.1")
	submit := func(name string, extra ...string) (string, string, int) {
		return e.dps(time.Minute, append([]string{"submit", policy, "--visits", vf, "--name", name}, extra...)...)
	}

	medium := mountTmpfs(t, "300m")
	siteOn(medium, "")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "small-1")
	e.must(0, 3*time.Minute, "wait", "small-1", "--interval", "1s")

	tiny := mountTmpfs(t, "100m")
	siteOn(tiny, "")
	out, errOut, code := submit("small-2")
	if code == 0 || code == exitBadInput {
		t.Fatalf("submit on a 100 MiB runs root: exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{filepath.Join(tiny, "small-2", "broker"), "free on its file system", "256 MiB needed", "broker.stream_size"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("submit's error lacks %q:\n%s", want, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(tiny, "small-2")); err == nil {
		t.Errorf("the refused submission left a run directory")
	}

	siteOn(tiny, "broker: {stream_size: 32M}\n")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "small-3", "--hold")
	e.must(0, time.Minute, "cancel", "small-3")
	e.dps(time.Minute, "wait", "small-3", "--interval", "1s")
	// Leave about 16 MiB free: the resume is refused, then runs once
	// the space is back.
	ballast := filepath.Join(tiny, "ballast")
	var st syscall.Statfs_t
	if err := syscall.Statfs(tiny, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if out, err := exec.Command("fallocate", "-l", fmt.Sprint(free-16<<20), ballast).CombinedOutput(); err != nil {
		t.Fatalf("fallocate: %v: %s", err, out)
	}
	out, errOut, code = e.dps(time.Minute, "resume", "small-3")
	if code == 0 || !strings.Contains(errOut, filepath.Join(tiny, "small-3", "broker")) || !strings.Contains(errOut, "free on its file system") {
		t.Errorf("resume with 16 MiB free for a 32 MiB stream: exit %d\n%s%s", code, out, errOut)
	}
	os.Remove(ballast)
	e.must(0, time.Minute, "resume", "small-3")
	e.must(0, 3*time.Minute, "wait", "small-3", "--interval", "1s")
}
