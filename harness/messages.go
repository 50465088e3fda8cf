package harness

import (
	"bytes"
	"encoding/gob"
	"fmt"

	"github.com/dpsbatch/dpsbatch/mapper"
)

// The messages the ranks exchange over the communicator. Each is encoded
// with encoding/gob, except that a message with nothing in it travels as
// zero bytes: a no-op stage costs one empty broadcast and one empty gather.

// visitMsg starts a visit on every Slice, or ends the run (Stop).
type visitMsg struct {
	Stop  bool
	Visit string
	Props map[string]any
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
}

type failureMsg struct {
	DataID string
	Err    string
}

type sharedMsg struct {
	DataID string
	Items  map[string]any
}

// assignMsg is scattered once: a Slice's data IDs and, when a stage
// exchanges over the mapper topology, the ranks of its neighbours; or why
// there are none.
type assignMsg struct {
	Err        string
	IDs        []mapper.DataID
	Neighbours []int
}

func (m *stageMsg) empty() bool    { return !m.Skip && len(m.Props) == 0 && len(m.Shared) == 0 }
func (m *sliceReport) empty() bool { return len(m.Failures) == 0 && len(m.Shared) == 0 }

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
