package state

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// AddJob records a Slurm job of the run, once the front end has submitted
// it. ErrExists if a job with that ID is recorded.
func (s *Store) AddJob(j Job) error {
	if j.ID == "" {
		return fmt.Errorf("state: %s: adding a job: empty job ID", s.path)
	}
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO jobs (id, attempt, submitted, started, ended, state, exit_code, reason, host)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			j.ID, j.Attempt, nanos(j.Submitted), nanos(j.Started), nanos(j.Ended), j.State, j.ExitCode, j.Reason, j.Host)
		return err
	})
	if isUnique(err) {
		return fmt.Errorf("state: %s: job %s: %w", s.path, j.ID, ErrExists)
	}
	if err != nil {
		return s.wrap("adding job "+j.ID, err)
	}
	return nil
}

// JobStarted records that job id started at at, its rank 0 on host. The
// job's Pipeline calls it when it opens the file.
func (s *Store) JobStarted(id, host string, at time.Time) error {
	return s.updateJob(id, `UPDATE jobs SET started = ?, host = ? WHERE id = ?`, nanos(at), host, id)
}

// JobEnded records how job id ended: Slurm's state (COMPLETED, FAILED,
// TIMEOUT, ...), its exit code, a reason, and when.
func (s *Store) JobEnded(id, state string, exitCode int, reason string, at time.Time) error {
	return s.updateJob(id, `UPDATE jobs SET ended = ?, state = ?, exit_code = ?, reason = ? WHERE id = ?`,
		nanos(at), state, exitCode, reason, id)
}

// updateJob runs an update of job id, ErrNotFound if there is none.
func (s *Store) updateJob(id, query string, args ...any) error {
	var n int64
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		res, err := tx.Exec(query, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return s.wrap("updating job "+id, err)
	}
	if n == 0 {
		return fmt.Errorf("state: %s: job %s: %w", s.path, id, ErrNotFound)
	}
	return nil
}

// Jobs returns the run's jobs by attempt.
func (s *Store) Jobs() ([]Job, error) {
	rows, err := s.db.Query(`SELECT id, attempt, submitted, started, ended, state, exit_code, reason, host FROM jobs ORDER BY attempt, rowid`)
	if err != nil {
		return nil, s.wrap("listing jobs", err)
	}
	defer rows.Close()
	var js []Job
	for rows.Next() {
		var j Job
		var sub, start, end sql.NullInt64
		if err := rows.Scan(&j.ID, &j.Attempt, &sub, &start, &end, &j.State, &j.ExitCode, &j.Reason, &j.Host); err != nil {
			return nil, s.wrap("listing jobs", err)
		}
		j.Submitted, j.Started, j.Ended = fromNanos(sub), fromNanos(start), fromNanos(end)
		js = append(js, j)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("listing jobs", err)
	}
	return js, nil
}
