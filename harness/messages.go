package harness

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"fmt"

	"github.com/dpsbatch/dpsbatch/mapper"
)

// The messages the ranks exchange over the communicator. Each is encoded
// with encoding/gob, except that a message with nothing in it travels as
// zero bytes: a no-op stage costs one empty broadcast and one empty gather.
// Who sends each, when, and what the receiver does: protocol.go.

// visitMsg starts a visit on every Slice, or ends the run (Stop).
type visitMsg struct {
	Stop  bool
	Visit string
	Props map[string]any
	Done  []string // data IDs an earlier attempt did: the Slices leave them out
	// Begin: the visit's first stage is parallel and its stageMsg would
	// be empty; the Slices start it at once, without one (step 8).
	Begin bool
}

// stageMsg is broadcast before each parallel stage.
type stageMsg struct {
	Skip   bool           // the visit failed on the Pipeline: drop it
	Props  map[string]any // properties of events waited for since the last parallel stage
	Shared map[string]any // Pipeline's shared items changed since then
}

// sliceReport is gathered after each parallel stage.
type sliceReport struct {
	Failures []failureMsg
	Shared   []sharedMsg
	Outputs  []outputMsg
}

type failureMsg struct {
	DataID string
	Err    string
	// Stopped: the slice's program was ended by a stop signal the job
	// received; the visit is interrupted, not failed.
	Stopped bool
	// Capture is the failed call's capture file, relative to the run
	// directory ("" when none was written).
	Capture string
}

type sharedMsg struct {
	DataID string
	Items  map[string]any
}

// outputMsg is a file a data ID's stage declared it writes and made in
// this stage (Context.madeOutputs), with its size in bytes.
type outputMsg struct {
	DataID string
	Path   string
	Size   int64
}

// assignMsg is scattered once: a Slice's data IDs and, when a stage
// exchanges over the mapper topology, the ranks of its neighbours; or why
// there are none.
type assignMsg struct {
	Err        string
	IDs        []mapper.DataID
	Neighbours []int
}

// flightMsg is, with visits in flight (in_flight above 1), every message
// the Pipeline Bcasts after the assignment: the visit it is about, the
// step that follows, and in Body the message one visit in flight would
// send for that step as it would send it (a visitMsg, a stageMsg), or
// nothing. It has its own compact encoding (encodeFlight).
type flightMsg struct {
	Step  flightStep
	Visit string
	Body  []byte
}

// flightStep says what a flightMsg announces.
type flightStep byte

// The steps of a flightMsg.
const (
	// flightStart: the visit starts; Body is its visitMsg.
	flightStart flightStep = 1 + iota
	// flightStage: the visit's next parallel stage; Body is its stageMsg.
	flightStage
	// flightPoll: every Slice answers by Gather with the visits whose
	// running stage it has processed (encodeIDs), once it has one or
	// after pollWait.
	flightPoll
	// flightCollect: the visit's stage is collected: an Exchange if it
	// exchanges, then the Gather of sliceReport.
	flightCollect
	// flightStop: the Slices' loop ends.
	flightStop
)

func (m *stageMsg) empty() bool { return !m.Skip && len(m.Props) == 0 && len(m.Shared) == 0 }
func (m *sliceReport) empty() bool {
	return len(m.Failures) == 0 && len(m.Shared) == 0 && len(m.Outputs) == 0
}

// decodeStage decodes a stageMsg. The empty message, a no-op stage's,
// is the empty stageMsg and allocates nothing (decoding into a variable
// would put it on the heap at every stage).
func decodeStage(data []byte) (stageMsg, error) {
	if len(data) == 0 {
		return stageMsg{}, nil
	}
	var m stageMsg
	err := decode(data, &m)
	return m, err
}

func encode(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(v); err != nil {
		return nil, fmt.Errorf("harness: encoding %T: %w (shared values must be plain values or types registered with harness.RegisterType)", v, err)
	}
	return b.Bytes(), nil
}

func decode(data []byte, v any) error {
	if len(data) == 0 {
		return nil
	}
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(v); err != nil {
		return fmt.Errorf("harness: decoding %T: %w", v, err)
	}
	return nil
}

func init() {
	gob.Register(mapper.DataID(nil))
}

// Visit messages travel once per visit to every Slice. A fresh gob
// decoder compiles the message's type each time (about 13 µs), so visit
// messages whose properties are all strings use a plain format instead:
// a 1 byte, then the flags (Stop, Begin: visitStop, visitBegin) as a
// uvarint, and Visit and the properties as uvarint-prefixed fields.
// Anything else is a 0 byte followed by gob.
func encodeVisit(m visitMsg) ([]byte, error) {
	if len(m.Done) > 0 {
		return gobVisit(m)
	}
	b := make([]byte, 0, 64)
	b = append(b, 1)
	var flags uint64
	if m.Stop {
		flags |= visitStop
	}
	if m.Begin {
		flags |= visitBegin
	}
	b = binary.AppendUvarint(b, flags)
	b = appendStr(b, m.Visit)
	b = binary.AppendUvarint(b, uint64(len(m.Props)))
	for k, v := range m.Props {
		s, ok := v.(string)
		if !ok {
			return gobVisit(m)
		}
		b = appendStr(appendStr(b, k), s)
	}
	return b, nil
}

// The flags of a visitMsg in its compact format.
const (
	visitStop  = 1
	visitBegin = 2
)

// gobVisit is the visitMsg in its general format: a 0 byte, then gob.
func gobVisit(m visitMsg) ([]byte, error) {
	g, err := encode(m)
	if err != nil {
		return nil, err
	}
	return append([]byte{0}, g...), nil
}

func appendStr(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// decodeVisit reads a visitMsg that encodeVisit wrote. The message is
// returned, not decoded through a pointer: on the compact format's path,
// once a visit on every Slice, it then stays off the heap.
func decodeVisit(data []byte) (visitMsg, error) {
	var m visitMsg
	if len(data) == 0 {
		return m, nil
	}
	if data[0] == 0 {
		var g visitMsg
		err := decode(data[1:], &g)
		return g, err
	}
	r := data[1:]
	u := func() (uint64, bool) {
		x, n := binary.Uvarint(r)
		if n <= 0 {
			return 0, false
		}
		r = r[n:]
		return x, true
	}
	str := func() (string, bool) {
		n, ok := u()
		if !ok || n > uint64(len(r)) {
			return "", false
		}
		s := string(r[:n])
		r = r[n:]
		return s, true
	}
	flags, ok := u()
	if !ok || flags&^(visitStop|visitBegin) != 0 {
		return m, malformed((*visitMsg)(nil))
	}
	m.Stop, m.Begin = flags&visitStop != 0, flags&visitBegin != 0
	if m.Visit, ok = str(); !ok {
		return m, malformed((*visitMsg)(nil))
	}
	n, ok := u()
	if !ok || n > uint64(len(r)) {
		return m, malformed((*visitMsg)(nil))
	}
	if n > 0 {
		m.Props = make(map[string]any, n)
	}
	for range n {
		k, ok1 := str()
		v, ok2 := str()
		if !ok1 || !ok2 {
			return m, malformed((*visitMsg)(nil))
		}
		m.Props[k] = v
	}
	return m, nil
}

// malformed is the error of a message that cannot be decoded into v,
// made only when one fails: a decoder on the stage loop's path formats
// nothing when all is well.
func malformed(v any) error { return fmt.Errorf("harness: decoding %T: malformed", v) }

// encodeFlight writes a flightMsg as its step byte, then the visit and
// the body, each uvarint-prefixed.
func encodeFlight(m flightMsg) []byte {
	b := make([]byte, 0, 2+len(m.Visit)+len(m.Body)+2*binary.MaxVarintLen64)
	b = append(b, byte(m.Step))
	b = appendStr(b, m.Visit)
	return append(binary.AppendUvarint(b, uint64(len(m.Body))), m.Body...)
}

// decodeFlight reads what encodeFlight wrote.
func decodeFlight(data []byte) (flightMsg, error) {
	var m flightMsg
	if len(data) == 0 {
		return m, malformed(m)
	}
	m.Step, data = flightStep(data[0]), data[1:]
	var ok bool
	if m.Visit, data, ok = readStr(data); !ok {
		return m, malformed(m)
	}
	body, rest, ok := readStr(data)
	if !ok || len(rest) > 0 || m.Step < flightStart || m.Step > flightStop {
		return m, malformed(m)
	}
	if body != "" {
		m.Body = []byte(body)
	}
	return m, nil
}

// readStr reads a uvarint-prefixed string off the front of data.
func readStr(data []byte) (s string, rest []byte, ok bool) {
	n, k := binary.Uvarint(data)
	if k <= 0 || n > uint64(len(data)-k) {
		return "", data, false
	}
	return string(data[k : k+int(n)]), data[k+int(n):], true
}

// encodeIDs writes a Slice's answer to a poll: each visit ID,
// uvarint-prefixed.
func encodeIDs(ids []string) []byte {
	var b []byte
	for _, id := range ids {
		b = appendStr(b, id)
	}
	return b
}

// decodeIDs reads what encodeIDs wrote.
func decodeIDs(data []byte) ([]string, error) {
	var ids []string
	for len(data) > 0 {
		id, rest, ok := readStr(data)
		if !ok {
			return nil, fmt.Errorf("harness: decoding visit IDs: malformed")
		}
		ids, data = append(ids, id), rest
	}
	return ids, nil
}
