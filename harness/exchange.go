package harness

// Slice-to-slice sharing (exchange).
//
// Besides the shared items the Pipeline gathers (see Clipboard.PutShared),
// a parallel stage may declare in its policy entry that its slices hand
// some clipboard values directly to their neighbours:
//
//	stages:
//	  - name: index
//	    type: zone-index
//	    exchange: {topology: mapper, keys: [objects]}
//
// Semantics, for such a stage in one visit:
//
//   - After Process has run on every clipboard of a Slice, the Slice takes
//     the clipboards that come out of the stage (those Process passed on or
//     emitted; failed clipboards are gone and send nothing). For each key
//     listed, every such clipboard that holds the key contributes its value,
//     under its data ID string (mapper.DataID.String). When several of
//     them share a data ID (after Context.Emit), the first in queue order
//     is sent and the others' values are not (a warning is logged).
//   - The Slice sends that to each of its neighbours over Comm.Exchange,
//     and receives theirs. Every rank, the Pipeline included, calls
//     Exchange once per visit for the stage, whether it has neighbours,
//     data or not, so sends and receives always pair up.
//   - Every clipboard that comes out of the stage on the Slice then holds,
//     for each key k, the item NeighboursKey(k) = "k.neighbours": a
//     map[string]any from the data ID string of each neighbour clipboard
//     that sent k to its value. The map is never nil (empty when there are
//     no neighbours or none of them had the key) and each clipboard has its
//     own map; the values are decoded copies, shared by the clipboards of
//     one Slice. The item is not shared: it does not travel to the
//     Pipeline unless a stage marks it so. A Slice's own clipboards do not
//     appear in it: it holds what the neighbour slices sent.
//   - Only then is the stage's report gathered by the Pipeline, and the
//     next stage's Process runs: it sees the "k.neighbours" items.
//   - A value that cannot be encoded (see RegisterType) fails the clipboard
//     that holds it, as a Process error would, and is not sent.
//   - When the visit failed on the Pipeline before the stage (its
//     Preprocess failed, say), the stage is skipped and nothing is
//     exchanged.
//
// Topologies (slice ranks are 1..N; the Pipeline, rank 0, is never a
// neighbour):
//
//   - ring: slice r's neighbours are r-1 and r+1, wrapping around (1 and N
//     are neighbours). With N == 2 each slice has one neighbour, the other;
//     with N == 1 none.
//   - mapper: the policy's mapper names them. It must implement
//     mapper.NeighbourMapper; the Pipeline asks it once, after assigning the data
//     IDs and before the first visit, checks that the lists are symmetric
//     and scatters each Slice its neighbours with its data IDs. A mapper
//     that does not implement it is a validate error; an error from it or
//     an asymmetric answer stops the run before the first visit.
//
// Stages without an exchange section cost nothing more: no message, no
// allocation.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dpsbatch/dpsbatch/mapper"
)

// topology names how the slices of an exchanging stage are connected.
type topology string

// The topologies a stage's exchange section may name.
const (
	// topologyRing connects slice r to r-1 and r+1, wrapping around.
	topologyRing topology = "ring"
	// topologyMapper takes the neighbours from the policy's mapper, which
	// must implement mapper.NeighbourMapper.
	topologyMapper topology = "mapper"
)

// exchangeSpec is a stage's exchange section: which clipboard keys its
// slices send to their neighbours after Process, over which topology. See
// the comment at the top of exchange.go for the exact semantics.
type exchangeSpec struct {
	Topology topology
	Keys     []string
	Line     int   // of the exchange section
	KeysLine int   // of keys
	KeyLines []int // of each key, as Keys
	// TopologyLine is the line of topology.
	TopologyLine int
}

// neighboursSuffix is appended to an exchanged key to name the item that
// holds what the neighbours sent (see NeighboursKey).
const neighboursSuffix = ".neighbours"

// NeighboursKey is the clipboard key under which a stage's exchange puts
// the values of key received from the neighbour slices: key + ".neighbours".
func NeighboursKey(key string) string { return key + neighboursSuffix }

// ringNeighbours returns the ranks of slice rank's neighbours in a ring of
// slices 1..n, sorted, without itself or duplicates.
func ringNeighbours(rank, n int) []int {
	if n < 2 || rank < 1 || rank > n {
		return nil
	}
	left, right := (rank-2+n)%n+1, rank%n+1
	if left == right {
		return []int{left}
	}
	return []int{min(left, right), max(left, right)}
}

// mapperNeighbours asks m for the neighbour lists, checks them and returns
// them as ranks: out[i] for the slice at rank i+1, sorted.
func mapperNeighbours(m mapper.DataMapper, name string, hosts []mapper.HostInfo, ids [][]mapper.DataID) ([][]int, error) {
	nm, ok := m.(mapper.NeighbourMapper)
	if !ok {
		return nil, fmt.Errorf("harness: exchange topology mapper: mapper %q does not name neighbours (it does not implement mapper.NeighbourMapper)", name)
	}
	lists, err := nm.Neighbours(hosts, ids)
	if err != nil {
		return nil, fmt.Errorf("harness: mapper %q: neighbours: %w", name, err)
	}
	if err := checkNeighbours(lists, len(hosts)); err != nil {
		return nil, fmt.Errorf("harness: mapper %q: neighbours: %w", name, err)
	}
	out := make([][]int, len(lists))
	for i, l := range lists {
		out[i] = make([]int, len(l))
		for k, j := range l {
			out[i][k] = j + 1 // slice index j runs at rank j+1
		}
		slices.Sort(out[i])
	}
	return out, nil
}

// checkNeighbours checks neighbour lists by slice index: one list per
// slice, indices in range, no slice its own neighbour, none listed twice,
// symmetric. It reports every problem (up to a handful) in one error.
func checkNeighbours(lists [][]int, n int) error {
	if len(lists) != n {
		return fmt.Errorf("gave neighbour lists for %d slices, but there are %d", len(lists), n)
	}
	var problems []string
	has := make([]map[int]bool, n)
	for i, l := range lists {
		has[i] = make(map[int]bool, len(l))
		for _, j := range l {
			switch {
			case j < 0 || j >= n:
				problems = append(problems, fmt.Sprintf("slice %d lists slice %d, out of range [0,%d)", i, j, n))
			case j == i:
				problems = append(problems, fmt.Sprintf("slice %d lists itself", i))
			case has[i][j]:
				problems = append(problems, fmt.Sprintf("slice %d lists slice %d twice", i, j))
			default:
				has[i][j] = true
			}
		}
	}
	for i, l := range lists {
		for _, j := range l {
			if j >= 0 && j < n && j != i && !has[j][i] {
				problems = append(problems, fmt.Sprintf("slice %d lists slice %d, but slice %d does not list slice %d", i, j, j, i))
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	const most = 8
	if len(problems) > most {
		problems = append(problems[:most], fmt.Sprintf("and %d more", len(problems)-most))
	}
	return fmt.Errorf("not symmetric or malformed (slice indices from 0): %s", strings.Join(problems, "; "))
}

// usesMapperTopology reports whether a stage exchanges over the mapper's
// neighbours, so the Pipeline must ask the mapper for them.
func (p *Policy) usesMapperTopology() bool {
	for i := range p.Stages {
		if x := p.Stages[i].Exchange; x != nil && x.Topology == topologyMapper {
			return true
		}
	}
	return false
}

// exchangeMsg is what a Slice sends each neighbour after an exchanging
// stage: by key, by data ID string, the value. Empty, it travels as zero
// bytes.
type exchangeMsg struct {
	Items map[string]map[string]any
}

// pipelineExchange is the Pipeline's part of an exchanging stage: it
// sends and receives nothing, but calls Exchange as every rank must.
func (p *pipeline) pipelineExchange() error {
	_, err := p.c.Exchange(nil, nil)
	return err
}

// sliceExchange is a Slice's part of an exchanging stage b, after its
// Process and before its report is gathered: it sends the values of the
// exchanged keys held by the clipboards in out to the neighbours, puts
// what they sent on those clipboards, and returns out without the
// clipboards whose value could not be encoded (added to rep's failures).
// It is called on the Slice's loop goroutine, once per visit per
// exchanging stage, by every Slice.
func (r *rank) sliceExchange(b *built, visit string, out []*Clipboard, rep *sliceReport) ([]*Clipboard, error) {
	x := b.spec.Exchange
	nbrs := b.neighbours
	var data []byte
	if len(nbrs) > 0 {
		msg := r.exchangeItems(b, visit, out)
		if len(msg.Items) > 0 {
			var err error
			if data, err = encode(msg); err != nil {
				out = r.dropUnencodable(b, msg, out, rep)
				if data, err = encode(msg); err != nil {
					return out, err
				}
				if len(msg.Items) == 0 {
					data = nil
				}
			}
		}
	}
	var send map[int][]byte
	if len(nbrs) > 0 {
		send = make(map[int][]byte, len(nbrs))
		for _, n := range nbrs {
			send[n] = data // the same bytes for everyone: nobody changes them
		}
	}
	got, err := r.c.Exchange(send, nbrs)
	if err != nil {
		return out, err
	}
	recv := make(map[string]map[string]any, len(x.Keys))
	for _, k := range x.Keys {
		recv[k] = map[string]any{}
	}
	for _, n := range nbrs {
		var m exchangeMsg
		if err := decode(got[n], &m); err != nil {
			return out, fmt.Errorf("harness: stage %q: exchange from slice %d: %w", b.spec.Name, n, err)
		}
		for k, byID := range m.Items {
			dst, ok := recv[k]
			if !ok {
				return out, fmt.Errorf("harness: stage %q: slice %d sent key %q, which the stage does not exchange", b.spec.Name, n, k)
			}
			for id, v := range byID {
				dst[id] = v
			}
		}
	}
	for _, cb := range out {
		for _, k := range x.Keys {
			m := make(map[string]any, len(recv[k]))
			for id, v := range recv[k] {
				m[id] = v
			}
			cb.Put(NeighboursKey(k), m)
		}
	}
	return out, nil
}

// exchangeItems collects what a Slice sends: for each exchanged key, the
// value of every clipboard in out that holds it, by data ID string; the
// first clipboard of a data ID wins.
func (r *rank) exchangeItems(b *built, visit string, out []*Clipboard) exchangeMsg {
	var msg exchangeMsg
	for _, cb := range out {
		var id string
		for _, k := range b.spec.Exchange.Keys {
			v, ok := cb.Get(k)
			if !ok {
				continue
			}
			if id == "" {
				id = cb.dataID.String()
			}
			if msg.Items == nil {
				msg.Items = map[string]map[string]any{}
			}
			byID := msg.Items[k]
			if byID == nil {
				byID = map[string]any{}
				msg.Items[k] = byID
			}
			if _, dup := byID[id]; dup {
				r.log.Warn("exchange: several clipboards of one data ID hold the key; sending the first one's value",
					"visit", visit, "stage", b.spec.Name, "key", k, "dataId", id)
				continue
			}
			byID[id] = v
		}
	}
	return msg
}

// dropUnencodable removes from msg every value that cannot be encoded,
// fails the clipboards in out that sent one (they go to rep's failures)
// and returns out without them.
func (r *rank) dropUnencodable(b *built, msg exchangeMsg, out []*Clipboard, rep *sliceReport) []*Clipboard {
	bad := map[string]map[string]error{} // data ID -> key -> why
	for k, byID := range msg.Items {
		for id, v := range byID {
			if _, err := encode(exchangeMsg{Items: map[string]map[string]any{k: {id: v}}}); err != nil {
				if bad[id] == nil {
					bad[id] = map[string]error{}
				}
				bad[id][k] = err
				delete(byID, id)
			}
		}
		if len(byID) == 0 {
			delete(msg.Items, k)
		}
	}
	kept := out[:0]
	for _, cb := range out {
		id := cb.dataID.String()
		var why string
		// The clipboard that sent the value is the first of its data ID
		// that holds the key (see exchangeItems).
		for _, k := range b.spec.Exchange.Keys {
			if err, ok := bad[id][k]; ok && cb.Has(k) {
				if why == "" {
					why = fmt.Sprintf("exchange of key %q: %v", k, err)
				}
				delete(bad[id], k)
			}
		}
		if why != "" {
			r.log.Error("slice failed", "stage", b.spec.Name, "dataId", id, "err", why)
			rep.Failures = append(rep.Failures, failureMsg{DataID: id, Err: why})
			continue
		}
		kept = append(kept, cb)
	}
	clear(out[len(kept):])
	return kept
}
