package state

import (
	"context"
	"database/sql"
)

// The outcomes of a data ID in a visit's attempt.
const (
	DataIDDone        = "done"
	DataIDFailed      = "failed"      // a stage failed it: its error and stage are kept
	DataIDInterrupted = "interrupted" // the attempt was cut short before it was done
	DataIDSkipped     = "skipped"     // the visit failed on the Pipeline before it was done
)

// DataIDOutcome is how one data ID of a visit ended in the attempt that
// last ran it.
type DataIDOutcome struct {
	Visit   string
	DataID  string
	Outcome string // one of the DataID* outcomes
	Attempt int
	Stage   string // where it failed
	Err     string // why it failed (the slice failure's error) or was not done
}

// DataIDsEnded keeps, in memory, the outcomes of visit's data IDs in the
// attempt in flight (Visit, Attempt, Stage and Err are filled in from the
// visit and its slice failures); VisitEnded writes them, replacing the
// rows of an earlier attempt. A data ID the attempt did not run (done
// before) keeps its row. It does not touch the file.
func (s *Store) DataIDsEnded(visit string, outcomes []DataIDOutcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logOf(visit)
	l.dataIDs = append(l.dataIDs, outcomes...)
}

// writeDataIDs is part of VisitEnded: it writes l's data ID outcomes for
// the visit of seq in attempt, a failed one with its first slice failure's
// stage and error, the others with msg, the visit's error.
func writeDataIDs(ctx context.Context, tx *sql.Tx, seq, attempt int, l *visitLog, msg string) error {
	for _, o := range l.dataIDs {
		stage, why := "", ""
		switch o.Outcome {
		case DataIDFailed:
			if f := firstFailure(l.failures, o.DataID); f != nil {
				stage, why = f.Stage, f.Err
			}
		case DataIDInterrupted, DataIDSkipped:
			why = msg
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO data_ids (visit, data_id, outcome, attempt, stage, err) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (visit, data_id) DO UPDATE SET outcome = excluded.outcome, attempt = excluded.attempt,
				stage = excluded.stage, err = excluded.err`, seq, o.DataID, o.Outcome, attempt, stage, why); err != nil {
			return err
		}
	}
	return nil
}

func firstFailure(fs []Failure, dataID string) *Failure {
	for i := range fs {
		if fs[i].DataID == dataID {
			return &fs[i]
		}
	}
	return nil
}

// DataIDCounts returns how many data IDs have each outcome, over the
// visits' attempts recorded; an outcome no data ID has is not in the map.
// It reads four rows, whatever the size of the run.
func (s *Store) DataIDCounts() (map[string]int, error) {
	rows, err := s.db.Query(`SELECT outcome, n FROM data_id_outcomes WHERE n > 0`)
	if err != nil {
		return nil, s.wrap("counting data IDs", err)
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var o string
		var n int
		if err := rows.Scan(&o, &n); err != nil {
			return nil, s.wrap("counting data IDs", err)
		}
		counts[o] = n
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("counting data IDs", err)
	}
	return counts, nil
}

// DataIDsWith returns the data IDs whose outcome is outcome, in visit
// order, at most limit of them (0 or less: all).
func (s *Store) DataIDsWith(outcome string, limit int) ([]DataIDOutcome, error) {
	query, args := limited(`SELECT v.id, d.data_id, d.outcome, d.attempt, d.stage, d.err FROM data_ids d JOIN visits v ON v.seq = d.visit
		WHERE d.outcome = ? ORDER BY d.visit, d.data_id`, []any{outcome}, limit)
	rows, err := s.db.Query(query, args...)
	if err != nil {
		return nil, s.wrap("listing data IDs", err)
	}
	defer rows.Close()
	var out []DataIDOutcome
	for rows.Next() {
		var o DataIDOutcome
		if err := rows.Scan(&o.Visit, &o.DataID, &o.Outcome, &o.Attempt, &o.Stage, &o.Err); err != nil {
			return nil, s.wrap("listing data IDs", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("listing data IDs", err)
	}
	return out, nil
}

// DoneDataIDs returns the data IDs of visit recorded done, sorted: a
// visit run again leaves them out, unless its policy redoes whole visits.
func (s *Store) DoneDataIDs(visit string) ([]string, error) {
	rows, err := s.db.Query(`SELECT d.data_id FROM data_ids d JOIN visits v ON v.seq = d.visit
		WHERE v.id = ? AND d.outcome = 'done' ORDER BY d.data_id`, visit)
	if err != nil {
		return nil, s.wrap("listing the done data IDs of visit "+visit, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, s.wrap("listing the done data IDs of visit "+visit, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("listing the done data IDs of visit "+visit, err)
	}
	return ids, nil
}

// doneWithDataIDsLeft is the condition on visits of a done visit with a
// data ID not done (failed under a failure rule that let the visit
// carry on): resume runs it again.
const doneWithDataIDsLeft = `state = 2 AND ` + dataIDsLeft

// dataIDsLeft is the condition on visits of a visit with a data ID not
// done.
const dataIDsLeft = `EXISTS (SELECT 1 FROM data_ids d WHERE d.visit = visits.seq AND d.outcome <> 'done')`

// DoneWithDataIDsLeft counts the done visits with a data ID not done.
func (s *Store) DoneWithDataIDsLeft() (int, error) {
	var n int
	if err := s.db.QueryRow(`SELECT count(*) FROM visits WHERE ` + doneWithDataIDsLeft).Scan(&n); err != nil {
		return 0, s.wrap("counting visits with data IDs left", err)
	}
	return n, nil
}
