package state

import "time"

// StageCall is one stage's run in one visit attempt, as VisitEnded
// recorded it: the samples behind Stages' sums.
type StageCall struct {
	Visit   string
	Attempt int
	Stage   string
	Took    time.Duration
}

// StageCalls returns the recorded stage calls in the order recorded (by
// visit end, then the pipeline's order), at most limit of them (0 or
// less: all). It reads one row per call: the run report draws each
// stage's distribution from them.
func (s *Store) StageCalls(limit int) ([]StageCall, error) {
	query, args := limited(`SELECT v.id, t.attempt, t.stage, t.took FROM stage_times t JOIN visits v ON v.seq = t.visit ORDER BY t.rowid`, nil, limit)
	rows, err := s.db.Query(query, args...)
	if err != nil {
		return nil, s.wrap("listing stage calls", err)
	}
	defer rows.Close()
	var out []StageCall
	for rows.Next() {
		var c StageCall
		var took int64
		if err := rows.Scan(&c.Visit, &c.Attempt, &c.Stage, &took); err != nil {
			return nil, s.wrap("listing stage calls", err)
		}
		c.Took = time.Duration(took)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("listing stage calls", err)
	}
	return out, nil
}
