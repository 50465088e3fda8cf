package harness

import (
	"fmt"
)

// What the Pipeline knows of a visit's data IDs: those an earlier attempt
// did, which this one leaves out (step 6), their outcomes so far (the
// KeyDataIDs item, before each Preprocess and Postprocess: steps 7 and
// 12), the shared values they sent (step 11), and each one's outcome at
// the visit's end (step 13).

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
// visit (step 13), but for those it left out (dataIDOutcome). A visit
// that ran every data ID and was done with each gets allDone, one map
// for every such visit, rather than a map of its own on the path
// between two visits.
func (p *pipeline) dataIDOutcomes(v *visitRun, visit VisitOutcome) map[string]VisitOutcome {
	if visit == VisitDone && len(v.skip) == 0 && len(v.failedIDs) == 0 && len(v.stopped) == 0 && v.serialErr == nil {
		return p.allDone
	}
	out := make(map[string]VisitOutcome, len(p.allIDs))
	for _, id := range p.allIDs {
		if o, ran := dataIDOutcome(v, id, visit); ran {
			out[id] = o
		}
	}
	return out
}

// dataIDOutcome is data ID id's outcome in v, had v ended as visit:
// failed, interrupted (by a stop signal, or with the visit), skipped (the
// visit failed on the Pipeline), else done; ran is false for a data ID
// the visit left out (done by an earlier attempt).
func dataIDOutcome(v *visitRun, id string, visit VisitOutcome) (o VisitOutcome, ran bool) {
	switch {
	case v.skip[id]:
		return "", false
	case v.failedIDs[id]:
		return VisitFailed, true
	case v.stopped[id] || visit == VisitInterrupted:
		return VisitInterrupted, true
	case v.serialErr != nil:
		return DataIDSkipped, true
	}
	return VisitDone, true
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
func (p *pipeline) ranIDs(v *visitRun) int { return len(p.allIDs) - len(v.skip) }

// dataIDEarlier is a data ID's word in the KeyDataIDs item when an
// earlier attempt of the visit did it.
const dataIDEarlier = "earlier"

// dataIDsItem is the KeyDataIDs item of v: each data ID's outcome so far.
func (p *pipeline) dataIDsItem(v *visitRun) map[string]any {
	out := make(map[string]any, len(p.allIDs))
	for _, id := range p.allIDs {
		if o, ran := dataIDOutcome(v, id, VisitDone); ran {
			out[id] = string(o)
		} else {
			out[id] = dataIDEarlier
		}
	}
	return out
}

// byDataID collects the shared values of one parallel stage's reports:
// by key, each data ID's values in the order its clipboards sent them.
type byDataID map[string]map[string][]any

// add notes the items one clipboard of data ID id shared.
func (g byDataID) add(id string, items map[string]any) {
	for k, val := range items {
		if g[k] == nil {
			g[k] = map[string][]any{}
		}
		g[k][id] = append(g[k][id], val)
	}
}

// putOn puts each key on the Pipeline's clipboard cb as a map from data
// ID to its value (a list when several of its clipboards sent one), and
// every key of declared that no data ID sent as an empty map.
func (g byDataID) putOn(cb *Clipboard, declared []string) {
	for k, ids := range g {
		m := make(map[string]any, len(ids))
		for id, vs := range ids {
			if len(vs) == 1 {
				m[id] = vs[0]
			} else {
				m[id] = vs
			}
		}
		cb.Put(k, m)
	}
	for _, k := range declared {
		if _, ok := g[k]; ok {
			continue
		}
		cb.Put(k, map[string]any{})
	}
}
