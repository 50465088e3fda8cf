package state

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// newRun creates a state file with the given visits in a temporary folder.
func newRun(t *testing.T, ids ...string) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run.db")
	s, err := Create(path, Run{ID: "r1", Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.AddVisits(ids); err != nil {
		t.Fatal(err)
	}
	return s, path
}

// at is a fixed instant plus n seconds.
func at(n int) time.Time { return time.Date(2025, 3, 1, 12, 0, n, 0, time.UTC) }

func TestCreateOpenRun(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run.db")
	want := Run{ID: "r-42", Name: "dc3b", Dir: "/runs/dc3b", Pipeline: "/p/pipe.yaml", PolicySum: "sha256:ab",
		Site: "/etc/site.yaml", Partition: "debug", Created: at(5), Settings: `{"nodes":2}`}
	s, err := Create(path, want)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Create(path, want); !errors.Is(err, ErrExists) {
		t.Errorf("Create over an existing file: err = %v, want ErrExists", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, open := range []func(string) (*Store, error){Open, OpenReadOnly} {
		s, err := open(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Run()
		if err != nil {
			t.Fatal(err)
		}
		if !got.Created.Equal(want.Created) {
			t.Errorf("Created = %v, want %v", got.Created, want.Created)
		}
		got.Created = want.Created
		if got != want {
			t.Errorf("Run() = %+v, want %+v", got, want)
		}
		s.Close()
	}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetSettings(`{"nodes":3}`); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSettings(`{nodes`); !errors.Is(err, conf.ErrInvalid) {
		t.Errorf("SetSettings(bad JSON): err = %v, want conf.ErrInvalid", err)
	}
	if r, _ := s.Run(); r.Settings != `{"nodes":3}` {
		t.Errorf("settings = %q after SetSettings", r.Settings)
	}
	s.Close()

	if _, err := Open(filepath.Join(dir, "nope.db")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open(missing): err = %v, want ErrNotFound", err)
	}
	if _, err := OpenReadOnly(filepath.Join(dir, "nope.db")); !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenReadOnly(missing): err = %v, want ErrNotFound", err)
	}
	for _, bad := range []Run{{ID: ""}, {ID: "x", Settings: "{"}} {
		p := filepath.Join(dir, "bad.db")
		if _, err := Create(p, bad); !errors.Is(err, conf.ErrInvalid) {
			t.Errorf("Create(%+v): err = %v, want conf.ErrInvalid", bad, err)
		}
		if _, err := os.Stat(p); err == nil {
			t.Errorf("Create(%+v) failed but left %s", bad, p)
		}
	}
}

func TestNotAStateFile(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "text.db")
	os.WriteFile(text, []byte("this is not a database, just some text that is long enough to have a header\n"), 0o644)
	empty := filepath.Join(dir, "empty.db")
	os.WriteFile(empty, nil, 0o644)
	other := filepath.Join(dir, "other.db")
	db, err := sql.Open("sqlite3", other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE t (x)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, _ := os.ReadFile(other)
	for _, p := range []string{text, empty, other, dir} {
		for name, open := range map[string]func(string) (*Store, error){"Open": Open, "OpenReadOnly": OpenReadOnly} {
			s, err := open(p)
			if !errors.Is(err, ErrNotStateFile) {
				t.Errorf("%s(%s): err = %v, want ErrNotStateFile", name, filepath.Base(p), err)
			}
			if s != nil {
				s.Close()
			}
		}
	}
	if after, _ := os.ReadFile(other); string(after) != string(before) {
		t.Error("opening another SQLite database changed it")
	}
}

func TestVisits(t *testing.T) {
	s, _ := newRun(t, "v1", "v2", "v3")
	if err := s.AddVisits([]string{"v4", "v5"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ids  []string
		want string
	}{
		{[]string{"v6", "v7", "v6"}, `visit 3: duplicate visit ID "v6" (also visit 1)`},
		{[]string{"v6", "v2"}, `visit 2: visit ID "v2" is already in the run (seq 2)`},
		{[]string{"v6", ""}, `visit 2: empty visit ID`},
		{[]string{"\xff"}, `visit 1: visit ID "\xff" is not UTF-8`},
	} {
		err := s.AddVisits(c.ids)
		if !errors.Is(err, conf.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("AddVisits(%q): err = %v, want conf.ErrInvalid saying %s", c.ids, err, c.want)
		}
	}
	if c, _ := s.Counts(); c[Pending] != 5 {
		t.Fatalf("after failed AddVisits: counts %v, want 5 pending: nothing added", c)
	}
	// A large first list takes the path that builds the ID index after.
	big := make([]string, bulkVisits+1)
	for i := range big {
		big[i] = fmt.Sprintf("b%d", i)
	}
	big[bulkVisits] = "b17"
	b, _ := newRun(t)
	err := b.AddVisits(big)
	if !errors.Is(err, conf.ErrInvalid) || !strings.Contains(err.Error(), fmt.Sprintf(`visit %d: duplicate visit ID "b17" (also visit 18)`, bulkVisits+1)) {
		t.Errorf("AddVisits(large list with a duplicate): err = %v", err)
	}
	big[bulkVisits] = "last"
	must(t, b.AddVisits(big))
	if err := b.AddVisits([]string{"x", "b5"}); err == nil || !strings.Contains(err.Error(), `visit ID "b5" is already in the run (seq 6)`) {
		t.Errorf("AddVisits after a large list: err = %v, want b5 already in the run", err)
	}
	if ids, _ := b.Runnable(); len(ids) != bulkVisits+1 || ids[0] != "b0" || ids[bulkVisits] != "last" {
		t.Errorf("after a large list: %d runnable, want %d in order", len(ids), bulkVisits+1)
	}
	checkCounts(t, b)

	// v1 done with two stages, v2 failed with a slice failure, v3 running.
	must(t, s.VisitStarted("v1", "100", at(1)))
	must(t, s.StageDone("v1", "isr", 2*time.Second))
	must(t, s.StageDone("v1", "calexp", 4*time.Second))
	var n int
	s.db.QueryRow("SELECT count(*) FROM stage_times").Scan(&n)
	if n != 0 {
		t.Errorf("StageDone wrote %d rows before VisitEnded", n)
	}
	must(t, s.VisitEnded("v1", Done, "", at(7)))
	must(t, s.VisitStarted("v2", "100", at(8)))
	must(t, s.StageDone("v2", "isr", 4*time.Second))
	must(t, s.SliceFailed("v2", "calexp", 3, "ccd=12", "no PSF stars", "captures/visit-v2/calexp.slice3-ccd=12.failed.json"))
	s.VisitCapture("v2", "captures/visit-v2/calexp.pipeline.failed.json")
	must(t, s.VisitEnded("v2", Failed, "1 slice failed", at(12)))
	must(t, s.VisitStarted("v3", "100", at(13)))

	counts, err := s.Counts()
	must(t, err)
	if want := map[VisitState]int{Pending: 2, Running: 1, Done: 1, Failed: 1, Interrupted: 0}; !reflect.DeepEqual(counts, want) {
		t.Errorf("Counts() = %v, want %v", counts, want)
	}
	done, first, last, err := s.Progress()
	must(t, err)
	if done != 1 || !first.Equal(at(1)) || !last.Equal(at(7)) {
		t.Errorf("Progress() = %d, %v, %v; want 1, %v, %v", done, first, last, at(1), at(7))
	}
	stages, err := s.Stages()
	must(t, err)
	if want := []StageTime{{"isr", 2, 6 * time.Second, 3 * time.Second}, {"calexp", 1, 4 * time.Second, 4 * time.Second}}; !reflect.DeepEqual(stages, want) {
		t.Errorf("Stages() = %v, want %v", stages, want)
	}
	means, err := s.StageTimes()
	must(t, err)
	if want := map[string]time.Duration{"isr": 3 * time.Second, "calexp": 4 * time.Second}; !reflect.DeepEqual(means, want) {
		t.Errorf("StageTimes() = %v, want %v", means, want)
	}
	fails, err := s.Failures(0)
	must(t, err)
	if want := []Failure{{Visit: "v2", Attempt: 1, Stage: "calexp", Slice: 3, DataID: "ccd=12", Err: "no PSF stars",
		Capture: "captures/visit-v2/calexp.slice3-ccd=12.failed.json"}}; !reflect.DeepEqual(fails, want) {
		t.Errorf("Failures() = %+v, want %+v", fails, want)
	}
	failed, err := s.Visits(Failed, 0)
	must(t, err)
	if len(failed) != 1 || failed[0].Capture != "captures/visit-v2/calexp.pipeline.failed.json" {
		t.Errorf("failed visits %+v, want v2 with its capture", failed)
	}
	vs, err := s.Visits("", 0)
	must(t, err)
	want := []Visit{
		{ID: "v1", Seq: 1, State: Done, Attempts: 1, Job: "100", Started: at(1), Ended: at(7)},
		{ID: "v2", Seq: 2, State: Failed, Attempts: 1, Job: "100", Started: at(8), Ended: at(12), Err: "1 slice failed", Capture: "captures/visit-v2/calexp.pipeline.failed.json"},
		{ID: "v3", Seq: 3, State: Running, Attempts: 1, Job: "100", Started: at(13)},
		{ID: "v4", Seq: 4, State: Pending},
		{ID: "v5", Seq: 5, State: Pending},
	}
	if !sameVisits(vs, want) {
		t.Errorf("Visits() =\n%+v\nwant\n%+v", vs, want)
	}
	vs, err = s.Visits(Pending, 1)
	must(t, err)
	if len(vs) != 1 || vs[0].ID != "v4" {
		t.Errorf("Visits(pending, 1) = %+v, want v4", vs)
	}
	if _, err := s.Visits("bogus", 0); !errors.Is(err, conf.ErrInvalid) {
		t.Errorf("Visits(bogus): err = %v", err)
	}

	// Errors: unknown visits, done is final, bad end state.
	if err := s.VisitStarted("v9", "100", at(1)); !errors.Is(err, ErrNoSuchVisit) {
		t.Errorf("VisitStarted(unknown): err = %v, want ErrNoSuchVisit", err)
	}
	if err := s.VisitEnded("v9", Done, "", at(1)); !errors.Is(err, ErrNoSuchVisit) {
		t.Errorf("VisitEnded(unknown): err = %v, want ErrNoSuchVisit", err)
	}
	if err := s.VisitStarted("v1", "101", at(20)); !errors.Is(err, ErrAlreadyDone) {
		t.Errorf("VisitStarted(done): err = %v, want ErrAlreadyDone", err)
	}
	if err := s.VisitEnded("v1", Failed, "late", at(20)); !errors.Is(err, ErrAlreadyDone) {
		t.Errorf("VisitEnded(done): err = %v, want ErrAlreadyDone", err)
	}
	if err := s.VisitEnded("v3", Running, "", at(20)); err == nil {
		t.Error("VisitEnded(running): no error")
	}
	if c, _ := s.Counts(); c[Done] != 1 || c[Running] != 1 {
		t.Errorf("refused calls changed counts: %v", c)
	}
}

func sameVisits(a, b []Visit) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if !x.Started.Equal(y.Started) || !x.Ended.Equal(y.Ended) {
			return false
		}
		x.Started, x.Ended, y.Started, y.Ended = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if x != y {
			return false
		}
	}
	return true
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestInterruptAndRetry(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e", "f", "g"}
	s, _ := newRun(t, ids...)
	// a done; b failed once; c failed three times; d interrupted three
	// times; e running (its job dies); f, g pending.
	must(t, s.VisitStarted("a", "1", at(1)))
	must(t, s.VisitEnded("a", Done, "", at(2)))
	must(t, s.VisitStarted("b", "1", at(1)))
	must(t, s.VisitEnded("b", Failed, "boom", at(2)))
	for i := 0; i < 3; i++ {
		must(t, s.VisitStarted("c", "1", at(1)))
		must(t, s.VisitEnded("c", Failed, "boom", at(2)))
		must(t, s.VisitStarted("d", "1", at(1)))
		must(t, s.VisitEnded("d", Interrupted, "time limit", at(2)))
	}
	must(t, s.VisitStarted("e", "1", at(1)))

	n, err := s.InterruptRunning("job 1 died")
	must(t, err)
	if n != 1 {
		t.Errorf("InterruptRunning = %d, want 1", n)
	}
	r, err := s.Runnable()
	must(t, err)
	if want := []string{"d", "e", "f", "g"}; !reflect.DeepEqual(r, want) {
		t.Errorf("Runnable() = %q, want %q (pending and interrupted in seq order)", r, want)
	}

	retried, exhausted, err := s.Retry(3)
	must(t, err)
	if retried != 2 || !reflect.DeepEqual(exhausted, []string{"c", "d"}) {
		t.Errorf("Retry(3) = %d, %q; want 2 (b, e), [c d]", retried, exhausted)
	}
	r, err = s.Runnable()
	must(t, err)
	if want := []string{"b", "e", "f", "g"}; !reflect.DeepEqual(r, want) {
		t.Errorf("Runnable() after Retry(3) = %q, want %q", r, want)
	}
	vs, _ := s.Visits(Failed, 0)
	if len(vs) != 2 || vs[1].ID != "d" || vs[1].Err != "interrupted at attempt 3 of 3: time limit" {
		t.Errorf("failed after Retry(3) = %+v, want c and d (exhausted interrupted: failed)", vs)
	}
	if _, _, err := s.Retry(-1); !errors.Is(err, conf.ErrInvalid) {
		t.Errorf("Retry(-1): err = %v", err)
	}
	retried, exhausted, err = s.Retry(0)
	must(t, err)
	if retried != 2 || len(exhausted) != 0 {
		t.Errorf("Retry(0) = %d, %q; want 2, none", retried, exhausted)
	}
	c, _ := s.Counts()
	if want := map[VisitState]int{Pending: 6, Done: 1, Running: 0, Failed: 0, Interrupted: 0}; !reflect.DeepEqual(c, want) {
		t.Errorf("Counts() = %v, want %v", c, want)
	}
	// The counts the triggers keep agree with the visits.
	checkCounts(t, s)
}

// checkCounts compares Counts with a count of the visits table.
func checkCounts(t *testing.T, s *Store) {
	t.Helper()
	got, err := s.Counts()
	must(t, err)
	rows, err := s.db.Query("SELECT state, count(*) FROM visits GROUP BY state")
	must(t, err)
	defer rows.Close()
	want := map[VisitState]int{Pending: 0, Running: 0, Done: 0, Failed: 0, Interrupted: 0}
	for rows.Next() {
		var code, n int
		must(t, rows.Scan(&code, &n))
		want[visitStates[code]] = n
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Counts() = %v, but the visits table has %v", got, want)
	}
}

func TestJobs(t *testing.T) {
	s, _ := newRun(t)
	must(t, s.AddJob(Job{ID: "200", Attempt: 2, Submitted: at(50), State: "PENDING"}))
	must(t, s.AddJob(Job{ID: "100", Attempt: 1, Submitted: at(0), State: "PENDING"}))
	if err := s.AddJob(Job{ID: "100", Attempt: 3}); !errors.Is(err, ErrExists) {
		t.Errorf("AddJob(again): err = %v, want ErrExists", err)
	}
	must(t, s.JobStarted("100", "n1", at(3)))
	must(t, s.JobEnded("100", EndStopped, 0, "time limit", at(40)))
	// Rank 0 records one of its ends, never Slurm's words.
	if err := s.JobEnded("200", "TIMEOUT", 0, "", at(41)); err == nil || !strings.Contains(err.Error(), `unknown job end "TIMEOUT"`) {
		t.Errorf("JobEnded(TIMEOUT): err = %v, want unknown job end", err)
	}
	if err := s.JobStarted("999", "n1", at(3)); !errors.Is(err, ErrNotFound) {
		t.Errorf("JobStarted(unknown): err = %v, want ErrNotFound", err)
	}
	if err := s.JobEnded("999", "FAILED", 1, "", at(3)); !errors.Is(err, ErrNotFound) {
		t.Errorf("JobEnded(unknown): err = %v, want ErrNotFound", err)
	}
	js, err := s.Jobs()
	must(t, err)
	if len(js) != 2 || js[0].ID != "100" || js[1].ID != "200" {
		t.Fatalf("Jobs() = %+v, want 100 then 200", js)
	}
	j := js[0]
	if j.Host != "n1" || !j.Started.Equal(at(3)) || !j.Ended.Equal(at(40)) || j.State != "STOPPED" || j.Reason != "time limit" || !j.Submitted.Equal(at(0)) {
		t.Errorf("job 100 = %+v", j)
	}
	if !js[1].Started.IsZero() || !js[1].Ended.IsZero() {
		t.Errorf("job 200 has times it was never given: %+v", js[1])
	}
}

func TestReadOnly(t *testing.T) {
	s, path := newRun(t, "a", "b")
	must(t, s.VisitStarted("a", "1", at(1)))
	r, err := OpenReadOnly(path)
	must(t, err)
	defer r.Close()
	for name, err := range map[string]error{
		"AddVisits":        r.AddVisits([]string{"c"}),
		"VisitStarted":     r.VisitStarted("b", "1", at(1)),
		"VisitEnded":       r.VisitEnded("a", Done, "", at(2)),
		"AddJob":           r.AddJob(Job{ID: "1"}),
		"JobEnded":         r.JobEnded("1", EndCompleted, 0, "", at(1)),
		"SetSettings":      r.SetSettings("{}"),
		"InterruptRunning": func() error { _, err := r.InterruptRunning("x"); return err }(),
		"Retry":            func() error { _, _, err := r.Retry(0); return err }(),
		"SetJobBroker":     r.SetJobBroker("1", "nats://n1:4222"),
		"Heartbeat":        r.Heartbeat("1", at(1), "a"),
		"AddVisit":         func() error { _, err := r.AddVisit("c"); return err }(),
		"CloseInput":       r.CloseInput(at(1), "x"),
		"ReopenInput":      r.ReopenInput(),
		"RecordEvent":      r.RecordEvent(EventRecord{Dir: DirIn, Topic: "t"}),
	} {
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s on a reader: err = %v, want ErrReadOnly", name, err)
		}
	}
	if _, err := r.db.Exec("DELETE FROM visits"); err == nil {
		t.Error("a reader's connection can write")
	}
	c, err := r.Counts()
	must(t, err)
	if c[Running] != 1 || c[Pending] != 1 {
		t.Errorf("reader Counts() = %v", c)
	}
	ids, err := r.Runnable()
	must(t, err)
	if !reflect.DeepEqual(ids, []string{"b"}) {
		t.Errorf("reader Runnable() = %q", ids)
	}
}

func TestMigrateFromVersion1(t *testing.T) {
	// A file as the dpsbatch of schema version 1 left it.
	path := oldStateFile(t, 1, `INSERT INTO runs (id, created) VALUES ('old', 1);
		INSERT INTO visits (id, state, attempts, job) VALUES ('a', 2, 1, '7'), ('b', 0, 0, NULL);
		UPDATE visit_states SET visits = 1 WHERE code IN (0, 2);`)

	s, err := Open(path)
	must(t, err)
	var v int
	s.db.QueryRow("PRAGMA user_version").Scan(&v)
	if v != schemaVersion {
		t.Errorf("after Open: user_version = %d, want %d", v, schemaVersion)
	}
	if _, err := s.db.Exec(`INSERT INTO events (at, dir, topic) VALUES (1, 'in', 'trigger')`); err != nil {
		t.Errorf("no events table after migrating: %v", err)
	}
	r, err := s.Run()
	must(t, err)
	if r.ID != "old" {
		t.Errorf("Run().ID = %q", r.ID)
	}
	ids, err := s.Runnable()
	must(t, err)
	if !reflect.DeepEqual(ids, []string{"b"}) {
		t.Errorf("Runnable() = %q, want [b]", ids)
	}
	must(t, s.Close())
	s, err = OpenReadOnly(path)
	must(t, err)
	c, _ := s.Counts()
	if c[Done] != 1 || c[Pending] != 1 {
		t.Errorf("Counts() after migration = %v", c)
	}
	s.Close()
}

func TestNewerSchema(t *testing.T) {
	s, path := newRun(t, "a")
	_, err := s.db.Exec(fmt.Sprintf("PRAGMA user_version = %d", schemaVersion+7))
	must(t, err)
	s.Close()
	want := fmt.Sprintf("schema version %d, this dpsbatch knows versions up to %d", schemaVersion+7, schemaVersion)
	for name, open := range map[string]func(string) (*Store, error){"Open": Open, "OpenReadOnly": OpenReadOnly} {
		_, err := open(path)
		if !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want ErrNewerSchema saying %q", name, err, want)
		}
	}
}
