package harness

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/dpsbatch/dpsbatch/mapper"
)

// Well-known clipboard keys the harness fills in for every visit.
const (
	// KeyVisit holds the visit ID (a string) on every clipboard.
	KeyVisit = "visitId"
	// KeyDataID holds the slice's mapper.DataID on every slice clipboard;
	// each of the data ID's keys is also put on the clipboard by itself.
	KeyDataID = "dataId"
	// KeyDataIDs holds, on the Pipeline's clipboard, each data ID of the
	// visit (as mapper.DataID.String) with its outcome so far, a
	// map[string]any of strings: "done" (it came through every stage so
	// far), "failed", "interrupted" (a stop signal ended its program), or
	// "earlier" (an earlier attempt did it: this one leaves it out, and
	// its values are in that attempt's events). It is put anew before
	// each Preprocess and Postprocess, so as not to cost a map of every
	// data ID per stage when no stage runs on the Pipeline.
	KeyDataIDs = "dataIds"
)

// Clipboard holds the named values stages pass to each other during one
// visit: one clipboard on the Pipeline, and one per data ID on each Slice.
// Items marked shared travel between the Pipeline and the Slices at each
// parallel stage (see PutShared). A clipboard is used by one goroutine and
// released when its visit ends: a stage must not keep it, or anything
// that reads it later, past its call (with one visit in flight, the
// harness empties it and reuses it for the next visit).
type Clipboard struct {
	items  map[string]item
	dataID mapper.DataID
	undo   *undoLog // while the freezer watches a call on it (freezedry.go)
	// anyShared: PutShared was called on this clipboard (or the one it
	// was cloned from). Without it no item is shared, and takeShared,
	// called at every parallel stage, returns at once.
	anyShared bool
}

type item struct {
	v      any
	shared bool
	dirty  bool // shared and changed since the last exchange
}

// newClipboard returns an empty clipboard.
func newClipboard() *Clipboard { return &Clipboard{items: map[string]item{}} }

// reset empties the clipboard for another visit, keeping its map's
// memory: the harness reuses a clipboard its visit released (step 13).
func (c *Clipboard) reset() {
	clear(c.items)
	*c = Clipboard{items: c.items}
}

// Get returns the value under key.
func (c *Clipboard) Get(key string) (any, bool) {
	it, ok := c.items[key]
	return it.v, ok
}

// Has reports whether key is on the clipboard.
func (c *Clipboard) Has(key string) bool { _, ok := c.items[key]; return ok }

// Put sets key to v, keeping the key's shared mark if it had one.
func (c *Clipboard) Put(key string, v any) {
	c.keepForUndo(key)
	it := c.items[key]
	it.v = v
	it.dirty = it.shared
	c.items[key] = it
}

// PutShared sets key to v and marks it shared. On the Pipeline, shared
// items set since the last parallel stage are broadcast to every Slice
// before that stage's Process and put on each slice clipboard. On a Slice,
// shared items set by a stage go back to the Pipeline after the stage: the
// Pipeline's clipboard then holds, under the same key, a map[string]any
// from each data ID (mapper.DataID.String, "ccd=3") that set it in that
// stage to its value, so a data ID that failed is missing from it (see
// KeyDataIDs for what became of it). A data ID whose stage emitted
// several clipboards that set the key has a []any of their values, in
// order. A key the built-in exec and worker stages declare shared is
// there after the stage even when no data ID set it: an empty map.
// Shared values must be encodable with encoding/gob: plain values, lists and
// maps of them, or types registered with RegisterType.
func (c *Clipboard) PutShared(key string, v any) {
	c.keepForUndo(key)
	c.items[key] = item{v: v, shared: true, dirty: true}
	c.anyShared = true
}

// Delete removes key.
func (c *Clipboard) Delete(key string) {
	c.keepForUndo(key)
	delete(c.items, key)
}

// undoLog keeps, for the call the freezer watches, the first item each
// key held before the call changed it: the call's input is the
// clipboard with them put back (freezer.input).
type undoLog struct{ kept []keptItem }

type keptItem struct {
	key string
	it  item
	had bool
}

// keepForUndo notes key's item before its first change under watch.
func (c *Clipboard) keepForUndo(key string) {
	u := c.undo
	if u == nil {
		return
	}
	for _, k := range u.kept {
		if k.key == key {
			return
		}
	}
	it, had := c.items[key]
	u.kept = append(u.kept, keptItem{key, it, had})
}

// Keys returns the keys on the clipboard, sorted.
func (c *Clipboard) Keys() []string {
	ks := make([]string, 0, len(c.items))
	for k := range c.items {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Len is the number of items.
func (c *Clipboard) Len() int { return len(c.items) }

// IsShared reports whether key is marked shared.
func (c *Clipboard) IsShared(key string) bool { return c.items[key].shared }

// DataID is the data ID this clipboard belongs to (nil on the Pipeline).
func (c *Clipboard) DataID() mapper.DataID { return c.dataID }

// Clone returns a copy of the clipboard (values are not deep-copied), for
// a stage that emits several clipboards from one (see Context.Emit).
func (c *Clipboard) Clone() *Clipboard {
	n := &Clipboard{items: make(map[string]item, len(c.items)), dataID: c.dataID, anyShared: c.anyShared}
	for k, it := range c.items {
		n.items[k] = it
	}
	return n
}

// Text returns the value under key formatted for a path or command line:
// strings as they are, numbers and booleans in their usual form. Lists,
// maps and byte slices are not text and give an error.
func (c *Clipboard) Text(key string) (string, error) {
	v, ok := c.items[key]
	if !ok {
		return "", fmt.Errorf("clipboard has no key %q", key)
	}
	return scalarText(key, v.v)
}

// templateText is key's value for a template: its Text, and outside a
// path a map or list (such as a shared key's values by data ID on the
// Pipeline) as compact JSON, a map's keys sorted.
func (c *Clipboard) templateText(key string, inPath bool) (string, error) {
	it, ok := c.items[key]
	if !ok {
		return "", fmt.Errorf("clipboard has no key %q", key)
	}
	if s, ok := jsonText(it.v); ok && !inPath {
		return s, nil
	}
	return scalarText(key, it.v)
}

// jsonText is v as JSON when v is a map or list of plain values.
func jsonText(v any) (string, bool) {
	switch v.(type) {
	case map[string]any, []any, map[string]string, []string:
		b, err := json.Marshal(v)
		return string(b), err == nil
	}
	return "", false
}

func scalarText(key string, v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64, bool:
		return fmt.Sprint(v), nil
	case fmt.Stringer:
		return v.String(), nil
	}
	return "", fmt.Errorf("clipboard key %q holds %T, which is not text", key, v)
}

// takeShared returns the shared items changed since the last call and
// clears their marks; nil when there are none.
func (c *Clipboard) takeShared() map[string]any {
	var out map[string]any
	if !c.anyShared {
		return nil
	}
	for k, it := range c.items {
		if it.dirty {
			if out == nil {
				out = map[string]any{}
			}
			out[k] = it.v
			it.dirty = false
			c.items[k] = it
		}
	}
	return out
}
