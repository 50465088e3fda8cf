package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mattn/go-sqlite3"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// queryer is a *sql.DB or a *sql.Tx.
type queryer interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

// bulkVisits is the length of a visit list from which AddVisits, adding
// to an empty run, builds the ID index after the insert rather than during
// it (a million visits: about half the time).
const bulkVisits = 10_000

// AddVisits appends visits to the run's visit list, pending, in the order
// given (their Seq follows the last visit's), in one transaction: all or
// none. An empty ID, an ID that is not UTF-8, or an ID given twice or
// already in the list is an error (wrapping conf.ErrInvalid) that names
// it, and nothing is added. The front end calls it at submit.
func (s *Store) AddVisits(ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	for i, id := range ids {
		switch {
		case id == "":
			return fmt.Errorf("state: visit list: visit %d: empty visit ID: %w", i+1, conf.ErrInvalid)
		case !utf8.ValidString(id):
			return fmt.Errorf("state: visit list: visit %d: visit ID %q is not UTF-8: %w", i+1, id, conf.ErrInvalid)
		}
	}
	ctx := context.Background()
	err := s.write(ctx, func(tx *sql.Tx) error {
		rebuild := false
		if len(ids) >= bulkVisits {
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM visits LIMIT 1`).Scan(new(int))
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			rebuild = errors.Is(err, sql.ErrNoRows)
		}
		if rebuild {
			if _, err := tx.ExecContext(ctx, `DROP INDEX visits_by_id`); err != nil {
				return err
			}
		}
		if err := insertVisits(ctx, tx, ids); err != nil {
			return err
		}
		if rebuild {
			// A duplicate fails here, as it would have in the insert.
			if _, err := tx.ExecContext(ctx, `CREATE UNIQUE INDEX visits_by_id ON visits (id)`); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `UPDATE visit_states SET visits = visits + ? WHERE code = 0`, len(ids))
		return err
	})
	if isUnique(err) {
		return s.duplicate(ctx, ids)
	}
	if err != nil {
		return s.wrap("adding visits", err)
	}
	return nil
}

// visitsPerInsert is how many visit IDs one statement of insertVisits
// takes.
const visitsPerInsert = 50_000

// insertVisits appends ids to the visit list in tx, visitsPerInsert at a
// time, each batch one JSON array inserted by one statement: no per-visit
// round trip through database/sql and cgo, and no copy of a whole
// million-visit list in memory at once.
func insertVisits(ctx context.Context, tx *sql.Tx, ids []string) error {
	for len(ids) > 0 {
		batch := ids[:min(len(ids), visitsPerInsert)]
		ids = ids[len(batch):]
		list, err := json.Marshal(batch)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO visits (id) SELECT value FROM json_each(?)`, list)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n != int64(len(batch)) {
			return fmt.Errorf("inserted %d visits of %d", n, len(batch))
		}
	}
	return nil
}

// AddVisit appends one visit to the run's visit list, pending, after the
// last (its Seq is the largest so far plus one), unless a visit with that
// ID is in the run already, in whatever state: then it changes nothing and
// returns added false and no error, so that an event delivered twice adds
// its visit once. The Pipeline calls it for each trigger event that names
// a visit, before it runs it. One transaction, which also counts the visit
// as pending. An empty ID or one that is not UTF-8 is an error wrapping
// conf.ErrInvalid.
func (s *Store) AddVisit(id string) (added bool, err error) {
	switch {
	case id == "":
		return false, fmt.Errorf("state: %s: adding a visit: empty visit ID: %w", s.path, conf.ErrInvalid)
	case !utf8.ValidString(id):
		return false, fmt.Errorf("state: %s: adding a visit: visit ID %q is not UTF-8: %w", s.path, id, conf.ErrInvalid)
	}
	ctx := context.Background()
	err = s.write(ctx, func(tx *sql.Tx) error {
		added = false
		// seq is the rowid: SQLite gives a new row the largest plus one.
		res, err := tx.ExecContext(ctx, `INSERT INTO visits (id) VALUES (?) ON CONFLICT (id) DO NOTHING`, id)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		added = true
		_, err = tx.ExecContext(ctx, `UPDATE visit_states SET visits = visits + 1 WHERE code = 0`)
		return err
	})
	if err != nil {
		return false, s.wrap(fmt.Sprintf("adding visit %q", id), err)
	}
	return added, nil
}

// VisitState returns the state of the visit with ID id, ErrNoSuchVisit if
// it is not in the run. One indexed read.
func (s *Store) VisitState(id string) (VisitState, error) {
	var code int
	err := s.db.QueryRow(`SELECT state FROM visits WHERE id = ?`, id).Scan(&code)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", fmt.Errorf("state: %s: visit %q: %w", s.path, id, ErrNoSuchVisit)
	case err != nil:
		return "", s.wrap(fmt.Sprintf("reading visit %q", id), err)
	case code < 0 || code >= len(visitStates):
		return "", fmt.Errorf("state: %s: visit %q has unknown state code %d", s.path, id, code)
	}
	return visitStates[code], nil
}

// isUnique reports whether err is SQLite's unique or primary key
// constraint error.
func isUnique(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) &&
		(se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey)
}

// duplicate explains AddVisits's unique constraint error: the first ID
// given twice, or already in the list.
func (s *Store) duplicate(ctx context.Context, ids []string) error {
	seen := make(map[string]int, len(ids))
	for i, id := range ids {
		if j, ok := seen[id]; ok {
			return fmt.Errorf("state: visit list: visit %d: duplicate visit ID %q (also visit %d): %w", i+1, id, j+1, conf.ErrInvalid)
		}
		seen[id] = i
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return s.wrap("adding visits", err)
	}
	var id string
	var pos, seq int
	err = s.db.QueryRowContext(ctx, `SELECT j.value, j.key, v.seq FROM json_each(?) j JOIN visits v ON v.id = j.value ORDER BY j.key LIMIT 1`, list).
		Scan(&id, &pos, &seq)
	if err != nil {
		return s.wrap("adding visits: a visit ID is already in the run", err)
	}
	return fmt.Errorf("state: visit list: visit %d: visit ID %q is already in the run (seq %d): %w", pos+1, id, seq, conf.ErrInvalid)
}

// VisitStarted records that job started visit at at: the visit becomes
// running, its attempts grow by one, and its last error is cleared. It is
// committed before it returns. ErrNoSuchVisit if the visit is not in the
// list, ErrAlreadyDone if it is done.
func (s *Store) VisitStarted(visit, job string, at time.Time) error {
	if s.readOnly {
		return s.wrap(fmt.Sprintf("visit %q started", visit), ErrReadOnly)
	}
	s.mu.Lock()
	delete(s.pending, visit) // a new attempt: what an old one kept is stale
	s.mu.Unlock()
	ctx := context.Background()
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE visits SET state = 1, attempts = attempts + 1, job = ?, started = ?, ended = NULL, err = NULL
			WHERE id = ? AND state <> 2`, job, nanos(at), visit)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return s.wrap(fmt.Sprintf("visit %q started", visit), err)
	}
	if n == 0 {
		return s.notRunnable(ctx, visit, nil)
	}
	return nil
}

// notRunnable explains why an update of visit changed no row.
func (s *Store) notRunnable(ctx context.Context, visit string, err error) error {
	if err != nil {
		return s.wrap(fmt.Sprintf("visit %q", visit), err)
	}
	var code int
	err = s.db.QueryRowContext(ctx, `SELECT state FROM visits WHERE id = ?`, visit).Scan(&code)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("state: %s: visit %q: %w", s.path, visit, ErrNoSuchVisit)
	case err != nil:
		return s.wrap(fmt.Sprintf("visit %q", visit), err)
	case code == Done.code():
		return fmt.Errorf("state: %s: visit %q: %w", s.path, visit, ErrAlreadyDone)
	}
	return fmt.Errorf("state: %s: visit %q is %s: not changed", s.path, visit, visitStates[code])
}

// StageDone keeps, in memory, that stage took took in visit; VisitEnded
// writes it. It does not touch the file.
func (s *Store) StageDone(visit, stage string, took time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logOf(visit)
	l.stages = append(l.stages, stageTime{stage, took})
	return nil
}

// SliceFailed keeps, in memory, that the slice of rank slice with data ID
// dataID failed at stage in visit with msg, its input in capture ("" for
// none); VisitEnded writes it. It does not touch the file.
func (s *Store) SliceFailed(visit, stage string, slice int, dataID, msg, capture string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logOf(visit)
	l.failures = append(l.failures, Failure{Visit: visit, Stage: stage, Slice: slice, DataID: dataID, Err: msg, Capture: capture})
	return nil
}

// VisitCapture keeps, in memory, the capture of the visit's failure on
// the Pipeline (relative to the run directory); VisitEnded writes it. It
// does not touch the file.
func (s *Store) VisitCapture(visit, capture string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logOf(visit).capture = capture
}

// logOf returns visit's log, making it. s.mu is held.
func (s *Store) logOf(visit string) *visitLog {
	l := s.pending[visit]
	if l == nil {
		l = &visitLog{}
		s.pending[visit] = l
	}
	return l
}

// VisitEnded records that visit ended at at in state st (Done, Failed or
// Interrupted) with msg (why it failed or was interrupted; "" for none),
// together with the stage times and slice failures kept since
// VisitStarted, in one transaction: after a crash the file has all of it
// or none. ErrNoSuchVisit if the visit is not in the list, ErrAlreadyDone
// if it is done already.
func (s *Store) VisitEnded(visit string, st VisitState, msg string, at time.Time) error {
	if st != Done && st != Failed && st != Interrupted {
		return fmt.Errorf("state: visit %q ended as %q: want done, failed or interrupted", visit, st)
	}
	s.mu.Lock()
	l := s.pending[visit]
	s.mu.Unlock()
	if l == nil {
		l = &visitLog{}
	}
	ctx := context.Background()
	var errMsg any
	if msg != "" {
		errMsg = msg
	}
	found := true
	err := s.write(ctx, func(tx *sql.Tx) error {
		found = true
		var seq, attempt int
		err := tx.QueryRowContext(ctx, `UPDATE visits SET state = ?, ended = ?, err = ?, capture = ? WHERE id = ? AND state <> 2 RETURNING seq, attempts`,
			st.code(), nanos(at), errMsg, l.capture, visit).Scan(&seq, &attempt)
		if errors.Is(err, sql.ErrNoRows) {
			found = false
			return nil
		}
		if err != nil {
			return err
		}
		for _, t := range l.stages {
			if _, err := tx.ExecContext(ctx, `INSERT INTO stage_times (visit, attempt, stage, took) VALUES (?, ?, ?, ?)`,
				seq, attempt, t.stage, int64(t.took)); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO stage_totals (stage, calls, took) VALUES (?, 1, ?)
				ON CONFLICT (stage) DO UPDATE SET calls = calls + 1, took = took + excluded.took`, t.stage, int64(t.took)); err != nil {
				return err
			}
		}
		for _, f := range l.failures {
			if _, err := tx.ExecContext(ctx, `INSERT INTO slice_failures (visit, attempt, stage, slice, data_id, err, capture) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				seq, attempt, f.Stage, f.Slice, f.DataID, f.Err, f.Capture); err != nil {
				return err
			}
		}
		if err := writeDataIDs(ctx, tx, seq, attempt, l, msg); err != nil {
			return err
		}
		return writeOutputs(ctx, tx, seq, attempt, l.outputs)
	})
	if err != nil {
		return s.wrap(fmt.Sprintf("visit %q ended", visit), err)
	}
	if !found {
		return s.notRunnable(ctx, visit, nil)
	}
	s.mu.Lock()
	if s.pending[visit] == l {
		delete(s.pending, visit)
	}
	s.mu.Unlock()
	return nil
}

// Counts returns how many visits are in each state; every state is in the
// map, with 0 if none. It reads five rows, whatever the size of the run.
func (s *Store) Counts() (map[VisitState]int, error) {
	rows, err := s.db.Query(`SELECT code, visits FROM visit_states`)
	if err != nil {
		return nil, s.wrap("counting visits", err)
	}
	counts, err := countRows(rows)
	if err != nil {
		return nil, s.wrap("counting visits", err)
	}
	return counts, nil
}

// countRows reads rows of (state code, count) into a map that holds every
// state, with 0 if none; it closes rows.
func countRows(rows *sql.Rows) (map[VisitState]int, error) {
	defer rows.Close()
	counts := make(map[VisitState]int, len(visitStates))
	for _, st := range visitStates {
		counts[st] = 0
	}
	for rows.Next() {
		var code, n int
		if err := rows.Scan(&code, &n); err != nil {
			return nil, err
		}
		if code >= 0 && code < len(visitStates) {
			counts[visitStates[code]] = n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return counts, nil
}

// JobCounts returns how many of the visits that job started at or after
// since (and that no later job started again) are in each state; every
// state is in the map, with 0 if none. A job's rank 0 calls it at its end,
// so that its summary says what the file records, not what it meant to
// record: a visit whose end could not be written (a full disk) still
// reads running. It reads the whole visit list.
func (s *Store) JobCounts(job string, since time.Time) (map[VisitState]int, error) {
	rows, err := s.db.Query(`SELECT state, count(*) FROM visits WHERE job = ? AND started >= ? GROUP BY state`, job, since.UnixNano())
	if err != nil {
		return nil, s.wrap("counting the visits of job "+job, err)
	}
	counts, err := countRows(rows)
	if err != nil {
		return nil, s.wrap("counting the visits of job "+job, err)
	}
	return counts, nil
}

// Runnable returns the IDs of the visits a starting job runs, pending and
// interrupted, in Seq order.
func (s *Store) Runnable() ([]string, error) {
	ids, err := idsIn(context.Background(), s.db, []VisitState{Pending, Interrupted}, "")
	if err != nil {
		return nil, s.wrap("listing runnable visits", err)
	}
	return ids, nil
}

// idsIn returns the IDs of the visits in states that also meet cond (an
// SQL condition on visits' columns with args, or ""), in Seq order. It
// reads each state in index order and merges, rather than sort.
func idsIn(ctx context.Context, q queryer, states []VisitState, cond string, args ...any) ([]string, error) {
	query := `SELECT seq, id FROM visits WHERE state = ? ORDER BY seq`
	if cond != "" {
		query = `SELECT seq, id FROM visits WHERE state = ? AND (` + cond + `) ORDER BY seq`
	}
	type row struct {
		seq int64
		id  string
	}
	lists := make([][]row, len(states))
	total := 0
	for i, st := range states {
		rows, err := q.QueryContext(ctx, query, append([]any{st.code()}, args...)...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.seq, &r.id); err != nil {
				rows.Close()
				return nil, err
			}
			lists[i] = append(lists[i], r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		total += len(lists[i])
	}
	ids := make([]string, 0, total)
	next := make([]int, len(lists))
	for len(ids) < total {
		best := -1
		for i, l := range lists {
			if next[i] < len(l) && (best < 0 || l[next[i]].seq < lists[best][next[best]].seq) {
				best = i
			}
		}
		ids = append(ids, lists[best][next[best]].id)
		next[best]++
	}
	return ids, nil
}

// InterruptRunning makes every running visit interrupted, with reason as
// its error, and returns how many there were. The front end calls it when
// the job that ran them is gone (before Retry, at resume, when no job of
// the run is live): a running visit with no live job is one whose job
// died. A starting job calls InterruptRunningOf instead.
func (s *Store) InterruptRunning(reason string) (int, error) {
	return s.interrupt(reason, `state = 1`)
}

// InterruptRunningOf makes the running visits that one of jobs started
// interrupted, with reason as their error, and returns how many there
// were; running visits of other jobs stay running. A starting job calls
// it, before Runnable, with the jobs that are no longer running: its own
// earlier start (a requeue) and the jobs Slurm has ended or queued again.
func (s *Store) InterruptRunningOf(jobs []string, reason string) (int, error) {
	if len(jobs) == 0 {
		return 0, nil
	}
	list, err := json.Marshal(jobs)
	if err != nil {
		return 0, s.wrap("interrupting running visits", err)
	}
	return s.interrupt(reason, `state = 1 AND job IN (SELECT value FROM json_each(?))`, string(list))
}

// RunningByJob returns how many visits are recorded running, by the job
// that started them ("" for none recorded). Readers call it to show the
// visits of a job that is no longer running as interrupted. It reads the
// running visits only.
func (s *Store) RunningByJob() (map[string]int, error) {
	rows, err := s.db.Query(`SELECT coalesce(job, ''), count(*) FROM visits WHERE state = 1 GROUP BY 1`)
	if err != nil {
		return nil, s.wrap("counting running visits", err)
	}
	defer rows.Close()
	by := map[string]int{}
	for rows.Next() {
		var job string
		var n int
		if err := rows.Scan(&job, &n); err != nil {
			return nil, s.wrap("counting running visits", err)
		}
		by[job] = n
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("counting running visits", err)
	}
	return by, nil
}

// interrupt makes the visits that meet cond (with args) interrupted.
func (s *Store) interrupt(reason, cond string, args ...any) (int, error) {
	var n int64
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE visits SET state = 4, err = ? WHERE `+cond, append([]any{reason}, args...)...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, s.wrap("interrupting running visits", err)
	}
	return int(n), nil
}

// Retry prepares a resume: failed and interrupted visits, and done ones
// with a data ID not done, that were started
// fewer than maxAttempts times (0: no limit) become pending again, and it
// returns how many. Those started maxAttempts times or more are returned,
// in Seq order, as exhausted, and stay failed (or done, with their data
// IDs not done): an exhausted interrupted visit becomes failed, so that
// Runnable does not hand it out again. One transaction.
func (s *Store) Retry(maxAttempts int) (retried int, exhausted []string, err error) {
	if maxAttempts < 0 {
		return 0, nil, fmt.Errorf("state: retry: attempt limit %d: want 0 (none) or more: %w", maxAttempts, conf.ErrInvalid)
	}
	ctx := context.Background()
	err = s.write(ctx, func(tx *sql.Tx) error {
		cond := ""
		if maxAttempts > 0 {
			var err error
			exhausted, err = idsIn(ctx, tx, []VisitState{Failed, Interrupted, Done}, `attempts >= ? AND (state <> 2 OR `+dataIDsLeft+`)`, maxAttempts)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE visits SET state = 3,
				err = 'interrupted at attempt ' || attempts || ' of ' || ? || coalesce(': ' || err, '')
				WHERE state = 4 AND attempts >= ?`, maxAttempts, maxAttempts); err != nil {
				return err
			}
			cond = fmt.Sprintf(" AND attempts < %d", maxAttempts)
		}
		var n int64
		for _, where := range []string{`state = 3`, `state = 4`, doneWithDataIDsLeft} {
			res, err := tx.ExecContext(ctx, `UPDATE visits SET state = 0 WHERE `+where+cond)
			if err != nil {
				return err
			}
			m, err := res.RowsAffected()
			if err != nil {
				return err
			}
			n += m
		}
		retried = int(n)
		return nil
	})
	if err != nil {
		return 0, nil, s.wrap("retrying visits", err)
	}
	return retried, exhausted, nil
}

// Visits returns the visits in state st ("" for all), in Seq order, at
// most limit of them (0 or less: all).
func (s *Store) Visits(st VisitState, limit int) ([]Visit, error) {
	var where []string
	var args []any
	if st != "" {
		code := st.code()
		if code < 0 {
			return nil, fmt.Errorf("state: unknown visit state %q: %w", st, conf.ErrInvalid)
		}
		where = append(where, "state = ?")
		args = append(args, code)
	}
	query := `SELECT seq, id, state, attempts, job, started, ended, err, capture FROM visits`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query, args = limited(query+" ORDER BY seq", args, limit)
	rows, err := s.db.Query(query, args...)
	if err != nil {
		return nil, s.wrap("listing visits", err)
	}
	defer rows.Close()
	var vs []Visit
	for rows.Next() {
		var v Visit
		var code int
		var job, msg sql.NullString
		var started, ended sql.NullInt64
		if err := rows.Scan(&v.Seq, &v.ID, &code, &v.Attempts, &job, &started, &ended, &msg, &v.Capture); err != nil {
			return nil, s.wrap("listing visits", err)
		}
		if code >= 0 && code < len(visitStates) {
			v.State = visitStates[code]
		}
		v.Job, v.Err = str(job), str(msg)
		v.Started, v.Ended = fromNanos(started), fromNanos(ended)
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("listing visits", err)
	}
	return vs, nil
}

// Progress returns how many visits are done, the earliest start and the
// latest end of a done visit (zero times when none is), for status's rate
// and estimate. It reads one row.
func (s *Store) Progress() (done int, first, last time.Time, err error) {
	var f, l sql.NullInt64
	err = s.db.QueryRow(`SELECT visits, first, last FROM visit_states WHERE code = 2`).Scan(&done, &f, &l)
	if err != nil {
		return 0, time.Time{}, time.Time{}, s.wrap("reading progress", err)
	}
	return done, fromNanos(f), fromNanos(l), nil
}

// RecentVisitTimes returns how long the last n done visits took (from
// their last start to their end), the latest in visit-list order first.
// It reads at most n rows, through the index of visits by state.
func (s *Store) RecentVisitTimes(n int) ([]time.Duration, error) {
	rows, err := s.db.Query(`SELECT ended - started FROM visits INDEXED BY visits_by_state
		WHERE state = 2 AND started IS NOT NULL AND ended >= started ORDER BY seq DESC LIMIT ?`, n)
	if err != nil {
		return nil, s.wrap("reading visit times", err)
	}
	defer rows.Close()
	var out []time.Duration
	for rows.Next() {
		var took int64
		if err := rows.Scan(&took); err != nil {
			return nil, s.wrap("reading visit times", err)
		}
		out = append(out, time.Duration(took))
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("reading visit times", err)
	}
	return out, nil
}

// StageTime is the time spent in one stage over the run.
type StageTime struct {
	Stage string
	Calls int           // visit attempts that ran it
	Total time.Duration // over all calls
	Mean  time.Duration
}

// Stages returns the time spent in each stage, in the order the stages
// were first recorded (the pipeline's order). It reads one row per stage.
func (s *Store) Stages() ([]StageTime, error) {
	rows, err := s.db.Query(`SELECT stage, calls, took FROM stage_totals ORDER BY rowid`)
	if err != nil {
		return nil, s.wrap("reading stage times", err)
	}
	defer rows.Close()
	var ts []StageTime
	for rows.Next() {
		var t StageTime
		var took int64
		if err := rows.Scan(&t.Stage, &t.Calls, &took); err != nil {
			return nil, s.wrap("reading stage times", err)
		}
		t.Total = time.Duration(took)
		if t.Calls > 0 {
			t.Mean = t.Total / time.Duration(t.Calls)
		}
		ts = append(ts, t)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("reading stage times", err)
	}
	return ts, nil
}

// StageTimes returns the mean time per call of each stage (see Stages).
func (s *Store) StageTimes() (map[string]time.Duration, error) {
	ts, err := s.Stages()
	if err != nil {
		return nil, err
	}
	m := make(map[string]time.Duration, len(ts))
	for _, t := range ts {
		m[t.Stage] = t.Mean
	}
	return m, nil
}

// limited is query with its arguments, keeping at most limit rows (0 or
// less: all).
func limited(query string, args []any, limit int) (string, []any) {
	if limit > 0 {
		return query + " LIMIT ?", append(args, limit)
	}
	return query, args
}

// Failures returns the recorded slice failures in the order recorded, at
// most limit of them (0 or less: all).
func (s *Store) Failures(limit int) ([]Failure, error) {
	query, args := limited(`SELECT v.id, f.attempt, f.stage, f.slice, f.data_id, f.err, f.capture FROM slice_failures f JOIN visits v ON v.seq = f.visit ORDER BY f.id`, nil, limit)
	rows, err := s.db.Query(query, args...)
	if err != nil {
		return nil, s.wrap("listing failures", err)
	}
	defer rows.Close()
	var fs []Failure
	for rows.Next() {
		var f Failure
		if err := rows.Scan(&f.Visit, &f.Attempt, &f.Stage, &f.Slice, &f.DataID, &f.Err, &f.Capture); err != nil {
			return nil, s.wrap("listing failures", err)
		}
		fs = append(fs, f)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("listing failures", err)
	}
	return fs, nil
}
