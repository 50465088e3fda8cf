package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stoppedRun submits a run of visits held, cancels its job before it
// starts, and waits until Slurm has it ended: a run with every visit
// pending and no live job, ready to resume.
func (e *batchEnv) stoppedRun(name string, visits int) {
	e.t.Helper()
	policy, vf := e.slowPipeline(name, visits, "0")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", name, "--hold")
	e.must(0, time.Minute, "cancel", name)
	deadline := time.Now().Add(time.Minute)
	for e.status(name).Live {
		if time.Now().After(deadline) {
			e.t.Fatalf("run %s: its cancelled job is still live", name)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// slurmNamed lists the jobs Slurm remembers whose name starts with
// prefix, as "ID STATE" lines.
func slurmNamed(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := exec.Command("squeue", "--noheader", "--states=all", "--format=%i %T %j").Output()
	if err != nil {
		t.Fatalf("squeue: %v", err)
	}
	var jobs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && strings.HasPrefix(f[2], prefix) {
			jobs = append(jobs, f[0]+" "+f[1])
		}
	}
	return jobs
}

// Four resumes of one run started at once, as separate processes: one
// submits, the others find the run locked or live; Slurm has one job of
// attempt 2, and every visit runs once.
func TestBatchConcurrentResumes(t *testing.T) {
	e := newBatchEnv(t)
	const visits, n = 4, 4
	name := fmt.Sprintf("conc-%d", time.Now().UnixNano()) // Slurm remembers earlier test runs' jobs by name
	e.stoppedRun(name, visits)
	if _, errOut, code := e.dps(time.Minute, "resume", name, "--wait-lock", "-1s"); code != exitBadInput || !strings.Contains(errOut, "--wait-lock") {
		t.Errorf("resume --wait-lock -1s: exit %d, %s; want %d naming the flag", code, errOut, exitBadInput)
	}
	cmds := make([]*exec.Cmd, n)
	outs := make([]*bytes.Buffer, n)
	for i := range cmds {
		cmds[i] = exec.Command(e.bin, "resume", name)
		cmds[i].Env = cleanEnv("DPSBATCH_SITE=" + e.site)
		outs[i] = &bytes.Buffer{}
		cmds[i].Stdout, cmds[i].Stderr = outs[i], outs[i]
	}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	submitted := 0
	for i, c := range cmds {
		c.Wait()
		code := c.ProcessState.ExitCode()
		t.Logf("resume %d: exit %d\n%s", i, code, outs[i])
		switch {
		case code == 0 && strings.Contains(outs[i].String(), "attempt 2"):
			submitted++
		case code == exitFailure && (strings.Contains(outs[i].String(), "locked by another command") ||
			strings.Contains(outs[i].String(), "still live")):
		default:
			t.Errorf("resume %d: exit %d, want 0 (submitted) or 1 (locked, or live)\n%s", i, code, outs[i])
		}
	}
	if submitted != 1 {
		t.Errorf("%d resumes submitted a job; want exactly 1", submitted)
	}
	if jobs := slurmNamed(t, name); len(jobs) != 2 {
		t.Errorf("Slurm's jobs of the run: %v; want 2 (the cancelled one, one resume)", jobs)
	}
	e.must(0, 3*time.Minute, "wait", name, "--interval", "1s")
	st := e.status(name)
	if st.Counts["done"] != visits || len(st.Jobs) != 2 {
		t.Errorf("after the resume: %+v", st)
	}
	for k, runs := range visitLogs(t, st.Dir, visits) {
		if runs != 1 {
			t.Errorf("%s ran %d times, want once", k, runs)
		}
	}
}

// A resume killed after sbatch accepted its job, before recording it
// (sbatch, wrapped, sleeps after submitting): the next resume finds the
// job by its name and adopts it, whether it is still queued (the run is
// then live) or has ended already; status lists it as the attempt's one
// job, and no second job is submitted for the attempt. Killed alone, the
// resume leaves its sbatch holding the run's lock: the next resume says
// so, and with --wait-lock waits for sbatch, then adopts the job.
func TestBatchResumeKilledMidSubmit(t *testing.T) {
	e := newBatchEnv(t)
	const visits = 3
	for _, mode := range []string{"queued", "ended", "sbatch-outlives"} {
		ended, alone := mode == "ended", mode == "sbatch-outlives"
		// Slurm remembers the jobs of earlier test runs by name: a name
		// of this run's own.
		name := fmt.Sprintf("killed-sub-%s-%d", mode, time.Now().UnixNano())
		t.Run(mode, func(t *testing.T) {
			e.t = t
			e.stoppedRun(name, visits)
			wrap := t.TempDir()
			mark := filepath.Join(wrap, "accepted")
			real, err := exec.LookPath("sbatch")
			if err != nil {
				t.Fatal(err)
			}
			// The job is held, so that it stays queued until released.
			writeFile(t, filepath.Join(wrap, "sbatch"), fmt.Sprintf("#!/bin/sh\n%s --hold \"$@\"\ns=$?\ntouch %s\nsleep 8\nexit $s\n", real, mark))
			os.Chmod(filepath.Join(wrap, "sbatch"), 0o755)
			c := exec.Command(e.bin, "resume", name)
			c.Env = cleanEnv("DPSBATCH_SITE="+e.site, "PATH="+wrap+":"+os.Getenv("PATH"))
			c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			var out bytes.Buffer
			c.Stdout, c.Stderr = &out, &out
			c.WaitDelay = time.Second // the wrapper, killed or not, holds the output pipes
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
				if _, err := os.Stat(mark); err == nil {
					break
				}
				if time.Now().After(deadline) {
					syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
					c.Wait()
					t.Fatalf("the wrapped sbatch never submitted\n%s", &out)
				}
			}
			if alone {
				c.Process.Kill() // the resume only: its sbatch lives on
			} else {
				syscall.Kill(-c.Process.Pid, syscall.SIGKILL) // the resume, the wrapper and its sleep
			}
			c.Wait()
			t.Cleanup(func() { syscall.Kill(-c.Process.Pid, syscall.SIGKILL) })
			first := e.status(name).Jobs
			all := slurmNamed(t, name)
			if len(first) != 1 || len(all) != 2 {
				t.Fatalf("Slurm's jobs of the run: %v, the state's %+v; want the first job and the one the killed resume submitted, unrecorded", all, first)
			}
			id := strings.Fields(all[0])[0]
			if id == first[0].ID {
				id = strings.Fields(all[1])[0]
			}
			t.Cleanup(func() { exec.Command("scancel", id).Run() })
			lostState := func() string {
				for _, j := range slurmNamed(t, name) {
					if f := strings.Fields(j); f[0] == id {
						return f[1]
					}
				}
				return ""
			}
			if ended {
				if out, err := exec.Command("scancel", id).CombinedOutput(); err != nil {
					t.Fatalf("scancel: %v %s", err, out)
				}
				for deadline := time.Now().Add(time.Minute); lostState() != "CANCELLED"; time.Sleep(300 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("job %s not cancelled", id)
					}
				}
				out := e.must(0, time.Minute, "resume", name)
				if !strings.Contains(out, "attempt 3") {
					t.Errorf("second resume:\n%s\nwant attempt 3 submitted", out)
				}
			} else {
				args := []string{"resume", name}
				if alone {
					_, errOut, code := e.dps(time.Minute, args...)
					if code != exitFailure || !strings.Contains(errOut, "locked by another command") || !strings.Contains(errOut, "that process is gone") {
						t.Errorf("resume while the killed resume's sbatch runs: exit %d\n%s\nwant 1, locked by a program the gone resume started", code, errOut)
					}
					args = append(args, "--wait-lock", "2m")
				}
				_, errOut, code := e.dps(3*time.Minute, args...)
				if code != exitFailure || !strings.Contains(errOut, id+" pending") {
					t.Errorf("second resume: exit %d\n%s\nwant 1, the run live with job %s", code, errOut, id)
				}
				if out, err := exec.Command("scontrol", "release", id).CombinedOutput(); err != nil {
					t.Fatalf("scontrol release: %v %s", err, out)
				}
			}
			want := 2 // the first job and the adopted one
			if ended {
				want = 3 // and attempt 3's
			}
			if jobs := slurmNamed(t, name); len(jobs) != want {
				t.Errorf("Slurm's jobs of the run: %v; want %d", jobs, want)
			}
			e.must(0, 3*time.Minute, "wait", name, "--interval", "1s")
			st := e.status(name)
			var attempt2 []string
			for _, j := range st.Jobs {
				if j.Attempt == 2 {
					attempt2 = append(attempt2, j.ID)
				}
			}
			if len(attempt2) != 1 || attempt2[0] != id || st.Counts["done"] != visits {
				t.Errorf("status: attempt 2 jobs %v, want [%s]; %+v", attempt2, id, st)
			}
			for k, runs := range visitLogs(t, st.Dir, visits) {
				if runs != 1 {
					t.Errorf("%s ran %d times, want once", k, runs)
				}
			}
		})
	}
}

// Two jobs of one run started together (the run's held job and a copy of
// it submitted by hand, released at once): one runs the visits, the
// other waits for it to end and says so in its log; every visit runs
// once, and both jobs are recorded.
func TestBatchTwoJobsOfARunStartedTogether(t *testing.T) {
	e := newBatchEnv(t)
	const visits = 6
	name := fmt.Sprintf("twin-%d", time.Now().UnixNano())
	policy, vf := e.slowPipeline(name, visits, "1")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", name, "--hold")
	st := e.status(name)
	first := st.Jobs[0].ID
	out, err := exec.Command("sbatch", "--hold", "--parsable", "--chdir="+st.Dir, filepath.Join(st.Dir, "scripts", "attempt-1.sbatch")).Output()
	if err != nil {
		t.Fatalf("sbatch: %v", err)
	}
	second := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("scancel", first, second).Run() })
	if out, err := exec.Command("scontrol", "release", first+","+second).CombinedOutput(); err != nil {
		t.Fatalf("scontrol release: %v %s", err, out)
	}
	// wait follows the recorded jobs; the second records itself when it
	// starts. Wait until Slurm has both ended.
	for deadline := time.Now().Add(4 * time.Minute); ; time.Sleep(time.Second) {
		live := 0
		for _, j := range slurmNamed(t, name) {
			if f := strings.Fields(j); f[1] == "PENDING" || f[1] == "RUNNING" || f[1] == "COMPLETING" {
				live++
			}
		}
		if live == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the jobs of the run did not end: %v", slurmNamed(t, name))
		}
	}
	st = e.status(name)
	if st.Counts["done"] != visits || len(st.Jobs) != 2 {
		t.Errorf("after both jobs: %+v; want every visit done, both jobs recorded", st)
	}
	for _, j := range st.Jobs {
		if j.Recorded != "COMPLETED" {
			t.Errorf("job %s recorded %s (%s); want completed, the waiting one having found nothing left", j.ID, j.Recorded, j.Reason)
		}
	}
	waited := 0
	for _, id := range []string{first, second} {
		log, _ := os.ReadFile(filepath.Join(st.Dir, "logs", "slurm-"+id+".out"))
		if strings.Contains(string(log), "another job of the run is running its visits") {
			waited++
		}
	}
	if waited != 1 {
		t.Errorf("%d jobs logged that they waited for the other; want 1", waited)
	}
	for k, runs := range visitLogs(t, st.Dir, visits) {
		if runs != 1 {
			t.Errorf("%s ran %d times, want once", k, runs)
		}
	}
}
