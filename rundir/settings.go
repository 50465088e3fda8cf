package rundir

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/harness"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/site"
	"github.com/dpsbatch/dpsbatch/state"
)

// SettingsVersion is the version of the run settings this dpsbatch writes,
// and the newest it reads. Settings written before they carried a version
// (no "version" key) are version 1, read as they were.
//
// A change to the shape bumps it (a field added, renamed, removed or given
// a new meaning): an older dpsbatch then refuses the run, naming the
// version, instead of misreading it; and decodeSettings learns to read the
// versions before, migrating them to the current shape.
const SettingsVersion = 1

// ErrNewerSettings: the run's settings were written by a newer dpsbatch.
var ErrNewerSettings = errors.New("run settings have a newer version")

// Settings is what a run keeps in its state file (Run.Settings) so that
// resume can plan and render the same way. It is written only by
// encodeSettings and read only by decodeSettings.
type Settings struct {
	// Version is the shape of the settings: settingsVersion when written
	// by encodeSettings, and after decodeSettings.
	Version int    `json:"version"`
	Visits  string `json:"visits"` // the copy's file name in the run directory
	// PipelineDir is what {pipelinedir} names in the run's jobs: the copy
	// of the files the policy names there (Layout.PipelineFiles), taken
	// from PipelineFrom at PipelineCopied; for a run submitted before
	// runs kept a copy, the policy's folder itself (PipelineFrom "").
	PipelineDir    string    `json:"pipelineDir"`
	PipelineFrom   string    `json:"pipelineFrom,omitempty"`
	PipelineCopied time.Time `json:"pipelineCopied,omitzero"`
	Binary         string    `json:"binary"`
	SiteFile       string    `json:"siteFile,omitempty"`
	Request        Request   `json:"request"`
	// Broker: the site's broker when the run was submitted.
	Broker BrokerSettings `json:"broker,omitzero"`
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
	Pipelines []StepEntry `json:"pipelines,omitempty"`
	// SlicesFrom, for a step in a folder of its own, names who asked for
	// Request.Slices: its production entry, or its policy.
	SlicesFrom string `json:"slicesFrom,omitempty"`
	// AutoGrow, for a run with growth on (submit or resume --grow
	// --auto-resume N), is how many more jobs the run's jobs may submit
	// themselves, each at its end (`dpsbatch resume --auto`), with more
	// time or memory when it ran short; 0: growth off.
	AutoGrow int `json:"autoGrow,omitempty"`
	// Grown says why the request last grew ("" when it never did).
	Grown string `json:"grown,omitempty"`
}

// TimeLimitNear begins the reason a job records when it stopped because
// its time limit was near (Slurm's warning through the stop file, or too
// little time left for another visit): resume tells from it that the job
// ran out of time. The job script's warning trap writes it too.
const TimeLimitNear = "time limit near"

// RunDir is the directory of the RunDir whose step, in step, has these
// settings: the step's own for a step in the RunDir directory.
func (set Settings) RunDir(step Layout) Layout {
	if set.PartOf != "" {
		return Layout{Dir: set.PartOf}
	}
	return step
}

// EncodeSettings is the run settings as the state file keeps them
// (Run.Settings), at settingsVersion.
func EncodeSettings(set Settings) (string, error) {
	set.Version = SettingsVersion
	data, err := json.Marshal(set)
	if err != nil {
		return "", fmt.Errorf("rundir: run settings: %w", err)
	}
	return string(data), nil
}

// DecodeSettings reads the run settings raw, as encodeSettings wrote them
// in the state file at path (named in errors). Settings without a version
// are version 1 from before versions were written: they are read as they
// were, unknown keys ignored. The current version is read strictly: an
// unknown key is an error, so a mistyped setting is never dropped. A newer
// version is refused (errNewerSettings), naming it. Empty settings are the
// zero settings.
func DecodeSettings(path, raw string) (Settings, error) {
	set := Settings{Version: SettingsVersion}
	if raw == "" {
		return set, nil
	}
	var v struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		return Settings{}, fmt.Errorf("rundir: %s: run settings: %w", path, err)
	}
	var err error
	switch {
	case v.Version == nil:
		err = json.Unmarshal([]byte(raw), &set)
	case *v.Version == SettingsVersion:
		err = decodeStrict(raw, &set)
	case *v.Version > SettingsVersion:
		return Settings{}, fmt.Errorf("rundir: %s: run settings are version %d, this dpsbatch reads versions up to %d: "+
			"use a newer dpsbatch (the one that wrote the run) for this run: %w", path, *v.Version, SettingsVersion, ErrNewerSettings)
	default:
		return Settings{}, fmt.Errorf("rundir: %s: run settings version %d: no dpsbatch writes it (versions are 1 to %d)",
			path, *v.Version, SettingsVersion)
	}
	if err != nil {
		return Settings{}, fmt.Errorf("rundir: %s: run settings (version %d): %w", path, SettingsVersion, err)
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

// ReadSettings reads the run and its settings from the state file.
func ReadSettings(l Layout) (state.Run, Settings, error) {
	st, err := state.OpenReadOnly(l.State())
	if err != nil {
		return state.Run{}, Settings{}, err
	}
	defer st.Close()
	run, err := st.Run()
	if err != nil {
		return run, Settings{}, err
	}
	set, err := DecodeSettings(l.State(), run.Settings)
	return run, set, err
}

// StepEntry is one pipeline of a production as the run keeps it, with
// what resume needs to plan it again.
type StepEntry struct {
	Name   string `json:"name"`
	Slices int    `json:"slices,omitempty"` // as the production file gave it (0: the policy's)
}

// BrokerSettings is the site's broker section as a run keeps it in its
// settings, so that its jobs and the relay commands reach the same broker
// whatever the site file says later. It holds no secret: a token file's
// path and a variable's name, never their contents.
type BrokerSettings struct {
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

func BrokerOf(s *site.Site) BrokerSettings {
	b := s.Broker
	return BrokerSettings{Kind: b.Kind, URLs: b.URLs, CredentialsFile: b.CredentialsFile, TokenFile: b.TokenFile, TokenEnv: b.TokenEnv,
		StreamSize: int64(b.StreamSizeMB) << 20}
}

// MaxBytes is the limit of the run's events: the stream's and the
// embedded broker's store.
func (b BrokerSettings) MaxBytes() int64 {
	if b.StreamSize > 0 {
		return b.StreamSize
	}
	return events.DefaultMaxBytes
}

func (b BrokerSettings) External() bool { return b.Kind == "external" }

// NATSConfig is how to dial the site's external broker.
func (b BrokerSettings) NATSConfig(name, subscriber string, log *slog.Logger) events.NATSConfig {
	return events.NATSConfig{URLs: b.URLs, CredentialsFile: b.CredentialsFile, TokenFile: b.TokenFile, TokenEnv: b.TokenEnv,
		Name: name, Subscriber: subscriber, Logger: log, ConnectTimeout: 5 * time.Second, MaxBytes: b.MaxBytes()}
}

// Request is what an operator asks of a run's allocation; zero values
// take the defaults noted.
type Request struct {
	Partition     string             // "" the site's default
	Slices        int                // 0: the policy's count (or one per data ID)
	CPUsPerSlice  int                // 0: 1
	MemPerSliceMB int                // 0: do not ask for memory
	GPUsPerSlice  int                // 0: the policy's gpus_per_slice (0: no GPUs)
	Time          time.Duration      // 0: the partition's limit
	Strategy      scheduler.Strategy // "": pack
}

// DefaultHeartbeat is how often a batch job's Pipeline says it is alive
// (submit --heartbeat).
const DefaultHeartbeat = 30 * time.Second

// RunCopy loads a run's policy copy as the run sees it: in its pipeline
// directory, refused if changed since the run was submitted, validated.
func RunCopy(run state.Run, set Settings) harness.LoadOptions {
	return harness.LoadOptions{PipelineDir: set.PipelineDir, Check: func(p *harness.Policy) error { return SamePolicy(run, p) }}
}

// SamePolicy refuses a policy copy that changed since the run was
// submitted: its visits done so far ran under the old one.
func SamePolicy(run state.Run, p *harness.Policy) error {
	if run.PolicySum != "" && run.PolicySum != p.Checksum {
		return fmt.Errorf("%w: %s changed since the run was submitted (checksum %.12s, now %.12s)", harness.ErrInvalid, p.File, run.PolicySum, p.Checksum)
	}
	return nil
}

// AskedSlices is the number of slices the run was asked to have, and who
// asked; 0 for the policy's count.
func (set Settings) AskedSlices() (int, string) {
	switch {
	case set.SlicesFrom != "":
		return set.Request.Slices, set.SlicesFrom
	case set.Request.Slices > 0:
		return set.Request.Slices, "submit --slices"
	}
	return 0, ""
}
