package state

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
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

// JobEnded records how job id ended: Slurm's state (COMPLETED, FAILED,
// TIMEOUT, ...), its exit code, a reason, and when; in the job's record
// and in its latest start's.
func (s *Store) JobEnded(id, state string, exitCode int, reason string, at time.Time) error {
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
