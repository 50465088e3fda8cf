package state

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMigrateFromVersion2(t *testing.T) {
	inModes(t, func(t *testing.T) {
		// A file as the dpsbatch of schema version 2 left it: a run, a job,
		// three visits (one done), an event.
		path := oldStateFile(t, 2, `INSERT INTO runs (id, name, created, settings) VALUES ('old', 'two', 1, '{"nodes":2}');
			INSERT INTO jobs (id, attempt, submitted, started, state, host) VALUES ('7', 1, 10, 20, 'RUNNING', 'n1');
			INSERT INTO visits (id, state, attempts, job, started, ended) VALUES ('a', 2, 1, '7', 30, 40), ('b', 0, 0, NULL, NULL, NULL), ('c', 0, 0, NULL, NULL, NULL);
			UPDATE visit_states SET visits = 2 WHERE code = 0;
			UPDATE visit_states SET visits = 1, first = 30, last = 40 WHERE code = 2;
			INSERT INTO events (at, dir, topic, props) VALUES (50, 'in', 'visits', '{"visit":"a","n":3}');`)
		var v int
		// A reader does not bring forward a file whose job recorded no
		// end: it may still run under the dpsbatch that made the file.
		if _, err := OpenReadOnly(path); !errors.Is(err, ErrOldSchema) || !strings.Contains(err.Error(), fmt.Sprintf("schema version 2, this dpsbatch reads %d", schemaVersion)) ||
			!strings.Contains(err.Error(), "1 of its jobs recorded no end") {
			t.Errorf("OpenReadOnly(v2) with a job not ended: err = %v, want ErrOldSchema naming both versions and the job", err)
		}
		s, err := Open(path)
		must(t, err)
		must(t, s.db.QueryRow("PRAGMA user_version").Scan(&v))
		if v != schemaVersion || schemaVersion < 3 {
			t.Errorf("after Open: user_version = %d, schemaVersion %d; want schemaVersion, at least 3", v, schemaVersion)
		}
		var check string
		if err := s.db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
			t.Errorf("integrity_check after migrating: %q, %v", check, err)
		}
		run, err := s.Run()
		must(t, err)
		if run.ID != "old" || run.Name != "two" || run.Settings != `{"nodes":2}` || !run.InputClosed.IsZero() || run.InputClosedWhy != "" {
			t.Errorf("Run() after migrating = %+v", run)
		}
		js, err := s.Jobs()
		must(t, err)
		if len(js) != 1 || js[0].ID != "7" || js[0].Host != "n1" || js[0].State != "RUNNING" || !js[0].Started.Equal(time.Unix(0, 20)) ||
			js[0].Broker != "" || !js[0].Heartbeat.IsZero() || js[0].HeartbeatVisit != "" {
			t.Errorf("Jobs() after migrating = %+v", js)
		}
		vs, err := s.Visits("", 0)
		must(t, err)
		if want := []Visit{
			{ID: "a", Seq: 1, State: Done, Attempts: 1, Job: "7", Started: time.Unix(0, 30), Ended: time.Unix(0, 40)},
			{ID: "b", Seq: 2, State: Pending},
			{ID: "c", Seq: 3, State: Pending},
		}; !sameVisits(vs, want) {
			t.Errorf("Visits() after migrating = %+v, want %+v", vs, want)
		}
		checkCounts(t, s)
		es, err := s.Events(EventQuery{})
		must(t, err)
		if want := []EventRecord{{ID: 1, At: time.Unix(0, 50), Dir: DirIn, Topic: "visits", Props: map[string]any{"visit": "a", "n": 3}}}; !sameEvents(es, want) {
			t.Errorf("Events() after migrating = %+v, want %+v", es, want)
		}

		// The new methods work on the migrated file.
		must(t, s.SetJobBroker("7", "nats://n1:4222"))
		must(t, s.Heartbeat("7", at(1), "b"))
		if added, err := s.AddVisit("d"); err != nil || !added {
			t.Errorf("AddVisit(d) = %v, %v", added, err)
		}
		if added, err := s.AddVisit("a"); err != nil || added {
			t.Errorf("AddVisit(a) = %v, %v; want false: a is done", added, err)
		}
		must(t, s.CloseInput(at(2), "no-more-data"))
		must(t, s.RecordEvent(EventRecord{Dir: DirIn, Topic: "visits", Kind: "no-more-data", Job: "7", At: at(2)}))
		must(t, s.Close())

		r, err := OpenReadOnly(path)
		must(t, err)
		defer r.Close()
		if js, _ := r.Jobs(); len(js) != 1 || js[0].Broker != "nats://n1:4222" || js[0].HeartbeatVisit != "b" {
			t.Errorf("reader Jobs() = %+v", js)
		}
		if st, err := r.VisitState("d"); err != nil || st != Pending {
			t.Errorf("reader VisitState(d) = %q, %v", st, err)
		}
		if ids, _ := r.Runnable(); !reflect.DeepEqual(ids, []string{"b", "c", "d"}) {
			t.Errorf("reader Runnable() = %q, want [b c d]", ids)
		}
		if run, _ := r.Run(); !run.InputClosed.Equal(at(2)) {
			t.Errorf("reader Run().InputClosed = %v", run.InputClosed)
		}
		if es, _ := r.Events(EventQuery{After: 1}); len(es) != 1 || es[0].Kind != "no-more-data" || es[0].Job != "7" {
			t.Errorf("reader Events(After 1) = %+v", es)
		}
		checkCounts(t, r)
	})
}

// A file at an older schema that cannot be brought forward is refused by
// a reader with ErrOldSchema, naming both versions and why migrating it
// failed, and is left as it was.
func TestReaderOfAnOldFileThatCannotMigrate(t *testing.T) {
	// Something in the way of migration 9.
	path := oldStateFile(t, 8, `CREATE TABLE data_ids (x INTEGER)`)
	_, err := OpenReadOnly(path)
	if !errors.Is(err, ErrOldSchema) || !strings.Contains(err.Error(), fmt.Sprintf("schema version 8, this dpsbatch reads %d", schemaVersion)) ||
		!strings.Contains(err.Error(), "migrating it failed") || !strings.Contains(err.Error(), "data_ids") {
		t.Errorf("OpenReadOnly of a file that cannot migrate: %v; want ErrOldSchema naming both versions and why", err)
	}
	db, err := sql.Open("sqlite3", path)
	must(t, err)
	defer db.Close()
	var v int
	must(t, db.QueryRow("PRAGMA user_version").Scan(&v))
	if v != 8 {
		t.Errorf("the file is at version %d after the failed migration, want 8 as it was", v)
	}
}

// A reader (status of a run from before an upgrade) brings forward a file
// whose jobs have all recorded their end, and reads it.
func TestReaderMigratesAnEndedRun(t *testing.T) {
	path := oldStateFile(t, 8, `INSERT INTO runs (id, name, created) VALUES ('old', 'eight', 1);
		INSERT INTO jobs (id, attempt, submitted, started, ended, state) VALUES ('7', 1, 10, 20, 30, 'COMPLETED');
		INSERT INTO visits (id, state, attempts, job, started, ended) VALUES ('a', 2, 1, '7', 21, 29);
		UPDATE visit_states SET visits = 1, first = 21, last = 29 WHERE code = 2;`)
	r, err := OpenReadOnly(path)
	must(t, err)
	defer r.Close()
	var v int
	must(t, r.db.QueryRow("PRAGMA user_version").Scan(&v))
	if v != schemaVersion {
		t.Errorf("after OpenReadOnly: user_version = %d, want %d", v, schemaVersion)
	}
	if c, err := r.Counts(); err != nil || c[Done] != 1 {
		t.Errorf("Counts after the migration: %v, %v; want one done", c, err)
	}
}

// oldStateFile makes a state file at schema version as the dpsbatch of
// that version left it, holding what rows (SQL) put in it, and returns its
// path.
func oldStateFile(t *testing.T, version int, rows string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), fmt.Sprintf("v%d.db", version))
	db, err := sql.Open("sqlite3", path)
	must(t, err)
	defer db.Close()
	tx, err := db.Begin()
	must(t, err)
	must(t, migrate(t.Context(), tx, 0, version))
	_, err = tx.Exec(rows)
	must(t, err)
	must(t, tx.Commit())
	var v int
	must(t, db.QueryRow("PRAGMA user_version").Scan(&v))
	if v != version {
		t.Fatalf("the fixture of schema version %d is at version %d", version, v)
	}
	return path
}
