// Package capture is the freeze-dried input of one stage call: the file
// the harness writes into a run's captures folder when a stage fails (on a
// Slice, or on the Pipeline in its pre- or post-step) or when a stage
// named for freeze-drying starts, and that `dpsbatch replay` reads to run
// the stage again in one process.
//
// A capture is one JSON file (Capture): the clipboard items (each as gob,
// which gives the value back with its Go type, and as JSON, for people and
// for programs in other languages), the visit's trigger properties, the
// data ID, the stage's settings as written and after expansion, the policy
// file's text, and the dpsbatch version. An item that cannot be encoded
// either way is listed by name with why (Unserialisable), never dropped.
// The input files the stage's settings name are recorded with size,
// modification time and checksum, and their bytes are kept in the capture
// when they are smaller than a limit (Limits), so the capture replays on
// another machine. The captures of a run share a size budget (Limits.PerRun):
// once it is spent, no further capture is written, and the Writer says so
// once for the whole run.
//
// The package knows nothing of stages, clipboards or runs beyond the plain
// values the harness hands it; it never runs a stage.
package capture

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// FormatVersion is the shape of the capture files this dpsbatch writes,
// and the newest it reads.
const FormatVersion = 1

// Why a capture was taken.
const (
	WhyFailed = "failed" // the stage failed
	WhyEntry  = "entry"  // the stage was named for freeze-drying: taken as it started
)

// Where the captured call ran.
const (
	SideSlice    = "slice"    // Process on a Slice, with one data ID's clipboard
	SidePipeline = "pipeline" // Preprocess or Postprocess on the Pipeline
)

// Capture is one stage call's input, as the capture file holds it.
type Capture struct {
	Format   int       `json:"format"`
	Version  string    `json:"dpsbatchVersion"` // internal/version's line of the binary that wrote it
	Why      string    `json:"why"`             // WhyFailed or WhyEntry
	Err      string    `json:"error,omitempty"` // the stage's error (WhyFailed)
	At       time.Time `json:"at"`
	Host     string    `json:"host"`
	Run      string    `json:"run"`
	RunDir   string    `json:"runDir"`
	Pipeline string    `json:"pipeline"`
	// PipelineDir is what {pipelinedir} named.
	PipelineDir string `json:"pipelineDir"`
	Visit       string `json:"visit"`
	Stage       string `json:"stage"`
	StageType   string `json:"stageType"`
	Side        string `json:"side"` // SideSlice or SidePipeline
	// Part is the stage's function the input was for: Process,
	// Preprocess or Postprocess.
	Part  string `json:"part"`
	Slice int    `json:"slice"` // rank; 0 on the Pipeline
	// DataID is the Slice's data ID (nil on the Pipeline).
	DataID map[string]any `json:"dataId,omitempty"`
	// Event is the visit's trigger event's properties.
	Event map[string]any `json:"event"`
	// Items are the clipboard's items as the call got them, by key order;
	// Unserialisable those that could not be encoded.
	Items          []Item           `json:"items"`
	Unserialisable []Unserialisable `json:"unserialisable,omitempty"`
	// Settings are the stage's settings as the policy gives them (defaults
	// filled in); Expanded the string settings with their {names}
	// expanded for this call (a value that does not expand holds why).
	Settings map[string]any `json:"settings"`
	Expanded map[string]any `json:"expanded,omitempty"`
	// Policy is the policy file's text, PolicyFile its path.
	Policy     string `json:"policy"`
	PolicyFile string `json:"policyFile"`
	// Files are the input files the stage's settings name.
	Files []File `json:"files,omitempty"`
	// Stdin, for a worker stage's call, is the request line its program
	// reads on stdin for this data ID.
	Stdin string `json:"stdin,omitempty"`
}

// Item is one clipboard item.
type Item struct {
	Key    string `json:"key"`
	Type   string `json:"type"` // the value's Go type
	Shared bool   `json:"shared,omitempty"`
	// Gob is the value encoded with encoding/gob as an interface value
	// (nil when gob cannot encode it); JSON the value as JSON (null when
	// it has none).
	Gob  []byte          `json:"gob,omitempty"`
	JSON json.RawMessage `json:"json"`
}

// Unserialisable is a clipboard item neither gob nor JSON could encode.
type Unserialisable struct {
	Key  string `json:"key"`
	Type string `json:"type"`
	Why  string `json:"why"`
}

// File is an input file a stage setting names.
type File struct {
	Setting string    `json:"setting"` // the setting's key, with [i] or .key for an element
	Named   string    `json:"named"`   // the text in the expanded setting that names it
	Path    string    `json:"path"`    // absolute, as the stage saw it
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
	SHA256  string    `json:"sha256"`
	// Data is the file's bytes, when it was below Limits.CopyBelow;
	// NotCopied says why it is not otherwise.
	Data      []byte `json:"data,omitempty"`
	NotCopied string `json:"notCopied,omitempty"`
}

// Read reads a capture file. Its errors name the file.
func Read(path string) (*Capture, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	var c Capture
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("capture: %s is not a capture file: %w", path, err)
	}
	switch {
	case c.Format == 0 || c.Stage == "":
		return nil, fmt.Errorf("capture: %s is not a capture file: no format or stage", path)
	case c.Format > FormatVersion:
		return nil, fmt.Errorf("capture: %s has format %d, newer than this dpsbatch reads (%d): replay it with the dpsbatch that wrote it (%s)", path, c.Format, FormatVersion, c.Version)
	}
	return &c, nil
}
