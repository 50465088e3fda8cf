package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/site"
	"github.com/dpsbatch/dpsbatch/state"
)

// settingsVersion is the version of the run settings this dpsbatch writes,
// and the newest it reads. Settings written before they carried a version
// (no "version" key) are version 1, read as they were.
//
// A change to the shape bumps it (a field added, renamed, removed or given
// a new meaning): an older dpsbatch then refuses the run, naming the
// version, instead of misreading it; and decodeSettings learns to read the
// versions before, migrating them to the current shape.
const settingsVersion = 1

// errNewerSettings: the run's settings were written by a newer dpsbatch.
var errNewerSettings = errors.New("run settings have a newer version")

// settings is what a run keeps in its state file (Run.Settings) so that
// resume can plan and render the same way. It is written only by
// encodeSettings and read only by decodeSettings.
type settings struct {
	// Version is the shape of the settings: settingsVersion when written
	// by encodeSettings, and after decodeSettings.
	Version     int     `json:"version"`
	Visits      string  `json:"visits"` // the copy's file name in the run directory
	PipelineDir string  `json:"pipelineDir"`
	Binary      string  `json:"binary"`
	SiteFile    string  `json:"siteFile,omitempty"`
	Request     Request `json:"request"`
	// Broker: the site's broker when the run was submitted.
	Broker brokerSettings `json:"broker,omitzero"`
	// Listen: after its visit list, the run reads trigger events from
	// its broker until a no-more-data (dpsbatch finish).
	Listen bool `json:"listen,omitempty"`
	// Heartbeat: how often the Pipeline says it is alive (0: the default).
	Heartbeat time.Duration `json:"heartbeat,omitempty"`
	// PartOf, for a step in a folder of its own (RUN-DIR/pipelines/NAME):
	// the run's directory, whose broker it dials and whose jobs it is
	// part of. "" for a step in the run directory itself.
	PartOf string `json:"production,omitempty"`
	// After: the steps of the run whose end closes this one's input (a
	// no-more-data on its trigger topic).
	After []string `json:"after,omitempty"`
	// Pipelines, for a run whose steps have folders of their own (a
	// production's top-level state file): its steps in order, each in
	// RUN-DIR/pipelines/NAME with its own state file and settings. Empty:
	// the run is one step, in the run directory, with these settings.
	Pipelines []prodEntry `json:"pipelines,omitempty"`
	// SlicesFrom, for a step in a folder of its own, names who asked for
	// Request.Slices: its production entry, or its policy.
	SlicesFrom string `json:"slicesFrom,omitempty"`
	// hold submits the first job held (submit --hold); not kept.
	hold bool
}

// run is the directory of the run whose step, in step, has these
// settings: the step's own for a step in the run directory.
func (set settings) run(step Layout) Layout {
	if set.PartOf != "" {
		return Layout{Dir: set.PartOf}
	}
	return step
}

// encodeSettings is the run settings as the state file keeps them
// (Run.Settings), at settingsVersion.
func encodeSettings(set settings) (string, error) {
	set.Version = settingsVersion
	data, err := json.Marshal(set)
	if err != nil {
		return "", fmt.Errorf("jobs: run settings: %w", err)
	}
	return string(data), nil
}

// decodeSettings reads the run settings raw, as encodeSettings wrote them
// in the state file at path (named in errors). Settings without a version
// are version 1 from before versions were written: they are read as they
// were, unknown keys ignored. The current version is read strictly: an
// unknown key is an error, so a mistyped setting is never dropped. A newer
// version is refused (errNewerSettings), naming it. Empty settings are the
// zero settings.
func decodeSettings(path, raw string) (settings, error) {
	set := settings{Version: settingsVersion}
	if raw == "" {
		return set, nil
	}
	var v struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		return settings{}, fmt.Errorf("jobs: %s: run settings: %w", path, err)
	}
	var err error
	switch {
	case v.Version == nil:
		err = json.Unmarshal([]byte(raw), &set)
	case *v.Version == settingsVersion:
		err = decodeStrict(raw, &set)
	case *v.Version > settingsVersion:
		return settings{}, fmt.Errorf("jobs: %s: run settings are version %d, this dpsbatch reads versions up to %d: "+
			"use a newer dpsbatch (the one that wrote the run) for this run: %w", path, *v.Version, settingsVersion, errNewerSettings)
	default:
		return settings{}, fmt.Errorf("jobs: %s: run settings version %d: no dpsbatch writes it (versions are 1 to %d)",
			path, *v.Version, settingsVersion)
	}
	if err != nil {
		return settings{}, fmt.Errorf("jobs: %s: run settings (version %d): %w", path, settingsVersion, err)
	}
	return set, nil
}

// decodeStrict decodes the one JSON value raw into v, refusing unknown
// keys and anything after the value.
func decodeStrict(raw string, v any) error {
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the settings")
	}
	return nil
}

// readSettings reads the run and its settings from the state file.
func readSettings(l Layout) (state.Run, settings, error) {
	st, err := state.OpenReadOnly(l.State())
	if err != nil {
		return state.Run{}, settings{}, err
	}
	defer st.Close()
	run, err := st.Run()
	if err != nil {
		return run, settings{}, err
	}
	set, err := decodeSettings(l.State(), run.Settings)
	return run, set, err
}

// prodEntry is one pipeline of a production as the run keeps it, with
// what resume needs to plan it again.
type prodEntry struct {
	Name   string `json:"name"`
	Slices int    `json:"slices,omitempty"` // as the production file gave it (0: the policy's)
}

// brokerSettings is the site's broker section as a run keeps it in its
// settings, so that its jobs and the relay commands reach the same broker
// whatever the site file says later. It holds no secret: a token file's
// path and a variable's name, never their contents.
type brokerSettings struct {
	Kind            string   `json:"kind,omitempty"` // "embedded" (or "") or "external"
	URLs            []string `json:"urls,omitempty"`
	CredentialsFile string   `json:"credentialsFile,omitempty"`
	TokenFile       string   `json:"tokenFile,omitempty"`
	TokenEnv        string   `json:"tokenEnv,omitempty"`
	// StreamSize is the limit of the run's events in bytes (the site's
	// broker.stream_size); 0, in runs created before it existed, is
	// events.DefaultMaxBytes.
	StreamSize int64 `json:"streamSize,omitempty"`
}

func brokerOf(s *site.Site) brokerSettings {
	b := s.Broker
	return brokerSettings{Kind: b.Kind, URLs: b.URLs, CredentialsFile: b.CredentialsFile, TokenFile: b.TokenFile, TokenEnv: b.TokenEnv,
		StreamSize: int64(b.StreamSizeMB) << 20}
}

// maxBytes is the limit of the run's events: the stream's and the
// embedded broker's store.
func (b brokerSettings) maxBytes() int64 {
	if b.StreamSize > 0 {
		return b.StreamSize
	}
	return events.DefaultMaxBytes
}

func (b brokerSettings) external() bool { return b.Kind == "external" }

// natsConfig is how to dial the site's external broker.
func (b brokerSettings) natsConfig(name, subscriber string, log *slog.Logger) events.NATSConfig {
	return events.NATSConfig{URLs: b.URLs, CredentialsFile: b.CredentialsFile, TokenFile: b.TokenFile, TokenEnv: b.TokenEnv,
		Name: name, Subscriber: subscriber, Logger: log, ConnectTimeout: 5 * time.Second, MaxBytes: b.maxBytes()}
}
