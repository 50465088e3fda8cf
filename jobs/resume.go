package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/site"
	"github.com/dpsbatch/dpsbatch/state"
)

// ResumeOptions is a new job for what a run left unfinished.
type ResumeOptions struct {
	Site    *site.Site
	Backend scheduler.Backend
	Dir     string // the run directory
	// MaxAttempts leaves out visits already tried that many times
	// (0: no limit); they stay failed or interrupted and are reported.
	MaxAttempts int
	AutoResume  int
	DryRun      bool
	Out         io.Writer
	Now         func() time.Time
}

// ResumeResult adds to Submitted what resume found.
type ResumeResult struct {
	Submitted
	Retried   int      `json:"retried"`             // failed or interrupted visits made pending again
	Exhausted []string `json:"exhausted,omitempty"` // visits at --max-attempts, left as they are
	Complete  bool     `json:"complete,omitempty"`  // nothing left to run: nothing submitted
}

// Resume submits a new job (and AutoResume follow-ons) for the run's
// unfinished visits: pending ones, interrupted ones and failed ones, as
// long as they have had fewer than MaxAttempts tries. Visits a dead job
// left running count as interrupted. It refuses (ErrRunLive) while a job
// of the run is pending or running, and changes nothing then. When every
// visit is done it submits nothing and says so.
func Resume(ctx context.Context, o ResumeOptions) (*ResumeResult, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	if o.MaxAttempts < 0 || o.AutoResume < 0 {
		return nil, fmt.Errorf("%w: --max-attempts and --auto-resume must be 0 or more", conf.ErrInvalid)
	}
	rs, err := Status(ctx, o.Backend, []string{o.Dir})
	if err != nil {
		return nil, err
	}
	if rs[0].Live {
		var live []string
		for _, j := range rs[0].Jobs {
			if j.Live {
				live = append(live, j.ID+" "+strings.ToLower(j.State))
			}
		}
		return nil, fmt.Errorf("%w: run %s: job %s (dpsbatch cancel %s, or wait for it)", ErrRunLive, rs[0].Run, strings.Join(live, ", "), rs[0].Run)
	}
	l := Layout{Dir: o.Dir}
	st, err := state.Open(l.State())
	if err != nil {
		return nil, err
	}
	defer func() {
		if st != nil {
			st.Close()
		}
	}()
	run, err := st.Run()
	if err != nil {
		return nil, err
	}
	var set settings
	if err := json.Unmarshal([]byte(run.Settings), &set); err != nil {
		return nil, fmt.Errorf("jobs: %s: run settings: %w", l.State(), err)
	}
	if len(set.Pipelines) > 0 {
		st.Close()
		st = nil
		return resumeProduction(ctx, o, run, set, now)
	}
	p, err := harness.Load(l.Policy())
	if err != nil {
		return nil, err
	}
	p.Dir = set.PipelineDir
	if err := samePolicy(run, p); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	planned, err := PlanRun(o.Site, p, set.Request)
	if err != nil {
		return nil, err
	}
	jobs, err := st.Jobs()
	if err != nil {
		return nil, err
	}
	attempt := 1
	for _, j := range jobs {
		attempt = max(attempt, j.Attempt+1)
	}
	tmpl, err := loadTemplate(o.Site)
	if err != nil {
		return nil, err
	}
	scripts, err := renderChain(tmpl, o.Site, l, runJob{name: run.Name, set: set, plan: planned.Plan}, attempt, o.AutoResume)
	if err != nil {
		return nil, err
	}
	res := &ResumeResult{Submitted: Submitted{Run: run.Name, Dir: o.Dir, Attempt: attempt, Plan: planned.Plan,
		Script: l.Script(attempt), State: l.State(), DryRun: o.DryRun}}

	if o.DryRun {
		// What would run, without changing the state file.
		counts, err := st.Counts()
		if err != nil {
			return nil, err
		}
		res.Visits = counts[state.Pending] + counts[state.Interrupted] + counts[state.Running] + counts[state.Failed]
		if o.MaxAttempts > 0 { // at most: some failed ones may be at the limit
			fmt.Fprintf(o.Out, "at most %d visits would run (--max-attempts %d may leave some out)\n", res.Visits, o.MaxAttempts)
		}
		printDry(o.Out, &res.Submitted, planned, scripts)
		return res, nil
	}
	if _, err := st.InterruptRunning("the job that ran it ended before it finished"); err != nil {
		return nil, err
	}
	if res.Retried, res.Exhausted, err = st.Retry(o.MaxAttempts); err != nil {
		return nil, err
	}
	ids, err := st.Runnable()
	if err != nil {
		return nil, err
	}
	res.Visits = len(ids)
	if len(ids) == 0 && !(set.Listen && run.InputClosed.IsZero()) {
		res.Complete = true
		return res, nil
	}
	if err := writeScripts(l, scripts, attempt); err != nil {
		return nil, err
	}
	st.Close()
	st = nil
	if err := submitChain(ctx, o.Backend, l, []Layout{l}, scripts, attempt, now, &res.Submitted); err != nil {
		return nil, err
	}
	return res, nil
}
