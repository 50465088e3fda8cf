package state

import (
	"context"
	"database/sql"
	"time"
)

// JobUsage is what a job used, as Slurm's accounting recorded it once the
// job had ended (the front end stores it: SetUsage).
type JobUsage struct {
	Job      string
	State    string // the job's state in accounting
	Elapsed  time.Duration
	CPUs     int   // allocated
	ReqMemMB int64 // the memory the job asked for, in all; 0: none recorded
	// SliceMemMB is the memory each slice of the run asked for, in
	// megabytes (the run's request, which a task's peak is measured
	// against); 0: none.
	SliceMemMB int
	Steps      []StepUsage
	Recorded   time.Time // when it was stored
}

// StepUsage is one step of a job (batch, extern, 0, 1, ...).
type StepUsage struct {
	Step, Name, State string
	Elapsed, CPU      time.Duration
	Tasks             int
	// MaxRSS is the largest resident memory of one task, in bytes, on
	// MaxRSSNode; 0 when the step was not sampled.
	MaxRSS     int64
	MaxRSSNode string
}

// CPU is the CPU time of every step of the job.
func (u JobUsage) CPU() time.Duration {
	var sum time.Duration
	for _, s := range u.Steps {
		sum += s.CPU
	}
	return sum
}

// Peak is the step whose one task held the most memory; the zero step
// when none was sampled.
func (u JobUsage) Peak() StepUsage {
	var top StepUsage
	for _, s := range u.Steps {
		if s.MaxRSS > top.MaxRSS {
			top = s
		}
	}
	return top
}

// SetUsage stores u, the final accounting of job u.Job, with its steps in
// their order, over any stored before.
func (s *Store) SetUsage(u JobUsage) error {
	if u.Recorded.IsZero() {
		u.Recorded = time.Now()
	}
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		if _, err := tx.Exec(`DELETE FROM step_usage WHERE job = ?`, u.Job); err != nil {
			return err
		}
		_, err := tx.Exec(`INSERT OR REPLACE INTO job_usage (job, state, elapsed, cpus, req_mem, slice_mem, recorded) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			u.Job, u.State, int64(u.Elapsed), u.CPUs, u.ReqMemMB, u.SliceMemMB, nanos(u.Recorded))
		for _, st := range u.Steps {
			if err != nil {
				return err
			}
			_, err = tx.Exec(`INSERT INTO step_usage (job, step, name, state, elapsed, cpu, tasks, max_rss, max_rss_node)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				u.Job, st.Step, st.Name, st.State, int64(st.Elapsed), int64(st.CPU), st.Tasks, st.MaxRSS, st.MaxRSSNode)
		}
		return err
	})
	if err != nil {
		return s.wrap("recording the usage of job "+u.Job, err)
	}
	return nil
}

// Usage returns the stored usage of the run's jobs, by job in the order
// they were recorded, each with its steps as stored.
func (s *Store) Usage() ([]JobUsage, error) {
	rows, err := s.db.Query(`SELECT u.job, u.state, u.elapsed, u.cpus, u.req_mem, u.slice_mem, u.recorded,
			coalesce(p.step, ''), coalesce(p.name, ''), coalesce(p.state, ''), coalesce(p.elapsed, 0), coalesce(p.cpu, 0),
			coalesce(p.tasks, 0), coalesce(p.max_rss, 0), coalesce(p.max_rss_node, ''), p.job IS NOT NULL
		FROM job_usage u LEFT JOIN jobs j ON j.id = u.job LEFT JOIN step_usage p ON p.job = u.job
		ORDER BY j.rowid, u.job, p.rowid`)
	if err != nil {
		return nil, s.wrap("reading job usage", err)
	}
	defer rows.Close()
	var out []JobUsage
	for rows.Next() {
		var u JobUsage
		var st StepUsage
		var elapsed, stepElapsed, cpu int64
		var recorded sql.NullInt64
		var hasStep bool
		if err := rows.Scan(&u.Job, &u.State, &elapsed, &u.CPUs, &u.ReqMemMB, &u.SliceMemMB, &recorded,
			&st.Step, &st.Name, &st.State, &stepElapsed, &cpu, &st.Tasks, &st.MaxRSS, &st.MaxRSSNode, &hasStep); err != nil {
			return nil, s.wrap("reading job usage", err)
		}
		if len(out) == 0 || out[len(out)-1].Job != u.Job {
			u.Elapsed, u.Recorded = time.Duration(elapsed), fromNanos(recorded)
			out = append(out, u)
		}
		if hasStep {
			st.Elapsed, st.CPU = time.Duration(stepElapsed), time.Duration(cpu)
			out[len(out)-1].Steps = append(out[len(out)-1].Steps, st)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("reading job usage", err)
	}
	return out, nil
}
