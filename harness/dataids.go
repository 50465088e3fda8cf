package harness

import "fmt"

// What the Pipeline knows of a visit's data IDs: those an earlier attempt
// did, which this one leaves out (step 6), and each one's outcome at the
// visit's end (step 13).

// doneDataIDs is the data IDs of visit an earlier attempt did, which
// this one leaves out: as the VisitGate says, unless the policy redoes
// whole visits.
func (p *pipeline) doneDataIDs(visit string) ([]string, error) {
	g, ok := p.cfg.Recorder.(VisitGate)
	if !ok || p.cfg.Policy.Redo == redoVisit {
		return nil, nil
	}
	done, err := g.DoneDataIDs(visit)
	if err != nil {
		return nil, fmt.Errorf("harness: the done data IDs of visit %s: %w", visit, err)
	}
	return done, nil
}

// dataIDOutcomes is each data ID's outcome in the visit that ended as
// visit (step 13), but for those it left out: failed, interrupted (by a
// stop signal, or with the visit), skipped (the visit failed on the
// Pipeline), else done.
func (p *pipeline) dataIDOutcomes(v *visitRun, visit VisitOutcome) map[string]VisitOutcome {
	out := make(map[string]VisitOutcome, len(p.allIDs))
	for _, id := range p.allIDs {
		switch {
		case v.skip[id]:
			continue
		case v.failedIDs[id]:
			out[id] = VisitFailed
		case v.stopped[id] || visit == VisitInterrupted:
			out[id] = VisitInterrupted
		case v.serialErr != nil:
			out[id] = DataIDSkipped
		default:
			out[id] = VisitDone
		}
	}
	return out
}

// known is the set of the data IDs of done that the mapper assigned.
func (p *pipeline) known(done []string) map[string]bool {
	if len(done) == 0 {
		return nil
	}
	set := make(map[string]bool, len(done))
	for _, id := range done {
		set[id] = true
	}
	known := make(map[string]bool, len(done))
	for _, id := range p.allIDs {
		if set[id] {
			known[id] = true
		}
	}
	return known
}

// ranIDs is how many data IDs the visit runs: all but those it left out.
func (p *pipeline) ranIDs(v *visitRun) int { return p.totalIDs - len(v.skip) }
