// Package mapper owns the assignment of data to workers: the DataMapper
// interface, HostInfo (what a Slice reports about where it runs), DataID
// (the slice-specific properties such as ccd=12 that stages substitute into
// paths) and the registry of mappers by name.
//
// At start the Pipeline gathers one HostInfo per Slice, calls Assign once,
// checks the result with Check and scatters each Slice's data IDs. The
// front end's plan, before anything runs, calls AssignDry over the slices
// laid out as planned: a mapper that can check its assignment without
// making it (DryAssigner) does so. Mappers register once, at init, in
// builtin.go or in a pipeline author's own package; the registry is not
// meant to change after the first Lookup.
//
// The package imports nothing of the project's but internal helpers.
package mapper

import (
	"fmt"
	"hash/maphash"
	"reflect"
	"sort"
	"strings"
	"sync"

	"github.com/dpsbatch/dpsbatch/internal/conf"
	"github.com/dpsbatch/dpsbatch/internal/repeats"
)

// DataID is a set of slice-specific properties naming one unit of data in
// a visit, such as {"raft": "2,2", "ccd": "12"}. Values are strings, as
// they end up in paths and command lines.
type DataID map[string]string

// String formats the data ID as key=value pairs sorted by key, joined by
// commas: "ccd=12,raft=2". The empty data ID prints as "".
func (d DataID) String() string {
	if len(d) == 1 { // the common case: no sorting, one allocation
		for k, v := range d {
			return k + "=" + v
		}
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(d[k])
	}
	return b.String()
}

// HostInfo is what a Slice reports about where it runs.
type HostInfo struct {
	Rank      int    // the slice's rank in the communicator (1..N)
	LocalRank int    // rank among the tasks on the same node
	Host      string // host name
	Node      string // Slurm node name (SLURMD_NODENAME), or Host
	CPUs      int    // CPUs available to this task
	MemoryMB  int64  // memory available to this task, in MiB
	// GPUs lists the IDs of the GPUs this task may use, comma-separated
	// as CUDA_VISIBLE_DEVICES does ("0", "0,1"); "" when it has none.
	GPUs string
}

// DataMapper assigns data IDs to slices.
type DataMapper interface {
	// Assign returns, for each slice (slices[i] describes slice i, which
	// runs at rank slices[i].Rank), the data IDs it processes in every
	// visit. It is called once, on the Pipeline, before the first visit.
	Assign(slices []HostInfo) ([][]DataID, error)
}

// NeighbourMapper is an optional extra of a DataMapper, needed by a
// pipeline whose stages exchange items over the topology "mapper".
// Without it such a policy does not validate.
//
// Neighbours is called once, on the Pipeline, after Assign and before the
// first visit, with the same slices and the assignment Assign returned
// (assigned[i] is slice i's data IDs). It returns, for each slice index i,
// the indices of the slices that are its neighbours: for sky data, the
// slices covering the sky adjacent to slice i's. The relation must be
// symmetric (j lists i whenever i lists j), may not list a slice as its
// own neighbour or list one twice; a result that breaks this, or an error,
// stops the run before the first visit.
type NeighbourMapper interface {
	Neighbours(slices []HostInfo, assigned [][]DataID) ([][]int, error)
}

// Enumerator is implemented by mappers whose data IDs are fixed by their
// settings. Without it, a pipeline cannot ask for one slice per data ID, and
// Check cannot tell whether every data ID was placed.
type Enumerator interface {
	DataIDs() []DataID
}

// Counter is an optional extra of an Enumerator that tells how many data
// IDs it has without making them. Without it, Count makes them.
type Counter interface {
	Count() int
}

// Count is how many data IDs e has.
func Count(e Enumerator) int {
	if c, ok := e.(Counter); ok {
		return c.Count()
	}
	return len(e.DataIDs())
}

// DryAssigner is an optional extra of a DataMapper whose assignment can be
// checked without being made, as a plan does before anything runs:
// DryAssign returns what Assign would (nil, or the same error), without
// building the data IDs. Without it, AssignDry calls Assign.
type DryAssigner interface {
	DryAssign(slices []HostInfo) error
}

// AssignDry says whether Assign(m, slices) would succeed, and if not,
// with which error; by m's DryAssign when it has one.
func AssignDry(m DataMapper, slices []HostInfo) error {
	if d, ok := m.(DryAssigner); ok {
		return d.DryAssign(slices)
	}
	_, err := Assign(m, slices)
	return err
}

// KeyLister is implemented by mappers that know the keys of the data IDs
// they produce. Without it, `dpsbatch validate` cannot tell whether a
// clipboard key a stage needs comes from the data ID.
type KeyLister interface {
	Keys() []string
}

// ValueChecker is implemented by mappers whose settings define their data
// ID values. Stages put those values into paths and command lines, so
// CheckValues reports the first that conf.CheckElement refuses (one with
// '/', a control character, a leading '-', or "." or ".."), its error
// starting with the mapper's name and the setting that defines it:
// "list: ids[3].ccd: ...". The pipeline asks it of new input only, so
// that a run created before still resumes; without it, a mapper's values
// are not checked.
type ValueChecker interface {
	CheckValues() error
}

// Factory makes a mapper from its settings.
type Factory struct {
	Doc string
	// Settings are checked against the policy's mapper.settings before
	// New is called.
	Settings []Setting
	// New builds the mapper. Its errors start with the mapper's name,
	// then the settings key they are about ("range: step must be at
	// least 1", "list: ids[3].ccd: ..."), which places them at that
	// key's line of the policy.
	New func(Values) (DataMapper, error)
}

var (
	mu        sync.RWMutex
	factories = map[string]Factory{}
)

// Register makes a mapper available by name. It panics when the name is
// empty or already taken, or New is nil: these are programming errors.
func Register(name string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if name == "" {
		panic("mapper: Register with an empty name")
	}
	if f.New == nil {
		panic("mapper: Register " + name + " with a nil New")
	}
	if _, dup := factories[name]; dup {
		panic("mapper: Register called twice for " + name)
	}
	factories[name] = f
}

// Lookup returns the factory registered under name.
func Lookup(name string) (Factory, error) {
	mu.RLock()
	defer mu.RUnlock()
	f, ok := factories[name]
	if !ok {
		return Factory{}, fmt.Errorf("mapper: unknown mapper %q%s %s", name, conf.Suggest(name, namesLocked()), conf.Have(namesLocked()))
	}
	return f, nil
}

// Names lists the registered mappers, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	return namesLocked()
}

func namesLocked() []string {
	ns := make([]string, 0, len(factories))
	for n := range factories {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

// Assign calls m.Assign and checks its result with Check.
func Assign(m DataMapper, slices []HostInfo) ([][]DataID, error) {
	got, err := m.Assign(slices)
	if err != nil {
		return nil, fmt.Errorf("mapper: %w", err)
	}
	if err := Check(m, slices, got); err != nil {
		return nil, err
	}
	return got, nil
}

// Check verifies an assignment: one list per slice, no data ID assigned
// twice, and, for an Enumerator, every data ID placed. The error names the
// data IDs and slices concerned. Data IDs are the same when their String
// is.
func Check(m DataMapper, slices []HostInfo, got [][]DataID) error {
	if len(got) != len(slices) {
		return fmt.Errorf("mapper: assigned data to %d slices, but there are %d", len(got), len(slices))
	}
	if err := checkTwice(slices, got); err != nil {
		return err
	}
	e, ok := m.(Enumerator)
	if !ok {
		return nil
	}
	all := e.DataIDs()
	if sameIDs(all, got) {
		return nil // every data ID placed, as the mapper listed them
	}
	if missing := unplaced(all, got); len(missing) > 0 {
		return fmt.Errorf("mapper: %d slices could not place data IDs %s", len(slices), joinIDs(missing))
	}
	return nil
}

// unplaced lists the data IDs of all, formatted, that got does not place.
func unplaced(all []DataID, got [][]DataID) []string {
	placed := make(map[string]bool, len(all))
	for _, ids := range got {
		for _, id := range ids {
			placed[id.String()] = true
		}
	}
	var missing []string
	for _, id := range all {
		if s := id.String(); !placed[s] {
			missing = append(missing, s)
		}
	}
	return missing
}

// checkTwice reports the first data ID, in slice order, that repeats one
// assigned before it (repeats.First).
func checkTwice(hosts []HostInfo, got [][]DataID) error {
	var flat []DataID
	for _, ids := range got {
		flat = append(flat, ids...)
	}
	var h maphash.Hash
	r, found := repeats.First(len(flat), func(i int) uint64 { return hashID(&h, flat[i]) },
		func(i int) string { return flat[i].String() })
	if !found {
		return nil
	}
	return assignedTwice(flat[r.Later].String(), hosts[listOf(got, r.First)], hosts[listOf(got, r.Later)])
}

// assignedTwice is Check's error for data ID id, assigned to the slices
// first and then.
func assignedTwice(id string, first, then HostInfo) error {
	return fmt.Errorf("mapper: data ID %q assigned twice (to the slices at rank %d and rank %d)", id, first.Rank, then.Rank)
}

// listOf is the index of the list of got that holds item k of got's lists
// one after the other.
func listOf(got [][]DataID, k int) int {
	for i, ids := range got {
		if k < len(ids) {
			return i
		}
		k -= len(ids)
	}
	return -1
}

// hashID is the hash of id.String() under h's seed, without building the
// string for a data ID of one key.
func hashID(h *maphash.Hash, id DataID) uint64 {
	h.Reset()
	if len(id) == 1 {
		for k, v := range id {
			h.WriteString(k)
			h.WriteByte('=')
			h.WriteString(v)
		}
	} else {
		h.WriteString(id.String())
	}
	return h.Sum64()
}

// sameIDs says whether got, slice after slice, is the list all itself:
// the same data IDs (the same maps) in the same order, as a mapper that
// splits its list into blocks returns it.
func sameIDs(all []DataID, got [][]DataID) bool {
	k := 0
	for _, ids := range got {
		if len(ids) > len(all)-k {
			return false
		}
		if len(ids) > 0 && &ids[0] == &all[k] {
			k += len(ids) // a block of the list itself
			continue
		}
		for _, id := range ids {
			if reflect.ValueOf(id).UnsafePointer() != reflect.ValueOf(all[k]).UnsafePointer() {
				return false
			}
			k++
		}
	}
	return k == len(all)
}

// joinIDs joins formatted data IDs with "; ", naming the first five and
// counting the rest: "ccd=1; ccd=2; ccd=3; ccd=4; ccd=5 and 2 more".
func joinIDs(ids []string) string {
	if len(ids) > 5 {
		return fmt.Sprintf("%s and %d more", strings.Join(ids[:5], "; "), len(ids)-5)
	}
	return strings.Join(ids, "; ")
}

// blockOf is the index of the block that holds item k when blocks splits
// n items into slices blocks.
func blockOf(k, n, slices int) int {
	q, r := n/slices, n%slices
	if k < r*(q+1) {
		return k / (q + 1)
	}
	return r + (k-r*(q+1))/q
}

// blocks splits ids into n contiguous runs whose lengths differ by at most
// one, the first runs being the longer ones.
func blocks(ids []DataID, n int) [][]DataID {
	out := make([][]DataID, n)
	q, r := len(ids)/n, len(ids)%n
	for i := 0; i < n; i++ {
		start := i*q + min(i, r)
		end := start + q
		if i < r {
			end++
		}
		out[i] = ids[start:end]
	}
	return out
}
