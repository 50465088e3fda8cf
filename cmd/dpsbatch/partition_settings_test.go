package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// partitionSite writes a site file whose debug partition has keys of
// its own (each line indented as a partition key) after the site-wide
// ones, and returns its path.
func (e *batchEnv) partitionSite(name, siteKeys, partitionKeys string) string {
	e.t.Helper()
	base, err := os.ReadFile(e.site)
	if err != nil {
		e.t.Fatal(err)
	}
	text := siteKeys + strings.Replace(string(base), "    max_time: infinite\n", "    max_time: infinite\n"+partitionKeys, 1)
	p := filepath.Join(filepath.Dir(e.site), name+".yaml")
	writeFile(e.t, p, text)
	return p
}

// greetingPipeline writes a pipeline of two slices whose one stage writes
// $GREETING into a file of the visit's output folder.
func (e *batchEnv) greetingPipeline() (policy, visits string) {
	e.t.Helper()
	dir := filepath.Join(e.dir, "greeting")
	policy, visits = filepath.Join(dir, "pipeline.yaml"), filepath.Join(dir, "visits.csv")
	writeFile(e.t, policy, `pipeline: greeting
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
locations: {output: "output/{visit}"}
events: {trigger: {topic: visits}}
stages:
  - name: greet
    type: exec
    settings:
      command: [sh, -c, 'mkdir -p "$1" && printf "%s\n" "$GREETING" > "$1/greeting-$2"', sh, "{output}", "{ccd}"]
`)
	writeFile(e.t, visits, "visitId\nv001\n")
	return policy, visits
}

// TestSitePartitionSettings checks a partition's own settings against the
// live cluster: a constraint naming a feature no node has is a site check
// mismatch and sbatch refuses the job; a partition's own account lets an
// ordinary user whose site-wide account is not theirs pass site check;
// and a job on a partition with a reservation (made here, as root, on a
// few CPUs of one node) runs in it, its setup line run and its
// environment reaching the stages.
func TestSitePartitionSettings(t *testing.T) {
	e := newBatchEnv(t)
	needEnforcement(t)
	policy, visits := e.greetingPipeline()

	// A constraint no node can meet.
	bad := e.partitionSite("constraint", "", "    constraint: nosuchfeature\n")
	out, errOut, code := runCmd(t, time.Minute, cleanEnv(), e.bin, "site", "check", "--site", bad)
	if code != exitBadInput || !strings.Contains(out, "partition debug: constraint: site file says nosuchfeature") {
		t.Errorf("site check of a missing feature: exit %d, want %d:\n%s%s", code, exitBadInput, out, errOut)
	}
	out, errOut, code = runCmd(t, time.Minute, cleanEnv("DPSBATCH_SITE="+bad), e.bin, "submit", policy, "--visits", visits, "--name", "feature-1")
	if code == 0 || !strings.Contains(errOut, "Invalid feature specification") {
		t.Errorf("submit with a missing feature: exit %d, want sbatch's refusal:\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(e.root, "feature-1")); err == nil {
		t.Errorf("a refused submission left its run directory")
	}

	// The user is in physics only: science site-wide is their mismatch,
	// unless the partition names physics.
	for _, tc := range []struct{ partitionKeys, want string }{
		{"", "account: site file says science, the cluster has no association of user " + testUser},
		{"    account: physics\n", "matches the cluster"},
	} {
		file := e.partitionSite("accounts", "account: science\n", tc.partitionKeys)
		out, errOut, _ := runCmd(t, time.Minute, cleanEnv(), "setpriv", "--reuid="+testUser, "--regid="+testUser, "--init-groups",
			e.bin, "site", "check", "--site", file)
		if !strings.Contains(out, tc.want) {
			t.Errorf("site check as %s with partition keys %q: want %q:\n%s%s", testUser, tc.partitionKeys, tc.want, out, errOut)
		}
	}

	resv := reservation(t, "cli")
	e.site = e.partitionSite("reserved", "account: physics\nenv: {GREETING: site}\n", reservedKeys(resv))
	e.checkReservedRun("resv-1", resv, policy, visits)
}

// TestSitePartitionSettingsThroughREST: through slurmrestd, site check
// finds a partition's constraint naming a feature no node has (from
// slurmrestd's nodes), and says that its reservation is not checked; a
// job on a partition with a reservation, account, QoS, setup and env of
// its own runs in the reservation with them.
func TestSitePartitionSettingsThroughREST(t *testing.T) {
	e := newBatchEnv(t)
	base := e.site
	e.site = e.partitionSite("rest-settings", "", "    constraint: nosuchfeature\n    reservation: nosuchreservation\n")
	file, _ := e.restSite()
	out, errOut, code := runCmd(t, time.Minute, cleanEnv(), e.bin, "site", "check", "--site", file)
	if code != exitBadInput || !strings.Contains(out, "partition debug: constraint: site file says nosuchfeature") ||
		strings.Contains(out, "reservation:") || !strings.Contains(errOut, "reservations not checked: not checked through REST") {
		t.Errorf("site check through slurmrestd: exit %d, want %d, the constraint and no reservation checked:\n%s%s", code, exitBadInput, out, errOut)
	}

	resv := reservation(t, "rest")
	e.site = base
	e.site = e.partitionSite("rest-reserved", "", reservedKeys(resv))
	e.site, _ = e.restSite()
	policy, visits := e.greetingPipeline()
	e.checkReservedRun("resv-rest", resv, policy, visits)
}

// reservation makes a reservation of three CPUs of n4 for root, deleted
// when the test ends, and returns its name.
func reservation(t *testing.T, suffix string) string {
	t.Helper()
	name := fmt.Sprintf("dpsparts%d%s", os.Getpid(), suffix)
	if out, err := exec.Command("scontrol", "create", "reservation", "ReservationName="+name, "StartTime=now", "Duration=15",
		"Users=root", "Nodes=n4", "CoreCnt=3", "PartitionName=debug").CombinedOutput(); err != nil {
		t.Fatalf("scontrol create reservation: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("scontrol", "delete", "ReservationName="+name).Run() })
	return name
}

// reservedKeys are the debug partition's keys of checkReservedRun: its
// own account, QoS, reservation, a setup line that asks Slurm which
// reservation the job runs in, and GREETING.
func reservedKeys(resv string) string {
	return "    account: science\n    qos: normal\n    reservation: " + resv + "\n" +
		"    setup: ['echo \"partition setup ran in $(scontrol show job \"$SLURM_JOB_ID\" | grep -o \"Reservation=[^ ]*\")\"']\n" +
		"    env: {GREETING: \"hello, partition\"}\n"
}

// checkReservedRun checks that e.site (with reservedKeys) matches the
// cluster, then runs the greeting pipeline as run and checks that its job
// ran in reservation resv, its setup line ran and its stages saw the
// partition's GREETING.
func (e *batchEnv) checkReservedRun(run, resv, policy, visits string) {
	t := e.t
	t.Helper()
	if out := e.must(0, time.Minute, "site", "check"); !strings.Contains(out, "matches the cluster") {
		t.Errorf("site check with the reservation:\n%s", out)
	}
	e.must(0, time.Minute, "submit", policy, "--visits", visits, "--name", run)
	e.cancelAtEnd(run)
	e.must(0, 3*time.Minute, "wait", run, "--interval", "1s")
	st := e.status(run)
	if st.Outcome != "done" || len(st.Jobs) != 1 {
		t.Fatalf("status: %+v", st)
	}
	for ccd := 1; ccd <= 2; ccd++ {
		if got, err := os.ReadFile(filepath.Join(st.Dir, "output", "v001", fmt.Sprintf("greeting-%d", ccd))); err != nil || string(got) != "hello, partition\n" {
			t.Errorf("ccd %d: the stage saw GREETING %q (%v), want the partition's", ccd, got, err)
		}
	}
	// The setup line asked Slurm about the job while it ran.
	if log, err := os.ReadFile(filepath.Join(st.Dir, "logs", "slurm-"+st.Jobs[0].ID+".out")); err != nil ||
		!strings.Contains(string(log), "partition setup ran in Reservation="+resv+"\n") {
		t.Errorf("the job's log lacks the partition's setup line naming reservation %s (%v):\n%s", resv, err, log)
	}
}
