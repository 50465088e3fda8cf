package main

import (
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/jobs"
	"github.com/dpsbatch/dpsbatch/site"
)

// recordRunUsage stores what the ended jobs of the run in dir used, from
// Slurm's accounting, as status does, for a command that then reads the
// state files itself (report). Without Slurm's tools, or when Slurm
// cannot be asked, it says why on stderr and the command goes on with
// what is stored.
func recordRunUsage(c *cli.Context, s *site.Site, dir string) {
	b, err := backend(s)
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "dpsbatch: usage not asked: %v\n", err)
		return
	}
	all, err := jobs.Status(c.Context, b, []string{dir})
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "dpsbatch: usage not asked: %v\n", err)
		return
	}
	jobs.RecordUsage(c.Context, b, all)
	if all[0].UsageNote != "" {
		fmt.Fprintf(c.App.ErrWriter, "dpsbatch: %s\n", all[0].UsageNote)
	}
}

// printJobUsage writes what an ended job used, from accounting, or that
// accounting has not given it yet.
func printJobUsage(w io.Writer, j jobs.JobStatus) {
	u := j.Usage
	switch {
	case u != nil:
		fmt.Fprintf(w, "    used: %s elapsed, %s of CPU on %d CPUs", secondsText(u.ElapsedSeconds), secondsText(u.CPUSeconds), u.CPUs)
		if u.MaxRSSBytes > 0 {
			fmt.Fprintf(w, ", peak memory of one task %s (step %s on %s)", bytesText(uint64(u.MaxRSSBytes)), u.MaxRSSStep, u.MaxRSSNode)
		}
		fmt.Fprintln(w)
	case !j.Live && j.Source != "state" && j.Requeued == nil:
		fmt.Fprintf(w, "    used: not in Slurm's accounting yet (asked again next time)\n")
	}
}

// printRunUsage writes the run's usage totals: time, CPU time, and the
// peak memory of one task against what each slice asked for.
func printRunUsage(w io.Writer, rs jobs.RunStatus) {
	if u := rs.Usage; u != nil {
		jobsText := "1 job"
		if u.Jobs != 1 {
			jobsText = fmt.Sprintf("%d jobs", u.Jobs)
		}
		fmt.Fprintf(w, "  usage (%s, from accounting): %s elapsed, %s of CPU", jobsText, secondsText(u.ElapsedSeconds), secondsText(u.CPUSeconds))
		switch {
		case u.MaxRSSBytes == 0:
			fmt.Fprintf(w, "; memory not sampled")
		case u.MemPerSliceMB > 0:
			asked := uint64(u.MemPerSliceMB) << 20
			fmt.Fprintf(w, "; peak memory of one task %s (job %s), %.0f%% of the %s each slice asked for",
				bytesText(uint64(u.MaxRSSBytes)), u.MaxRSSJob, 100*float64(u.MaxRSSBytes)/float64(asked), bytesText(asked))
		default:
			fmt.Fprintf(w, "; peak memory of one task %s (job %s); the slices asked for no memory (--mem-per-slice)",
				bytesText(uint64(u.MaxRSSBytes)), u.MaxRSSJob)
		}
		fmt.Fprintln(w)
	}
	if rs.UsageNote != "" {
		fmt.Fprintf(w, "  %s\n", rs.UsageNote)
	}
}

// secondsText is a number of seconds as a duration a person reads.
func secondsText(s float64) string {
	d := time.Duration(s * float64(time.Second))
	if d >= time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(time.Millisecond).String()
}
