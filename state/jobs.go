package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/internal/enum"
)

// AddJob records a Slurm job of the run, once the front end has submitted
// it. ErrExists if a job with that ID is recorded. A Broker is checked as
// SetJobBroker checks it.
func (s *Store) AddJob(j Job) error {
	if j.ID == "" {
		return fmt.Errorf("state: %s: adding a job: empty job ID", s.path)
	}
	if err := checkBroker(j.Broker); err != nil {
		return fmt.Errorf("state: %s: job %s: %w", s.path, j.ID, err)
	}
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO jobs (id, attempt, submitted, started, ended, state, exit_code, reason, host, broker, heartbeat, heartbeat_visit)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			j.ID, j.Attempt, nanos(j.Submitted), nanos(j.Started), nanos(j.Ended), j.State, j.ExitCode, j.Reason, j.Host,
			j.Broker, nanos(j.Heartbeat), j.HeartbeatVisit)
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

// JobStarted records that job id started at at, its rank 0 on host: its
// first start (StartJob with restart 0). The job's Pipeline calls it when
// it opens the file.
func (s *Store) JobStarted(id, host string, at time.Time) error {
	return s.StartJob(id, 0, host, at)
}

// JobEnd is how a job's rank 0 recorded the job's end (JobEnded): the
// job's State from then on, and its latest start's. A job's State holds
// other words too, Slurm's or the front end's (SUBMITTED, REQUEUED, ...):
// ParseJobEnd says whether one is an end. The zero JobEnd is no end.
type JobEnd string

// The ends rank 0 records, from the best to the worst.
const (
	EndCompleted    JobEnd = "COMPLETED"     // no visit left, none failed
	EndVisitsFailed JobEnd = "VISITS_FAILED" // no visit left, some failed
	EndStopped      JobEnd = "STOPPED"       // stopped, with visits left
	EndFailed       JobEnd = "FAILED"        // the run itself failed
)

// jobEnds is every JobEnd, the best first.
var jobEnds = []JobEnd{EndCompleted, EndVisitsFailed, EndStopped, EndFailed}

// ParseJobEnd returns the end named word, or an error quoting it.
func ParseJobEnd(word string) (JobEnd, error) {
	e, err := enum.Parse("job end", word, jobEnds)
	if err != nil {
		return "", fmt.Errorf("state: %w", err)
	}
	return e, nil
}

func (e JobEnd) String() string { return string(e) }

// MarshalText writes e's name.
func (e JobEnd) MarshalText() ([]byte, error) { return []byte(e), nil }

// UnmarshalText reads a name ParseJobEnd knows.
func (e *JobEnd) UnmarshalText(b []byte) (err error) {
	*e, err = ParseJobEnd(string(b))
	return err
}

// Worse reports whether e is a worse end than other (the zero JobEnd is
// better than any).
func (e JobEnd) Worse(other JobEnd) bool {
	return slices.Index(jobEnds, e) > slices.Index(jobEnds, other)
}

// JobEnded records how job id ended, as its rank 0 saw it: the end, its
// exit code, a reason, and when; in the job's record and in its latest
// start's.
func (s *Store) JobEnded(id string, end JobEnd, exitCode int, reason string, at time.Time) error {
	if _, err := enum.Parse("job end", string(end), jobEnds); err != nil {
		return fmt.Errorf("state: %s: job %s: %w", s.path, id, err)
	}
	state := string(end)
	var n int64
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE jobs SET ended = ?, state = ?, exit_code = ?, reason = ? WHERE id = ?`,
			nanos(at), state, exitCode, reason, id)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		return endStart(tx, id, state, exitCode, reason, at)
	})
	if err != nil {
		return s.wrap("updating job "+id, err)
	}
	if n == 0 {
		return fmt.Errorf("state: %s: job %s: %w", s.path, id, ErrNotFound)
	}
	return nil
}

// SetJobBroker records url as the address where job's broker listens
// (nats://host:port; tls://host:port for one that requires TLS), or
// forgets it for "". The job's Pipeline calls it once its broker is up, so
// that `dpsbatch stop` and `dpsbatch finish` can reach it; ErrNotFound if
// no job has that ID.
//
// The caller must not pass a token or a password: the state file is
// readable by whoever may read the run's folder. A URL with user
// information (nats://user:pass@host:port, nats://token@host:port), a
// query or a fragment is refused with an error (wrapping conf.ErrInvalid)
// that does not repeat it, and nothing is written. Clients get the token
// from where the site file says, never from here.
func (s *Store) SetJobBroker(job, url string) error {
	if err := checkBroker(url); err != nil {
		return fmt.Errorf("state: %s: job %s: %w", s.path, job, err)
	}
	return s.updateJob(job, `UPDATE jobs SET broker = ? WHERE id = ?`, url, job)
}

// brokerSchemes are the URL schemes of a broker address: NATS, and NATS
// that requires TLS.
var brokerSchemes = []string{"nats", "tls"}

// checkBroker checks a broker address for SetJobBroker and AddJob: "" or
// scheme://host:port with nothing else. Its errors quote the address only
// where it cannot hold a secret.
func checkBroker(raw string) error {
	if raw == "" {
		return nil
	}
	const want = "want nats://host:port"
	if at := strings.LastIndex(raw, "@"); at >= 0 {
		// Whatever precedes the @ may be a secret: never quote it.
		shown := "***@" + raw[at+1:]
		if i := strings.Index(raw, "://"); i >= 0 && i < at {
			shown = raw[:i+3] + shown
		}
		return fmt.Errorf("broker URL %s holds user information (a token, or a user and password): a secret must never reach the state file; %s: %w",
			shown, want, conf.ErrInvalid)
	}
	u, err := url.Parse(raw)
	if err != nil {
		shown := raw // a query may hold a token: never quote it
		if i := strings.IndexAny(shown, "?#"); i >= 0 {
			shown = shown[:i] + "?***"
		}
		return fmt.Errorf("broker URL %q: %s: %w", shown, want, conf.ErrInvalid)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		// A query may hold a token too.
		return fmt.Errorf("broker URL %s://%s has a query or fragment: %s with nothing after it: %w", u.Scheme, u.Host, want, conf.ErrInvalid)
	}
	port, perr := strconv.Atoi(u.Port())
	switch {
	case !slices.Contains(brokerSchemes, u.Scheme):
		return fmt.Errorf("broker URL %q: scheme %q: %s (or tls://host:port): %w", raw, u.Scheme, want, conf.ErrInvalid)
	case u.Opaque != "" || u.Hostname() == "":
		return fmt.Errorf("broker URL %q has no host: %s: %w", raw, want, conf.ErrInvalid)
	case perr != nil || port < 1 || port > 65535:
		return fmt.Errorf("broker URL %q has no port (1 to 65535): %s: %w", raw, want, conf.ErrInvalid)
	case u.Path != "" && u.Path != "/":
		return fmt.Errorf("broker URL %q has a path: %s: %w", raw, want, conf.ErrInvalid)
	}
	return nil
}

// Heartbeat records that job's rank 0 was alive at at, running visit ("" when
// idle between visits). The job's Pipeline calls it every 30 seconds or so,
// from any goroutine; status reads it to tell a live job from a hung one.
// It is one UPDATE of the job's row, in its own transaction: it overwrites
// the previous heartbeat and never grows the file. ErrNotFound if no job
// has that ID.
func (s *Store) Heartbeat(job string, at time.Time, visit string) error {
	return s.updateJob(job, `UPDATE jobs SET heartbeat = ?, heartbeat_visit = ? WHERE id = ?`, nanos(at), visit, job)
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
	rows, err := s.db.Query(`SELECT id, attempt, submitted, started, ended, state, exit_code, reason, host, broker, heartbeat, heartbeat_visit
		FROM jobs ORDER BY attempt, rowid`)
	if err != nil {
		return nil, s.wrap("listing jobs", err)
	}
	defer rows.Close()
	var js []Job
	for rows.Next() {
		var j Job
		var sub, start, end, beat sql.NullInt64
		if err := rows.Scan(&j.ID, &j.Attempt, &sub, &start, &end, &j.State, &j.ExitCode, &j.Reason, &j.Host,
			&j.Broker, &beat, &j.HeartbeatVisit); err != nil {
			return nil, s.wrap("listing jobs", err)
		}
		j.Submitted, j.Started, j.Ended, j.Heartbeat = fromNanos(sub), fromNanos(start), fromNanos(end), fromNanos(beat)
		js = append(js, j)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("listing jobs", err)
	}
	return js, nil
}

// Submission is a job submission recorded before sbatch is called: the
// token drawn for it, which the job carries in its name, lets the next
// command find the job in Slurm (by Name) when the submitter died between
// sbatch and recording the job.
type Submission struct {
	Token    string
	Attempt  int
	Name     string // the job name it is submitted under
	Recorded time.Time
	Job      string // Slurm's job ID once known ("" until then)
	Void     string // why it never became a job ("" while it may have)
}

// RecordSubmission records sub, before its sbatch. ErrExists if its token
// is recorded already.
func (s *Store) RecordSubmission(sub Submission) error {
	if sub.Token == "" || sub.Name == "" || sub.Attempt < 1 {
		return fmt.Errorf("state: %s: recording a submission: want a token, a name and an attempt, got %+v: %w", s.path, sub, conf.ErrInvalid)
	}
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO submissions (token, attempt, name, recorded) VALUES (?, ?, ?, ?)`,
			sub.Token, sub.Attempt, sub.Name, nanos(sub.Recorded))
		return err
	})
	if isUnique(err) {
		return fmt.Errorf("state: %s: submission %s: %w", s.path, sub.Token, ErrExists)
	}
	if err != nil {
		return s.wrap("recording submission "+sub.Token, err)
	}
	return nil
}

// Submissions returns the recorded submissions, in the order recorded.
func (s *Store) Submissions() ([]Submission, error) {
	rows, err := s.db.Query(`SELECT token, attempt, name, recorded, job, void FROM submissions ORDER BY recorded, rowid`)
	if err != nil {
		return nil, s.wrap("listing submissions", err)
	}
	defer rows.Close()
	var out []Submission
	for rows.Next() {
		var sub Submission
		var at sql.NullInt64
		var job sql.NullString
		if err := rows.Scan(&sub.Token, &sub.Attempt, &sub.Name, &at, &job, &sub.Void); err != nil {
			return nil, s.wrap("listing submissions", err)
		}
		sub.Recorded, sub.Job = fromNanos(at), str(job)
		out = append(out, sub)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("listing submissions", err)
	}
	return out, nil
}

// AdoptJob records job j as the job of submission token, in one
// transaction: the job's row (unless one with its ID exists: then it is
// kept as it is) and the submission's job ID. j.Attempt 0 takes the
// submission's attempt. A token with no submission recorded here (a job
// that finds no row for itself, of a file its submitter did not record
// submissions in) still records the job, when j.Attempt is set; "" is no
// token. added says whether the job's row is new.
func (s *Store) AdoptJob(token string, j Job) (added bool, err error) {
	if j.ID == "" {
		return false, fmt.Errorf("state: %s: adopting a job: empty job ID", s.path)
	}
	err = s.write(context.Background(), func(tx *sql.Tx) error {
		if token != "" {
			var attempt int
			err := tx.QueryRow(`SELECT attempt FROM submissions WHERE token = ?`, token).Scan(&attempt)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return err
			default:
				if j.Attempt == 0 {
					j.Attempt = attempt
				}
				if _, err := tx.Exec(`UPDATE submissions SET job = ?, void = '' WHERE token = ?`, j.ID, token); err != nil {
					return err
				}
			}
		}
		if j.Attempt < 1 {
			return fmt.Errorf("job %s: no attempt, and no submission %q: %w", j.ID, token, ErrNotFound)
		}
		res, err := tx.Exec(`INSERT INTO jobs (id, attempt, submitted, started, ended, state, exit_code, reason, host, broker, heartbeat, heartbeat_visit)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			j.ID, j.Attempt, nanos(j.Submitted), nanos(j.Started), nanos(j.Ended), j.State, j.ExitCode, j.Reason, j.Host,
			j.Broker, nanos(j.Heartbeat), j.HeartbeatVisit)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		added = n > 0
		return err
	})
	if err != nil {
		return false, s.wrap("adopting job "+j.ID, err)
	}
	return added, nil
}

// VoidSubmission records that submission token never became a job: sbatch
// refused it, or Slurm has no job of its name. A submission whose job is
// known is left alone.
func (s *Store) VoidSubmission(token, why string) error {
	if why == "" {
		why = "never submitted"
	}
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE submissions SET void = ? WHERE token = ? AND job IS NULL`, why, token)
		return err
	})
	if err != nil {
		return s.wrap("voiding submission "+token, err)
	}
	return nil
}

// NextAttempt is the attempt number of the run's next job: one more than
// the highest of its jobs and of its submissions that may have become a
// job (a void one's number is free again); 1 for none.
func (s *Store) NextAttempt() (int, error) {
	var n int
	err := s.db.QueryRow(`SELECT max(coalesce((SELECT max(attempt) FROM jobs), 0),
		coalesce((SELECT max(attempt) FROM submissions WHERE void = ''), 0)) + 1`).Scan(&n)
	if err != nil {
		return 0, s.wrap("reading the next attempt", err)
	}
	return n, nil
}

// LockHolder is who holds the run's lock row (TakeLock).
type LockHolder struct {
	Token   string
	Host    string
	PID     int
	Command string
	Taken   time.Time
	Expires time.Time
}

// TakeLock takes the run's lock row for h, in one immediate transaction,
// unless another holder has it: then it returns that holder and false. A
// row past its Expires, or one that stale says is dead (its process gone),
// is taken over. It is the run's lock where the run directory's file
// system has no flock; ReleaseLock gives it back.
func (s *Store) TakeLock(h LockHolder, stale func(LockHolder) bool) (LockHolder, bool, error) {
	var cur LockHolder
	took := false
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		var taken, expires int64
		err := tx.QueryRow(`SELECT token, host, pid, command, taken, expires FROM run_lock WHERE id = 1`).
			Scan(&cur.Token, &cur.Host, &cur.PID, &cur.Command, &taken, &expires)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		default:
			cur.Taken, cur.Expires = time.Unix(0, taken), time.Unix(0, expires)
			if cur.Token != h.Token && h.Taken.Before(cur.Expires) && (stale == nil || !stale(cur)) {
				return nil
			}
		}
		_, err = tx.Exec(`INSERT OR REPLACE INTO run_lock (id, token, host, pid, command, taken, expires) VALUES (1, ?, ?, ?, ?, ?, ?)`,
			h.Token, h.Host, h.PID, h.Command, h.Taken.UnixNano(), h.Expires.UnixNano())
		cur, took = h, err == nil
		return err
	})
	if err != nil {
		return LockHolder{}, false, s.wrap("taking the run's lock", err)
	}
	return cur, took, nil
}

// ReleaseLock gives back the lock row taken with token; another holder's
// row is left alone.
func (s *Store) ReleaseLock(token string) error {
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec(`DELETE FROM run_lock WHERE token = ?`, token)
		return err
	})
	if err != nil {
		return s.wrap("releasing the run's lock", err)
	}
	return nil
}

// ClaimRun records that job started running the run's visits at at, its
// rank 0 on host, as its restart-th start (as StartJob does), unless
// another job is running
// them: one whose start is recorded and whose end is not, whose last sign
// of life (its heartbeat, else its start) is later than at less fresh,
// and that is not among ended (jobs Slurm says have ended). Then it
// returns that job and false, and writes nothing. It is one immediate
// transaction: of two jobs of the run claiming at once, the second sees
// the first. ErrNotFound if job has no row.
func (s *Store) ClaimRun(job string, restart int, host string, at time.Time, fresh time.Duration, ended []string) (Job, bool, error) {
	var other Job
	found := false
	started := false
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		rows, err := tx.Query(`SELECT id, attempt, started, heartbeat, heartbeat_visit, host FROM jobs
			WHERE id <> ? AND started IS NOT NULL AND ended IS NULL AND max(started, coalesce(heartbeat, 0)) >= ?
			ORDER BY attempt, rowid`, job, at.Add(-fresh).UnixNano())
		if err != nil {
			return err
		}
		for rows.Next() && !found {
			var j Job
			var start, beat sql.NullInt64
			if err := rows.Scan(&j.ID, &j.Attempt, &start, &beat, &j.HeartbeatVisit, &j.Host); err != nil {
				rows.Close()
				return err
			}
			j.Started, j.Heartbeat = fromNanos(start), fromNanos(beat)
			if !slices.Contains(ended, j.ID) {
				other, found = j, true
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil || found {
			return err
		}
		started, err = startJob(tx, job, restart, host, at)
		return err
	})
	if err != nil {
		return Job{}, false, s.wrap("claiming the run for job "+job, err)
	}
	if found {
		return other, false, nil
	}
	if !started {
		return Job{}, false, fmt.Errorf("state: %s: job %s: %w", s.path, job, ErrNotFound)
	}
	return Job{}, true, nil
}
