package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/rundir/runtest"
	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/state"
)

// runWithSettings creates a run's state file whose run row keeps raw as
// its settings, and returns the run's layout.
func runWithSettings(t *testing.T, raw string) rundir.Layout {
	t.Helper()
	l := rundir.Layout{Dir: t.TempDir()}
	if err := createState(l, state.Run{ID: "r1", Name: "r1", Dir: l.Dir, Pipeline: "tiny", Created: runtest.FixedNow(), Settings: raw},
		[]string{"v1"}); err != nil {
		t.Fatal(err)
	}
	return l
}

// fixture reads a settings blob from testdata: the settings written for a
// run, a production and a production's pipeline by dpsbatch before the
// settings carried a version.
func fixture(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// TestSettingsUnversionedOpen: settings written before they had a version
// (real blobs from that code) are version 1 and read as they were, for
// every reader: readSettings (resume, the relay commands, the broker) and
// Status.
func TestSettingsUnversionedOpen(t *testing.T) {
	for _, tc := range []struct {
		file  string
		check func(s rundir.Settings) bool
	}{
		{"settings-unversioned-run.json", func(s rundir.Settings) bool {
			return s.Visits == "visits.csv" && s.Listen && s.Heartbeat == 30*time.Second &&
				s.Request == rundir.Request{Slices: 3, CPUsPerSlice: 1, MemPerSliceMB: 512, Time: 45 * time.Minute} &&
				s.Broker.Kind == "embedded" && s.Broker.StreamSize == 256<<20
		}},
		{"settings-unversioned-production.json", func(s rundir.Settings) bool {
			return slices.Equal(s.Pipelines, []rundir.StepEntry{{Name: "detect", Slices: 0}, {Name: "association", Slices: 0}, {Name: "moving", Slices: 4}})
		}},
		{"settings-unversioned-production-pipeline.json", func(s rundir.Settings) bool {
			return s.Listen && strings.HasSuffix(s.PartOf, "/runs/night1") && slices.Equal(s.After, []string{"association"}) &&
				s.Request.Slices == 4 && s.SlicesFrom == `the slices of production entry "moving"`
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			raw := fixture(t, tc.file)
			if strings.Contains(raw, `"version"`) {
				t.Fatalf("%s has a version; the fixture is of settings from before versions", tc.file)
			}
			l := runWithSettings(t, raw)
			_, set, err := rundir.ReadSettings(l)
			if err != nil {
				t.Fatalf("readSettings: %v", err)
			}
			if !tc.check(set) {
				t.Errorf("read as %+v", set)
			}
			if set.Version != 1 {
				t.Errorf("version %d; want 1", set.Version)
			}
			for _, e := range set.Pipelines { // a production's status reads its pipelines' too
				pl := l.Pipeline(e.Name)
				if err := os.MkdirAll(pl.Dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := createState(pl, state.Run{ID: "r1", Name: "r1", Dir: pl.Dir, Pipeline: e.Name, Created: runtest.FixedNow()}, nil); err != nil {
					t.Fatal(err)
				}
			}
			rs, err := Status(context.Background(), nil, []string{l.Dir})
			if err != nil {
				t.Fatalf("Status: %v", err)
			}
			if rs[0].Listen != set.Listen {
				t.Errorf("status: listen %v; the settings say %v", rs[0].Listen, set.Listen)
			}
		})
	}
	// Read as they were: a key this dpsbatch does not know is ignored.
	_, set, err := rundir.ReadSettings(runWithSettings(t, `{"visits":"v.csv","listen":true,"gone":1}`))
	if err != nil || set.Visits != "v.csv" || !set.Listen {
		t.Errorf("unversioned settings with an unknown key: %+v, %v; want them read, the key ignored", set, err)
	}
}

// TestSettingsRoundTrip: what Submit writes carries the version and reads
// back; every field survives encodeSettings then decodeSettings.
func TestSettingsRoundTrip(t *testing.T) {
	e := newEnv(t, 2)
	o := e.opts("versioned")
	o.Listen, o.Heartbeat = true, 30*time.Second
	sub, err := Submit(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	withState(t, sub.Dir, func(st *state.Store) {
		run, err := st.Run()
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"version":%d,`, rundir.SettingsVersion); !strings.HasPrefix(run.Settings, want) {
			t.Errorf("Submit wrote settings %s; want them to start %s", run.Settings, want)
		}
	})
	_, set, err := rundir.ReadSettings(rundir.Layout{Dir: sub.Dir})
	if err != nil || !set.Listen || set.Heartbeat != 30*time.Second || set.Visits != "visits.csv" {
		t.Errorf("read back %+v, %v", set, err)
	}

	full := rundir.Settings{Version: rundir.SettingsVersion, Visits: "visits.csv", PipelineDir: "/p", Binary: "/bin/dpsbatch", SiteFile: "/site.yaml",
		Request: rundir.Request{Partition: "debug", Slices: 3, CPUsPerSlice: 2, MemPerSliceMB: 512, Time: time.Hour, Strategy: scheduler.Strategy("spread")},
		Broker: rundir.BrokerSettings{Kind: "external", URLs: []string{"nats://a:4222", "nats://b:4222"}, CredentialsFile: "/c.creds",
			TokenFile: "/t", TokenEnv: "TOKEN", StreamSize: 1 << 20},
		Listen: true, Heartbeat: time.Minute, PartOf: "/runs/night1", After: []string{"detect"},
		Pipelines: []rundir.StepEntry{{Name: "detect", Slices: 0}, {Name: "moving", Slices: 4}}, SlicesFrom: "submit --slices"}
	raw, err := rundir.EncodeSettings(full)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rundir.DecodeSettings("state.db", raw)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, full) {
		t.Errorf("round trip:\n got %+v\nwant %+v\n(encoded %s)", got, full, raw)
	}
}

// TestSettingsNewerRefused: settings of a version newer than this
// dpsbatch reads are refused, naming the file, both versions and what to
// do, by every reader.
func TestSettingsNewerRefused(t *testing.T) {
	newer := rundir.SettingsVersion + 1
	l := runWithSettings(t, fmt.Sprintf(`{"version":%d,"visits":"v.csv","shape":"new"}`, newer))
	want := fmt.Sprintf("%s: run settings are version %d, this dpsbatch reads versions up to %d: use a newer dpsbatch",
		l.State(), newer, rundir.SettingsVersion)
	_, _, err := rundir.ReadSettings(l)
	if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, rundir.ErrNewerSettings) {
		t.Errorf("readSettings: %v; want errNewerSettings saying %q", err, want)
	}
	if _, err := Status(context.Background(), nil, []string{l.Dir}); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Status: %v; want %q", err, want)
	}
	e := newEnv(t, 1)
	if _, err := Resume(context.Background(), e.resumeOpts(l.Dir)); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Resume: %v; want %q", err, want)
	}
	if len(e.fake.submits) != 0 {
		t.Errorf("Resume submitted %d jobs; want none", len(e.fake.submits))
	}
	// No version any dpsbatch writes.
	for _, v := range []int{0, -1} {
		if _, err := rundir.DecodeSettings("state.db", fmt.Sprintf(`{"version":%d}`, v)); err == nil ||
			!strings.Contains(err.Error(), fmt.Sprintf("version %d", v)) {
			t.Errorf("version %d: %v; want it refused, naming it", v, err)
		}
	}
}

// TestSettingsUnknownKeyRefused: in the current version a key the settings
// do not have is an error naming the file and the key, never dropped.
func TestSettingsUnknownKeyRefused(t *testing.T) {
	l := runWithSettings(t, fmt.Sprintf(`{"version":%d,"visits":"v.csv","listn":true}`, rundir.SettingsVersion))
	_, _, err := rundir.ReadSettings(l)
	if err == nil || !strings.Contains(err.Error(), l.State()) || !strings.Contains(err.Error(), `"listn"`) {
		t.Errorf("readSettings: %v; want an error naming %s and the key \"listn\"", err, l.State())
	}
	if _, err := Status(context.Background(), nil, []string{l.Dir}); err == nil || !strings.Contains(err.Error(), `"listn"`) {
		t.Errorf("Status: %v; want the unknown key refused", err)
	}
	for _, raw := range []string{
		fmt.Sprintf(`{"version":%d,"request":{"Slicez":3}}`, rundir.SettingsVersion), // nested
		fmt.Sprintf(`{"version":%d} {}`, rundir.SettingsVersion),                     // data after
	} {
		if _, err := rundir.DecodeSettings("state.db", raw); err == nil {
			t.Errorf("%s: read; want an error", raw)
		}
	}
}
