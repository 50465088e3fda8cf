package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/slurmtime"
	"github.com/dpsbatch/dpsbatch/scheduler/slurmrest"
)

// Usage is what Slurm's accounting recorded a job used: its elapsed time,
// the CPUs and memory it was given, and each step's time, CPU time and
// peak memory. Both backends read the same fields (sacct's ElapsedRaw,
// AllocCPUS, ReqMem, and per step TotalCPU, NTasks, MaxRSS, MaxRSSNode;
// slurmrestd's dbv0.0.38 job with its steps), to the same precision. A
// job Slurm requeued is its latest start.
type Usage struct {
	Job   string
	State string // the job's state in accounting
	// Final is set once the job and every step of it have ended:
	// accounting will not change the record any more. A running job's
	// usage, or one whose end accounting has not heard of, is not final.
	Final    bool
	Elapsed  time.Duration
	CPUs     int   // allocated
	ReqMemMB int64 // the memory the job asked for, in all (ReqMem); 0: none recorded
	Steps    []StepUsage
}

// StepUsage is one step of a job: batch (the script), extern, 0, 1, ...
type StepUsage struct {
	Step, Name, State string
	Elapsed           time.Duration
	// CPU is the user and system time of the step's tasks (TotalCPU), to
	// the millisecond under an hour and to the second above, as sacct
	// prints it.
	CPU   time.Duration
	Tasks int
	// MaxRSS is the largest resident memory of one of its tasks, in
	// bytes, and the node it ran on; 0 when the step was not sampled
	// (Slurm samples every JobAcctGatherFrequency, and at a step's end).
	MaxRSS     int64
	MaxRSSNode string
}

// CPU is the CPU time of every step of the job.
func (u Usage) CPU() time.Duration {
	var sum time.Duration
	for _, s := range u.Steps {
		sum += s.CPU
	}
	return sum
}

// UsageReader is a Backend that reads what jobs used from accounting.
// Without accounting its Usage returns ErrNoAccounting.
type UsageReader interface {
	// Usage asks accounting about the jobs ids; a job accounting does not
	// know (yet) is absent.
	Usage(ctx context.Context, ids []string) (map[string]Usage, error)
}

// usageFormat is the --format of Usage's sacct; JobName, free text, last.
const usageFormat = "JobID,State,Start,ElapsedRaw,TotalCPU,AllocCPUS,ReqMem,NTasks,MaxRSS,MaxRSSNode,JobName"

// Usage runs sacct with a line per job and per step (no --allocations)
// for ids, in chunks.
func (c *CLI) Usage(ctx context.Context, ids []string) (map[string]Usage, error) {
	got := map[string]Usage{}
	err := c.sacctRun(ctx, ids, []string{"--format=" + usageFormat}, func(out []byte) error {
		us, err := parseUsage(out)
		for id, u := range us {
			got[id] = u
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return got, nil
}

// parseUsage reads sacct --parsable2 --noheader --format=usageFormat, with
// times as epoch seconds: each job's line, then its steps' (ID.STEP).
func parseUsage(out []byte) (map[string]Usage, error) {
	got := map[string]Usage{}
	started := map[string]bool{}
	n := strings.Count(usageFormat, ",") + 1
	for i, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.SplitN(line, "|", n)
		if len(f) != n {
			return got, fmt.Errorf("scheduler: sacct output line %d: want %d fields (%s), got %q", i+1, n, usageFormat, line)
		}
		cpu, err := sacctCPU(f[4])
		if err != nil {
			return got, fmt.Errorf("scheduler: sacct output line %d: TotalCPU: %w", i+1, err)
		}
		state, _, _ := strings.Cut(f[1], " ") // "CANCELLED by 0"
		elapsed := time.Duration(atoi(f[3])) * time.Second
		job, step, isStep := strings.Cut(f[0], ".")
		u := got[job]
		if !isStep {
			u.Job, u.State, u.Elapsed, u.CPUs, u.ReqMemMB = job, strings.ToUpper(state), elapsed, atoi(f[5]), memMB(f[6], atoi(f[5]))
			started[job] = !sacctTime(f[2]).IsZero()
		} else {
			u.Steps = append(u.Steps, StepUsage{Step: step, Name: f[10], State: strings.ToUpper(state), Elapsed: elapsed, CPU: cpu,
				Tasks: atoi(f[7]), MaxRSS: memBytes(f[8]), MaxRSSNode: f[9]})
		}
		got[job] = u
	}
	for id, u := range got {
		if u.Job == "" { // steps without their job's line
			delete(got, id)
			continue
		}
		u.Final = final(u, started[id])
		got[id] = u
	}
	return got, nil
}

// final reports whether a job's usage will not change: the job and every
// step have ended, and it started (or was never given a step: cancelled
// while pending). Accounting may hold a job's end a few seconds before its
// start: not final yet.
func final(u Usage, started bool) bool {
	if (Job{State: u.State}).Live() || !started && len(u.Steps) > 0 {
		return false
	}
	for _, s := range u.Steps {
		if (Job{State: s.State}).Live() {
			return false
		}
	}
	return true
}

// sacctCPU reads sacct's TotalCPU: [D-][HH:]MM:SS[.mmm].
func sacctCPU(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	whole, frac, _ := strings.Cut(s, ".")
	d, err := slurmtime.Parse(whole)
	if err != nil || !strings.Contains(whole, ":") {
		return 0, fmt.Errorf("%q is not [D-][HH:]MM:SS[.mmm]", s)
	}
	if frac != "" {
		ms, err := strconv.Atoi(frac)
		if err != nil || len(frac) != 3 {
			return 0, fmt.Errorf("%q is not [D-][HH:]MM:SS[.mmm]", s)
		}
		d += time.Duration(ms) * time.Millisecond
	}
	return d, nil
}

// sacctPrecision is d as sacct prints a CPU time: to the millisecond
// under an hour, to the second above, cut (not rounded).
func sacctPrecision(d time.Duration) time.Duration {
	if d >= time.Hour {
		return d.Truncate(time.Second)
	}
	return d.Truncate(time.Millisecond)
}

// memUnits are sacct's memory units, in kibibytes.
var memUnits = map[byte]float64{'K': 1, 'M': 1 << 10, 'G': 1 << 20, 'T': 1 << 30, 'P': 1 << 40}

// memKiB reads a memory size as sacct prints it (136172K, 200M, 1.50G; a
// bare number, such as 0, in kibibytes), in kibibytes: older Slurm's
// suffix per CPU (c) sets perCPU, per node (n) is cut. "" is 0.
func memKiB(s string) (kib float64, perCPU bool) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "c") || strings.HasSuffix(s, "n") {
		perCPU = strings.HasSuffix(s, "c")
		s = s[:len(s)-1]
	}
	unit := 1.0
	if s != "" {
		if u, ok := memUnits[s[len(s)-1]]; ok {
			unit, s = u, s[:len(s)-1]
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return 0, false
	}
	return v * unit, perCPU
}

// memBytes is a MaxRSS in bytes.
func memBytes(s string) int64 {
	kib, _ := memKiB(s)
	return int64(kib * 1024)
}

// memMB is a ReqMem in megabytes, for the whole job of cpus CPUs.
func memMB(s string, cpus int) int64 {
	kib, perCPU := memKiB(s)
	if perCPU {
		kib *= float64(cpus)
	}
	return int64(kib / 1024)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// Usage asks accounting about each job of ids.
func (r *REST) Usage(ctx context.Context, ids []string) (map[string]Usage, error) {
	want, err := idSet(ids)
	if err != nil {
		return nil, err
	}
	got := make(map[string]Usage, len(want))
	for id := range want {
		u, err := r.c.FinishedUsage(ctx, id)
		switch {
		case errors.Is(err, slurmrest.ErrNoJob):
			continue
		case err != nil:
			return nil, restAccounting(err)
		}
		got[id] = fromRESTUsage(u)
	}
	return got, nil
}

// fromRESTUsage is the client's usage as sacct gives it.
func fromRESTUsage(ru slurmrest.Usage) Usage {
	u := Usage{Job: ru.JobID, State: ru.State, Elapsed: ru.Elapsed, CPUs: ru.CPUs, ReqMemMB: ru.ReqMemMB}
	for _, s := range ru.Steps {
		u.Steps = append(u.Steps, StepUsage{Step: s.ID, Name: s.Name, State: s.State, Elapsed: s.Elapsed,
			CPU: sacctPrecision(s.CPU), Tasks: s.Tasks, MaxRSS: s.MaxRSS, MaxRSSNode: s.MaxRSSNode})
	}
	u.Final = final(u, !ru.Started.IsZero())
	return u
}

var (
	_ UsageReader = (*CLI)(nil)
	_ UsageReader = (*REST)(nil)
)
