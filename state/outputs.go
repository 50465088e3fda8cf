package state

import (
	"context"
	"database/sql"
)

// Output is a file a data ID's stage declared it writes (an exec stage's
// outputs), with its size once the program had ended.
type Output struct {
	Visit   string // filled in when read back
	DataID  string
	Path    string // absolute
	Size    int64  // bytes
	Attempt int    // the visit's attempt that made it (filled in by VisitEnded)
}

// OutputsMade keeps, in memory, the declared output files of visit's
// attempt in flight; VisitEnded writes them with the visit's end,
// replacing the rows of an earlier attempt for the same data ID and path.
// It does not touch the file.
func (s *Store) OutputsMade(visit string, outputs []Output) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logOf(visit)
	l.outputs = append(l.outputs, outputs...)
}

// writeOutputs is part of VisitEnded: it writes the output files of the
// visit of seq made in attempt.
func writeOutputs(ctx context.Context, tx *sql.Tx, seq, attempt int, outputs []Output) error {
	for _, o := range outputs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO outputs (visit, data_id, path, size, attempt) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (visit, data_id, path) DO UPDATE SET size = excluded.size, attempt = excluded.attempt`,
			seq, o.DataID, o.Path, o.Size, attempt); err != nil {
			return err
		}
	}
	return nil
}

// Outputs returns the output files recorded for visit, by data ID and
// path.
func (s *Store) Outputs(visit string) ([]Output, error) {
	return s.outputs("listing the outputs of visit "+visit, `SELECT v.id, o.data_id, o.path, o.size, o.attempt FROM outputs o JOIN visits v ON v.seq = o.visit
		WHERE v.id = ? ORDER BY o.data_id, o.path`, visit)
}

// RunOutputs returns the output files recorded for every visit of the
// run, in the visits' order, then by data ID and path; at most limit of
// them (0 or less: all).
func (s *Store) RunOutputs(limit int) ([]Output, error) {
	query, args := limited(`SELECT v.id, o.data_id, o.path, o.size, o.attempt FROM outputs o JOIN visits v ON v.seq = o.visit
		ORDER BY o.visit, o.data_id, o.path`, nil, limit)
	return s.outputs("listing the outputs", query, args...)
}

func (s *Store) outputs(what, query string, args ...any) ([]Output, error) {
	rows, err := s.db.Query(query, args...)
	if err != nil {
		return nil, s.wrap(what, err)
	}
	defer rows.Close()
	var out []Output
	for rows.Next() {
		var o Output
		if err := rows.Scan(&o.Visit, &o.DataID, &o.Path, &o.Size, &o.Attempt); err != nil {
			return nil, s.wrap(what, err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(what, err)
	}
	return out, nil
}
