package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/capture"
	"github.com/dpsbatch/dpsbatch/internal/slurmtime"
	"github.com/dpsbatch/dpsbatch/jobs"
	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/site"
	"github.com/dpsbatch/dpsbatch/state"
)

// The batch commands (submit, status, wait, cancel, resume, runs, site)
// share the site file flag and the Slurm backend.

func siteFlag() cli.Flag {
	return &cli.StringFlag{Name: "site", EnvVars: []string{"DPSBATCH_SITE"},
		Usage: "site file describing the cluster's partitions, launcher and runs root (or $DPSBATCH_SITE)"}
}

// loadSite loads the site file named by --site; required says whether a
// command cannot do without one.
func loadSite(c *cli.Context, required bool) (*site.Site, error) {
	path := c.String("site")
	if path == "" {
		if !required {
			return nil, nil
		}
		return nil, badInput("no site file: pass --site FILE or set DPSBATCH_SITE (`dpsbatch site discover` writes a first one)")
	}
	return site.Load(path)
}

// backend is the Slurm backend the commands use: the one the site file
// chooses (its scheduler section), else the command-line tools.
func backend(s *site.Site) (scheduler.Backend, error) {
	return scheduler.ForSite(s)
}

// resolveRuns turns RUN arguments into run directories.
func resolveRuns(c *cli.Context, s *site.Site) ([]string, error) {
	var dirs []string
	for _, a := range c.Args().Slice() {
		d, err := jobs.ResolveRun(s, a)
		if err != nil {
			return nil, err
		}
		dirs = append(dirs, d)
	}
	return dirs, nil
}

// manyRuns is what a command over one or more runs (status, monitor)
// needs: their run directories and the Slurm backend of the site file,
// if one is given.
func manyRuns(c *cli.Context) ([]string, scheduler.Backend, error) {
	s, err := loadSite(c, false)
	if err != nil {
		return nil, nil, err
	}
	dirs, err := resolveRuns(c, s)
	if err != nil {
		return nil, nil, err
	}
	b, err := backend(s)
	return dirs, b, err
}

// runDir is the run directory of a command over one run that reads its
// files only (events, report): the site file, if given, names the runs
// root.
func runDir(c *cli.Context) (string, error) {
	s, err := loadSite(c, false)
	if err != nil {
		return "", err
	}
	return oneRun(c, s)
}

// oneRun resolves the single RUN argument of a command.
func oneRun(c *cli.Context, s *site.Site) (string, error) {
	if c.NArg() != 1 {
		return "", badInput("%s takes one RUN (a run directory, or a run's name under the site's runs root), got %d arguments", c.Command.Name, c.NArg())
	}
	dirs, err := resolveRuns(c, s)
	if err != nil {
		return "", err
	}
	return dirs[0], nil
}

// runTarget is what a command acting on one run needs: the site file
// (when given; required for commands that plan), the run directory and
// the Slurm backend.
type runTarget struct {
	site *site.Site
	dir  string
	b    scheduler.Backend
}

func openRun(c *cli.Context, siteRequired bool) (runTarget, error) {
	var t runTarget
	var err error
	if t.site, err = loadSite(c, siteRequired); err != nil {
		return t, err
	}
	if t.dir, err = oneRun(c, t.site); err != nil {
		return t, err
	}
	t.b, err = backend(t.site)
	return t, err
}

// printJSON writes v as indented JSON, with <, > and & as themselves
// (the output is read by scripts and people, never embedded in HTML).
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// printStatus writes one run's status for people.
func printStatus(w io.Writer, rs jobs.RunStatus) {
	what := rs.Pipeline
	if len(rs.Pipelines) > 0 {
		what = fmt.Sprintf("production %s of %d pipelines", rs.Pipeline, len(rs.Pipelines))
	}
	where := "partition " + rs.Partition
	if rs.Partition == "" {
		where = "on this machine" // a local run's: no allocation
	}
	fmt.Fprintf(w, "run %s (%s, %s): %s\n", rs.Run, what, where, rs.Outcome)
	printRequest(w, rs.Request)
	fmt.Fprintf(w, "  visits: %s\n", visitCounts(rs))
	printDataIDs(w, rs)
	for _, ps := range rs.Pipelines {
		fmt.Fprintf(w, "  pipeline %s: %s", ps.Pipeline, visitCounts(ps))
		for _, j := range ps.Jobs {
			if j.Live && j.Recorded != "" {
				fmt.Fprintf(w, "; job %s %s", j.ID, strings.ToLower(j.Recorded))
			}
			if j.Silent {
				fmt.Fprintf(w, "; SILENT")
			}
		}
		switch {
		case !ps.InputClosed.IsZero():
			fmt.Fprintf(w, "; input closed (%s)", ps.InputClosedWhy)
		case ps.Listen:
			fmt.Fprintf(w, "; listening")
		}
		fmt.Fprintln(w)
	}
	if rs.Rate > 0 {
		fmt.Fprintf(w, "  rate: %.3g visits/s", rs.Rate)
		if rs.ETA > 0 {
			fmt.Fprintf(w, ", about %s left", rs.ETA.Round(time.Second))
		}
		fmt.Fprintln(w)
	}
	if rs.DroppedEvents > 0 {
		fmt.Fprintf(w, "  events dropped: %d, undecodable or malformed (dpsbatch events %s lists them)\n", rs.DroppedEvents, rs.Run)
	}
	for _, j := range rs.Jobs {
		shown := strings.ToLower(j.State)
		if j.Requeued != nil {
			shown = "requeued, " + shown
		}
		fmt.Fprintf(w, "  job %s (attempt %d): %s", j.ID, j.Attempt, shown)
		if !j.Live && j.Source != "state" {
			fmt.Fprintf(w, ", exit %d", j.ExitCode)
		}
		fmt.Fprintf(w, " [%s]", j.Source)
		if j.Reason != "" {
			fmt.Fprintf(w, ": %s", strings.TrimSuffix(j.Reason, "; "))
		}
		switch {
		case j.KilledForMemory != "":
			fmt.Fprintf(w, " — killed for memory (%s)", j.KilledForMemory)
		case j.Died && rs.DiskFull != nil:
			fmt.Fprintf(w, " — ended without recording why, and the run directory's file system is full (%s free of %s): out of disk space?",
				bytesText(rs.DiskFull.Free), bytesText(rs.DiskFull.Size))
		case j.Died:
			fmt.Fprintf(w, " — ended without recording why (killed, node failure or out of memory?)")
		}
		fmt.Fprintln(w)
		printStarts(w, j)
		printJobUsage(w, j)
		if j.Live && !j.Heartbeat.IsZero() {
			fmt.Fprintf(w, "    heartbeat %s ago", time.Since(j.Heartbeat).Round(time.Second))
			if j.HeartbeatVisit != "" {
				fmt.Fprintf(w, ", in visit %s", j.HeartbeatVisit)
			}
			fmt.Fprintln(w)
		}
		if j.Silent {
			fmt.Fprintf(w, "    SILENT: Slurm says running, but the Pipeline has not said it is alive for over 3 heartbeats (%s each): hung, stopped or cut off? (dpsbatch cancel, then resume)\n", rs.Heartbeat)
		}
		if j.Live && j.Broker != "" {
			fmt.Fprintf(w, "    broker: %s\n", j.Broker)
		}
	}
	switch {
	case len(rs.Pipelines) > 0:
	case !rs.InputClosed.IsZero():
		fmt.Fprintf(w, "  input closed %s: %s\n", rs.InputClosed.Local().Format("2006-01-02 15:04:05"), rs.InputClosedWhy)
	case rs.Listen:
		fmt.Fprintf(w, "  listening for trigger events after its visit list (dpsbatch finish %s ends it)\n", rs.Run)
	}
	printRunUsage(w, rs)
	fmt.Fprintf(w, "  state file: %s/%s (journal %s)\n", rs.Dir, rundir.StateFile, rs.Journal)
	if rs.Failures != nil {
		fmt.Fprintf(w, "  failures (%d):\n", len(rs.Failures))
		printCaptureLimit(w, rs)
		for _, f := range rs.Failures {
			fmt.Fprintf(w, "    %s\n", f)
		}
	}
	if rs.Outputs != nil {
		fmt.Fprintf(w, "  outputs (%d):\n", len(rs.Outputs))
		for _, o := range rs.Outputs {
			fmt.Fprintf(w, "    %s\n", o)
		}
	}
}

// bytesText is n in B, KiB, MiB, GiB or TiB.
func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 3 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGT"[i])
}

// printStarts writes, for a job Slurm requeued, why and when it starts
// again, and each of its starts.
func printStarts(w io.Writer, j jobs.JobStatus) {
	const when = "2006-01-02 15:04:05"
	if q := j.Requeued; q != nil {
		fmt.Fprintf(w, "    Slurm requeued it after start %d: %s", q.Starts, q.Why)
		if q.SlurmState != "" {
			fmt.Fprintf(w, " [%s]", q.SlurmState)
		}
		fmt.Fprintln(w)
		if !q.Earliest.IsZero() {
			fmt.Fprintf(w, "    starts again at the earliest %s", q.Earliest.Local().Format(when))
			if q.Waiting != "" {
				fmt.Fprintf(w, " (%s)", q.Waiting)
			}
			fmt.Fprintln(w)
		}
	}
	for i, s := range j.Starts {
		fmt.Fprintf(w, "    start %d", s.Restart+1)
		if s.Host != "" {
			fmt.Fprintf(w, " on %s", s.Host)
		}
		if !s.Started.IsZero() {
			fmt.Fprintf(w, ", %s", s.Started.Local().Format(when))
		}
		if !s.Ended.IsZero() {
			fmt.Fprintf(w, " to %s", s.Ended.Local().Format(when))
		}
		switch {
		case s.State != "" && s.Reason != "":
			fmt.Fprintf(w, ": %s, %s", s.State, s.Reason)
		case s.State != "":
			fmt.Fprintf(w, ": %s", s.State)
		case i == len(j.Starts)-1 && j.Live:
			fmt.Fprintf(w, ": running")
		case s.Ended.IsZero():
			fmt.Fprintf(w, ": no end recorded")
		}
		fmt.Fprintln(w)
	}
}

// visitCounts is "12 (10 done, 2 pending)".
// printDataIDs writes the data IDs' counts by outcome and the failed
// ones the status lists, each with its error (the end of a program's
// stderr indented under it).
func printDataIDs(w io.Writer, rs jobs.RunStatus) {
	if line := rs.DataIDCounts(); line != "" {
		fmt.Fprintf(w, "  data IDs: %s\n", line)
	}
	if len(rs.FailedDataIDs) == 0 {
		return
	}
	fmt.Fprintln(w, "  failed data IDs (resume runs them again):")
	for _, f := range rs.FailedDataIDs {
		fmt.Fprintf(w, "    %s\n", strings.ReplaceAll(f.String(), "\n", "\n      "))
	}
	if n := rs.DataIDs[state.DataIDFailed]; n > len(rs.FailedDataIDs) {
		fmt.Fprintf(w, "    ... and %d more (dpsbatch status --failures %s)\n", n-len(rs.FailedDataIDs), rs.Run)
	}
}

func visitCounts(rs jobs.RunStatus) string {
	var parts []string
	for _, k := range []state.VisitState{state.Done, state.Failed, state.Running, state.Interrupted, state.Pending} {
		if n := rs.Counts[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, k))
		}
	}
	if len(parts) == 0 {
		return fmt.Sprint(rs.Visits)
	}
	return fmt.Sprintf("%d (%s)", rs.Visits, strings.Join(parts, ", "))
}

var stdout io.Writer = os.Stdout

// printRequest writes what the run's next job asks for, when it asks for
// more than the defaults.
func printRequest(w io.Writer, r jobs.RunRequest) {
	var asks []string
	if r.Slices > 0 {
		asks = append(asks, plural(r.Slices, "slice"))
	}
	if r.MemPerSliceMB > 0 {
		asks = append(asks, fmt.Sprintf("%dM per slice", r.MemPerSliceMB))
	}
	if r.Time > 0 {
		asks = append(asks, "time "+slurmtime.Format(r.Time))
	}
	if len(asks) > 0 {
		fmt.Fprintf(w, "  request: %s\n", strings.Join(asks, ", "))
	}
	if r.GrowLeft > 0 {
		fmt.Fprintf(w, "  growth on: its jobs may submit %s more, each at its end\n", plural(r.GrowLeft, "job"))
	}
	if r.Grown != "" {
		fmt.Fprintf(w, "  grown: %s\n", r.Grown)
	}
}

// printCaptureLimit says so when the run's (or a step's) captures
// reached their size limit: later failures have none.
func printCaptureLimit(w io.Writer, rs jobs.RunStatus) {
	dirs := []string{rs.Dir}
	for _, ps := range rs.Pipelines {
		dirs = append(dirs, ps.Dir)
	}
	for _, d := range dirs {
		if msg := capture.LimitReached(d); msg != "" {
			fmt.Fprintf(w, "    note: %s\n", msg)
		}
	}
}
