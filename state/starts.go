package state

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// JobStart is one start of a Slurm job. Slurm runs a job it requeues (a
// node failure, `scontrol requeue`, preemption) again under the same job
// ID: each start has its own record, and the job's own (Job) describes
// its latest start.
type JobStart struct {
	Job string
	// Restart is Slurm's SLURM_RESTART_COUNT for the start: 0 on the
	// first, n after Slurm requeued the job n times.
	Restart int
	Host    string // where rank 0 ran
	Started time.Time
	// Ended is zero while the start runs, or when it ended without
	// recording it (then, once the job starts again, the last sign of
	// life it gave: its last heartbeat, else its start).
	Ended time.Time
	// State is how the start ended: rank 0's record (COMPLETED,
	// VISITS_FAILED, STOPPED, FAILED), or, for a start Slurm requeued,
	// Slurm's words for why (REQUEUED, NODE_FAIL, PREEMPTED, ...).
	State    string
	ExitCode int
	Reason   string
}

// JobSubmitted is a job's State from its submission (AdoptJob) until its
// rank 0 records an end (JobEnded), and again when a requeued job starts
// anew.
const JobSubmitted = "SUBMITTED"

// Requeued is the State a start gets when the job starts again and Slurm's
// own word for why is not known (SetStartEnd records it when it is).
const Requeued = "REQUEUED"

// StartJob records that job id started on host at at, as its restart-th
// start (Slurm's SLURM_RESTART_COUNT, 0 on the first start). The job's
// Pipeline (or a production's broker) calls it when it starts; ErrNotFound
// if no job has that ID.
//
// In one transaction: the start gets its own record; each earlier start
// of the job is recorded as ended by a requeue (Requeued, and the reason
// rank 0 recorded kept after it, since a requeue reaches the job as a
// SIGTERM it may have taken for a stop), ending at its recorded end, else
// its last heartbeat, else its start; and when restart is above 0 the
// job's own record is its new start's: started, host, and no end, exit
// code, reason, heartbeat or broker address of an earlier start.
func (s *Store) StartJob(id string, restart int, host string, at time.Time) error {
	if restart < 0 {
		return fmt.Errorf("state: %s: job %s: restart count %d is negative", s.path, id, restart)
	}
	var found bool
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		var err error
		found, err = startJob(tx, id, restart, host, at)
		return err
	})
	if err != nil {
		return s.wrap("recording the start of job "+id, err)
	}
	if !found {
		return fmt.Errorf("state: %s: job %s: %w", s.path, id, ErrNotFound)
	}
	return nil
}

// startJob is StartJob's transaction (ClaimRun's too); found is false when
// no job has that ID.
func startJob(tx *sql.Tx, id string, restart int, host string, at time.Time) (found bool, err error) {
	var beat sql.NullInt64
	err = tx.QueryRow(`SELECT heartbeat FROM jobs WHERE id = ?`, id).Scan(&beat)
	if err == sql.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	found = true
	if restart > 0 {
		_, err := tx.Exec(`UPDATE job_starts SET
			ended = coalesce(ended, CASE WHEN ?1 > started THEN ?1 END, started),
			reason = CASE WHEN state = '' AND reason = '' THEN 'Slurm requeued the job'
				WHEN state = '' THEN 'Slurm requeued the job (it recorded: ' || reason || ')'
				ELSE 'Slurm requeued the job (it recorded ' || state || CASE WHEN reason = '' THEN '' ELSE ': ' || reason END || ')' END,
			state = ?2
			WHERE job = ?3 AND restart < ?4 AND state NOT IN (?2, 'NODE_FAIL', 'PREEMPTED')`,
			beat, Requeued, id, restart)
		if err != nil {
			return true, err
		}
		_, err = tx.Exec(`UPDATE jobs SET ended = NULL, state = ?, exit_code = 0, reason = '',
			heartbeat = NULL, heartbeat_visit = '', broker = '' WHERE id = ?`, JobSubmitted, id)
		if err != nil {
			return true, err
		}
	}
	if _, err := tx.Exec(`INSERT OR REPLACE INTO job_starts (job, restart, host, started) VALUES (?, ?, ?, ?)`,
		id, restart, host, nanos(at)); err != nil {
		return true, err
	}
	_, err = tx.Exec(`UPDATE jobs SET started = ?, host = ? WHERE id = ?`, nanos(at), host, id)
	return true, err
}

// SetStartEnd records Slurm's own word for how the restart-th start of job
// id ended (NODE_FAIL, REQUEUED, PREEMPTED, ... from its accounting), with
// a reason and when, if known (an empty reason or a zero at keeps the
// recorded one). A later start of the job calls it once it has asked
// Slurm. ErrNotFound if the start has no record.
func (s *Store) SetStartEnd(id string, restart int, state, reason string, at time.Time) error {
	var n int64
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE job_starts SET state = ?1, reason = CASE WHEN ?2 = '' THEN reason ELSE ?2 END, ended = coalesce(?3, ended)
			WHERE job = ?4 AND restart = ?5`,
			state, reason, nanos(at), id, restart)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return s.wrap(fmt.Sprintf("recording how start %d of job %s ended", restart, id), err)
	}
	if n == 0 {
		return fmt.Errorf("state: %s: job %s: start %d: %w", s.path, id, restart, ErrNotFound)
	}
	return nil
}

// endStart records the end of job id's latest start, in tx, as JobEnded
// records the job's.
func endStart(tx *sql.Tx, id, state string, exitCode int, reason string, at time.Time) error {
	_, err := tx.Exec(`UPDATE job_starts SET ended = ?, state = ?, exit_code = ?, reason = ?
		WHERE job = ? AND restart = (SELECT max(restart) FROM job_starts WHERE job = ?)`,
		nanos(at), state, exitCode, reason, id, id)
	return err
}

// JobStarts returns every recorded start of the run's jobs, by job (in
// the order they were recorded) and restart.
func (s *Store) JobStarts() ([]JobStart, error) {
	rows, err := s.db.Query(`SELECT s.job, s.restart, s.host, s.started, s.ended, s.state, s.exit_code, s.reason
		FROM job_starts s JOIN jobs j ON j.id = s.job ORDER BY j.rowid, s.restart`)
	if err != nil {
		return nil, s.wrap("listing job starts", err)
	}
	defer rows.Close()
	var out []JobStart
	for rows.Next() {
		var js JobStart
		var start, end sql.NullInt64
		if err := rows.Scan(&js.Job, &js.Restart, &js.Host, &start, &end, &js.State, &js.ExitCode, &js.Reason); err != nil {
			return nil, s.wrap("listing job starts", err)
		}
		js.Started, js.Ended = fromNanos(start), fromNanos(end)
		out = append(out, js)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("listing job starts", err)
	}
	return out, nil
}
