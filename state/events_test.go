package state

import (
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// inModes runs f once per journal mode.
func inModes(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	for _, mode := range []string{"wal", "delete"} {
		t.Run(mode, func(t *testing.T) {
			t.Setenv(JournalEnv, mode)
			f(t)
		})
	}
}

// fileBytes returns the state file and whatever journal is next to it.
func fileBytes(t *testing.T, path string) []byte {
	t.Helper()
	var all []byte
	for _, p := range []string{path, path + "-wal", path + "-journal"} {
		data, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		all = append(all, data...)
	}
	return all
}

func TestJobBroker(t *testing.T) {
	s, path := newRun(t)
	must(t, s.AddJob(Job{ID: "100", Attempt: 1, Submitted: at(0)}))
	must(t, s.AddJob(Job{ID: "200", Attempt: 2, Submitted: at(1), Broker: "tls://n2:4333"}))
	must(t, s.SetJobBroker("100", "nats://n1.cluster:4222"))
	js, err := s.Jobs()
	must(t, err)
	if js[0].Broker != "nats://n1.cluster:4222" || js[1].Broker != "tls://n2:4333" {
		t.Errorf("brokers = %q, %q; want nats://n1.cluster:4222, tls://n2:4333", js[0].Broker, js[1].Broker)
	}
	if err := s.SetJobBroker("999", "nats://n1:4222"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetJobBroker(unknown job): err = %v, want ErrNotFound", err)
	}
	for _, c := range []struct {
		url, want string
	}{
		{"nats://s3cret@n1:4222", "broker URL nats://***@n1:4222 holds user information"},
		{"nats://alice:s3cret@n1:4222", "broker URL nats://***@n1:4222 holds user information"},
		{"nats://alice:p@ss@s3cret@n1:4222", "nats://***@n1:4222 holds user information"},
		{"s3cret@n1:4222", "broker URL ***@n1:4222 holds user information"},
		{"nats://n1:4222?token=s3cret", "broker URL nats://n1:4222 has a query or fragment"},
		{"nats://n1:4222#s3cret", "has a query or fragment"},
		{"nats://n1", `broker URL "nats://n1" has no port`},
		{"nats://n1:0", "has no port"},
		{"nats://n1:99999", "has no port"},
		{"nats://:4222", "has no host"},
		{"nats:n1:4222", "has no host"},
		{"http://n1:4222", `scheme "http"`},
		{"n1:4222", `scheme "n1"`},
		{"nats://n1:4222/sub", "has a path"},
		{"nats://n1:4222\x7f", "want nats://host:port"},
		{"nats://n1:4222\x7f?token=s3cret", `broker URL "nats://n1:4222\x7f?***": want nats://host:port`},
	} {
		err := s.SetJobBroker("100", c.url)
		if !errors.Is(err, conf.ErrInvalid) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "job 100") {
			t.Errorf("SetJobBroker(%q): err = %v, want conf.ErrInvalid naming job 100 and saying %s", c.url, err, c.want)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("SetJobBroker(%q): the error repeats the secret: %v", c.url, err)
		}
	}
	if err := s.AddJob(Job{ID: "300", Attempt: 3, Broker: "nats://s3cret@n3:4222"}); !errors.Is(err, conf.ErrInvalid) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("AddJob(broker with a token): err = %v, want conf.ErrInvalid without the token", err)
	}
	js, err = s.Jobs()
	must(t, err)
	if len(js) != 2 || js[0].Broker != "nats://n1.cluster:4222" {
		t.Errorf("refused brokers changed the jobs: %+v", js)
	}
	if data := fileBytes(t, path); strings.Contains(string(data), "s3cret") {
		t.Error("a refused secret reached the state file")
	}
	must(t, s.SetJobBroker("100", "nats://[::1]:4222/"))
	must(t, s.SetJobBroker("100", ""))
	if js, _ := s.Jobs(); js[0].Broker != "" {
		t.Errorf("broker after SetJobBroker(\"\") = %q, want none", js[0].Broker)
	}
}

func TestHeartbeat(t *testing.T) {
	inModes(t, func(t *testing.T) {
		s, path := newRun(t, "v1", "v2")
		must(t, s.AddJob(Job{ID: "100", Attempt: 1, Submitted: at(0)}))
		must(t, s.AddJob(Job{ID: "200", Attempt: 2, Submitted: at(0)}))
		if js, _ := s.Jobs(); !js[0].Heartbeat.IsZero() || js[0].HeartbeatVisit != "" {
			t.Errorf("a new job has a heartbeat: %+v", js[0])
		}
		must(t, s.Heartbeat("100", at(1), "v1"))
		pages := func() int {
			var n int
			must(t, s.db.QueryRow("PRAGMA page_count").Scan(&n))
			return n
		}
		before := pages()
		const beats = 2000
		for i := 2; i <= beats; i++ {
			visit := []string{"", "v1", "tract=12,patch=3,visit=0001234,a-much-longer-visit-id"}[i%3]
			must(t, s.Heartbeat("100", at(i), visit))
		}
		if after := pages(); after != before {
			t.Errorf("%d heartbeats grew the file from %d to %d pages", beats, before, after)
		}
		must(t, s.Heartbeat("100", at(beats+1), "v2"))
		js, err := s.Jobs()
		must(t, err)
		if j := js[0]; !j.Heartbeat.Equal(at(beats+1)) || j.HeartbeatVisit != "v2" {
			t.Errorf("job 100 heartbeat = %v, %q; want %v, v2", j.Heartbeat, j.HeartbeatVisit, at(beats+1))
		}
		if j := js[1]; !j.Heartbeat.IsZero() || j.HeartbeatVisit != "" {
			t.Errorf("job 200 has job 100's heartbeat: %+v", j)
		}
		must(t, s.Heartbeat("100", at(beats+2), ""))
		r, err := OpenReadOnly(path)
		must(t, err)
		defer r.Close()
		js, err = r.Jobs()
		must(t, err)
		if j := js[0]; !j.Heartbeat.Equal(at(beats+2)) || j.HeartbeatVisit != "" {
			t.Errorf("reader: job 100 heartbeat = %v, %q; want %v, idle", j.Heartbeat, j.HeartbeatVisit, at(beats+2))
		}
		if err := s.Heartbeat("999", at(1), ""); !errors.Is(err, ErrNotFound) {
			t.Errorf("Heartbeat(unknown job): err = %v, want ErrNotFound", err)
		}
	})
}

func TestAddVisit(t *testing.T) {
	inModes(t, func(t *testing.T) {
		s, path := newRun(t, "v1", "v2")
		must(t, s.VisitStarted("v2", "1", at(1)))
		must(t, s.VisitEnded("v2", Done, "", at(2)))
		for _, c := range []struct {
			id    string
			added bool
		}{
			{"v3", true},
			{"v1", false}, // pending
			{"v2", false}, // done: stays done
			{"v3", false}, // added twice: once
			{"tract=1,patch=2", true},
		} {
			added, err := s.AddVisit(c.id)
			if err != nil || added != c.added {
				t.Errorf("AddVisit(%q) = %v, %v; want %v, nil", c.id, added, err, c.added)
			}
		}
		must(t, s.AddVisits([]string{"v6"}))
		added, err := s.AddVisit("v7")
		if err != nil || !added {
			t.Errorf("AddVisit after AddVisits = %v, %v", added, err)
		}
		for _, bad := range []struct{ id, want string }{{"", "empty visit ID"}, {"\xff", `visit ID "\xff" is not UTF-8`}} {
			if added, err := s.AddVisit(bad.id); added || !errors.Is(err, conf.ErrInvalid) || !strings.Contains(err.Error(), bad.want) {
				t.Errorf("AddVisit(%q) = %v, %v; want conf.ErrInvalid saying %s", bad.id, added, err, bad.want)
			}
		}
		vs, err := s.Visits("", 0)
		must(t, err)
		var got []string
		for _, v := range vs {
			got = append(got, fmt.Sprintf("%d:%s:%s", v.Seq, v.ID, v.State))
		}
		if want := []string{"1:v1:pending", "2:v2:done", "3:v3:pending", "4:tract=1,patch=2:pending", "5:v6:pending", "6:v7:pending"}; !reflect.DeepEqual(got, want) {
			t.Errorf("visits = %q, want %q", got, want)
		}
		checkCounts(t, s)
		if c, _ := s.Counts(); c[Pending] != 5 || c[Done] != 1 {
			t.Errorf("Counts() = %v, want 5 pending, 1 done", c)
		}
		ids, err := s.Runnable()
		must(t, err)
		if want := []string{"v1", "v3", "tract=1,patch=2", "v6", "v7"}; !reflect.DeepEqual(ids, want) {
			t.Errorf("Runnable() = %q, want %q", ids, want)
		}

		r, err := OpenReadOnly(path)
		must(t, err)
		defer r.Close()
		for id, want := range map[string]VisitState{"v1": Pending, "v2": Done, "v3": Pending, "v7": Pending} {
			for name, st := range map[string]*Store{"writer": s, "reader": r} {
				if got, err := st.VisitState(id); err != nil || got != want {
					t.Errorf("%s VisitState(%q) = %q, %v; want %q", name, id, got, err, want)
				}
			}
		}
		must(t, s.VisitStarted("v3", "1", at(3)))
		if got, err := r.VisitState("v3"); err != nil || got != Running {
			t.Errorf("VisitState(v3) after VisitStarted = %q, %v; want running", got, err)
		}
		if _, err := r.VisitState("nope"); !errors.Is(err, ErrNoSuchVisit) {
			t.Errorf("VisitState(unknown): err = %v, want ErrNoSuchVisit", err)
		}
	})
}

func TestAddVisitAfterBulkList(t *testing.T) {
	big := make([]string, bulkVisits)
	for i := range big {
		big[i] = fmt.Sprintf("b%d", i)
	}
	s, _ := newRun(t, big...)
	if added, err := s.AddVisit("b17"); err != nil || added {
		t.Errorf("AddVisit(b17) after a bulk list = %v, %v; want false: the ID index is back", added, err)
	}
	added, err := s.AddVisit("more")
	must(t, err)
	if !added {
		t.Fatal("AddVisit(more) added nothing")
	}
	vs, err := s.Visits("", 0)
	must(t, err)
	if last := vs[len(vs)-1]; last.ID != "more" || last.Seq != bulkVisits+1 {
		t.Errorf("last visit = %+v, want more at seq %d", last, bulkVisits+1)
	}
	checkCounts(t, s)
}

func TestInputClosed(t *testing.T) {
	s, path := newRun(t, "v1")
	if r, err := s.Run(); err != nil || !r.InputClosed.IsZero() || r.InputClosedWhy != "" {
		t.Fatalf("new run: Run() = %+v, %v; want its input open", r, err)
	}
	if err := s.CloseInput(time.Time{}, "x"); !errors.Is(err, conf.ErrInvalid) {
		t.Errorf("CloseInput(zero time): err = %v, want conf.ErrInvalid", err)
	}
	must(t, s.CloseInput(at(5), "no-more-data on visits from n1"))
	must(t, s.CloseInput(at(9), "again")) // a redelivery: the first stands
	check := func(st *Store, when time.Time, why string) {
		t.Helper()
		r, err := st.Run()
		must(t, err)
		if !r.InputClosed.Equal(when) || r.InputClosedWhy != why {
			t.Errorf("Run() input closed %v, %q; want %v, %q", r.InputClosed, r.InputClosedWhy, when, why)
		}
	}
	check(s, at(5), "no-more-data on visits from n1")
	r, err := OpenReadOnly(path)
	must(t, err)
	check(r, at(5), "no-more-data on visits from n1")
	r.Close()
	must(t, s.ReopenInput())
	check(s, time.Time{}, "")
	must(t, s.ReopenInput())
	must(t, s.CloseInput(at(12), "finish"))
	must(t, s.Close())
	s, err = Open(path)
	must(t, err)
	defer s.Close()
	check(s, at(12), "finish")

	p := filepath.Join(t.TempDir(), "closed.db")
	c, err := Create(p, Run{ID: "c", InputClosed: at(3), InputClosedWhy: "list only"})
	must(t, err)
	defer c.Close()
	check(c, at(3), "list only")
}

func TestEvents(t *testing.T) {
	inModes(t, func(t *testing.T) {
		s, path := newRun(t)
		ev := []EventRecord{
			{At: at(1), Dir: DirIn, Topic: "visits", Pipeline: "producer", Sender: "n0", Job: "100", Time: at(0),
				Props: map[string]any{"visit": "v1", "ccds": []any{1, 2, 3}, "seeing": 0.75, "nested": map[string]any{"big": math.MaxInt32 * 4}}},
			{At: at(2), Dir: DirOut, Topic: "status", Job: "100", Props: map[string]any{}},
			{At: at(3), Dir: DirIn, Topic: "visits", Kind: "no-more-data", Sender: "login1", Job: "100"},
			{At: at(4), Dir: DirIn, Topic: "control", Kind: "shutdown", Job: "100", Props: map[string]any{"why": "operator"}},
			{At: at(5), Dir: DirOut, Topic: "visits", Job: "", Props: map[string]any{"visit": "v2", "ok": true, "none": nil}},
		}
		for _, e := range ev {
			must(t, s.RecordEvent(e))
		}
		for i := range ev {
			ev[i].ID = int64(i + 1)
			if ev[i].Props == nil {
				ev[i].Props = map[string]any{}
			}
		}
		var stored string
		must(t, s.db.QueryRow(`SELECT props FROM events WHERE id = 3`).Scan(&stored))
		if stored != "{}" {
			t.Errorf("nil Props stored as %q, want {}", stored)
		}

		r, err := OpenReadOnly(path)
		must(t, err)
		defer r.Close()
		for _, c := range []struct {
			q    EventQuery
			want []int // indexes into ev
		}{
			{EventQuery{}, []int{0, 1, 2, 3, 4}},
			{EventQuery{Dir: DirIn}, []int{0, 2, 3}},
			{EventQuery{Dir: DirOut}, []int{1, 4}},
			{EventQuery{Topic: "visits"}, []int{0, 2, 4}},
			{EventQuery{Topic: "visits", Dir: DirIn}, []int{0, 2}},
			{EventQuery{Topic: "nothing"}, nil},
			{EventQuery{After: 2}, []int{2, 3, 4}},
			{EventQuery{After: 5}, nil},
			{EventQuery{Topic: "visits", After: 1}, []int{2, 4}},
			{EventQuery{Limit: 2}, []int{3, 4}},
			{EventQuery{Limit: 9}, []int{0, 1, 2, 3, 4}},
			{EventQuery{Dir: DirIn, Limit: 2}, []int{2, 3}},
			{EventQuery{Topic: "visits", After: 1, Limit: 1}, []int{4}},
		} {
			var want []EventRecord
			for _, i := range c.want {
				want = append(want, ev[i])
			}
			for name, st := range map[string]*Store{"writer": s, "reader": r} {
				got, err := st.Events(c.q)
				if err != nil {
					t.Errorf("%s Events(%+v): %v", name, c.q, err)
					continue
				}
				if !sameEvents(got, want) {
					t.Errorf("%s Events(%+v) =\n%+v\nwant\n%+v", name, c.q, got, want)
				}
			}
		}

		for _, bad := range []struct {
			e    EventRecord
			want string
		}{
			{EventRecord{Dir: "sideways", Topic: "t"}, `direction "sideways": want "in" or "out"`},
			{EventRecord{Topic: "t"}, `direction "": want "in" or "out"`},
			{EventRecord{Dir: DirIn}, "empty topic"},
			{EventRecord{Dir: DirIn, Topic: "t", Props: map[string]any{"f": func() {}}}, "recording an event on t: properties"},
			{EventRecord{Dir: DirIn, Topic: "t", Props: map[string]any{"x": math.NaN()}}, "properties"},
		} {
			if err := s.RecordEvent(bad.e); !errors.Is(err, conf.ErrInvalid) || !strings.Contains(err.Error(), bad.want) {
				t.Errorf("RecordEvent(%+v): err = %v, want conf.ErrInvalid saying %s", bad.e, err, bad.want)
			}
		}
		for _, q := range []EventQuery{{Dir: "up"}, {Limit: -1}} {
			if _, err := r.Events(q); !errors.Is(err, conf.ErrInvalid) {
				t.Errorf("Events(%+v): err = %v, want conf.ErrInvalid", q, err)
			}
		}
		if all, _ := r.Events(EventQuery{}); len(all) != len(ev) {
			t.Errorf("refused events were recorded: %d events, want %d", len(all), len(ev))
		}

		// A zero At is the time of the call.
		before := time.Now()
		must(t, s.RecordEvent(EventRecord{Dir: DirOut, Topic: "t"}))
		last, err := r.Events(EventQuery{Limit: 1})
		must(t, err)
		if len(last) != 1 || last[0].ID != 6 || last[0].At.Before(before) || last[0].At.After(time.Now()) || !last[0].Time.IsZero() {
			t.Errorf("event with zero At = %+v, want At now and no Time", last)
		}
	})
}

// sameEvents compares event records, times by instant.
func sameEvents(a, b []EventRecord) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if !x.At.Equal(y.At) || !x.Time.Equal(y.Time) {
			return false
		}
		x.At, x.Time, y.At, y.Time = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

// TestEventsQueryPlan checks that Events reads a range, never the whole
// table, and never sorts: following a long run's events stays cheap.
func TestEventsQueryPlan(t *testing.T) {
	s, _ := newRun(t)
	// Enough events, over several topics, for the planner to have a choice.
	_, err := s.db.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
		INSERT INTO events (at, dir, topic) SELECT i, CASE WHEN i % 2 = 0 THEN 'in' ELSE 'out' END, 'topic' || (i % 10) FROM n`)
	must(t, err)
	for _, q := range []EventQuery{
		{After: 4990},
		{After: 4990, Dir: DirIn},
		{After: 4990, Topic: "topic3"},
		{After: 4990, Topic: "topic3", Dir: DirOut},
		{Limit: 10},
		{Topic: "topic3", Limit: 10},
		{Topic: "topic3", After: 100, Limit: 10},
	} {
		query, args := eventsSQL(q)
		rows, err := s.db.Query("EXPLAIN QUERY PLAN "+query, args...)
		must(t, err)
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			must(t, rows.Scan(&id, &parent, &notused, &detail))
			plan = append(plan, detail)
		}
		rows.Close()
		text := strings.Join(plan, "; ")
		if q.After > 0 && !strings.Contains(text, "SEARCH events") || strings.Contains(text, "TEMP B-TREE") ||
			(q.Topic != "" && !strings.Contains(text, "events_by_topic")) {
			t.Errorf("Events(%+v): plan %q: want a search of the table or its topic index, no sort", q, text)
		}
		es, err := s.Events(q)
		must(t, err)
		if len(es) == 0 {
			t.Errorf("Events(%+v): none", q)
		}
	}
}

func TestMigrateFromVersion2(t *testing.T) {
	inModes(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "v2.db")
		// A file as the dpsbatch of schema version 2 left it: a run, a job,
		// three visits (one done), an event.
		db, err := sql.Open("sqlite3", path)
		must(t, err)
		tx, err := db.Begin()
		must(t, err)
		must(t, migrate(t.Context(), tx, 0, 2))
		_, err = tx.Exec(`INSERT INTO runs (id, name, created, settings) VALUES ('old', 'two', 1, '{"nodes":2}');
			INSERT INTO jobs (id, attempt, submitted, started, state, host) VALUES ('7', 1, 10, 20, 'RUNNING', 'n1');
			INSERT INTO visits (id, state, attempts, job, started, ended) VALUES ('a', 2, 1, '7', 30, 40), ('b', 0, 0, NULL, NULL, NULL), ('c', 0, 0, NULL, NULL, NULL);
			UPDATE visit_states SET visits = 2 WHERE code = 0;
			UPDATE visit_states SET visits = 1, first = 30, last = 40 WHERE code = 2;
			INSERT INTO events (at, dir, topic, props) VALUES (50, 'in', 'visits', '{"visit":"a","n":3}');`)
		must(t, err)
		must(t, tx.Commit())
		var v int
		must(t, db.QueryRow("PRAGMA user_version").Scan(&v))
		db.Close()
		if v != 2 {
			t.Fatalf("the v2 fixture is at version %d", v)
		}

		if _, err := OpenReadOnly(path); !errors.Is(err, ErrOldSchema) || !strings.Contains(err.Error(), fmt.Sprintf("schema version 2, this dpsbatch reads %d", schemaVersion)) {
			t.Errorf("OpenReadOnly(v2): err = %v, want ErrOldSchema naming both versions", err)
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

// An event the run dropped keeps why; DroppedEvents counts them through
// its partial index, whatever the number of events taken.
func TestDroppedEvents(t *testing.T) {
	s, _ := newRun(t)
	n, err := s.DroppedEvents()
	if err != nil || n != 0 {
		t.Fatalf("DroppedEvents of a new run = %d, %v", n, err)
	}
	for _, e := range []EventRecord{
		{At: at(1), Dir: DirIn, Topic: "visits", Props: map[string]any{"visitId": map[string]any{"a": 1}}},
		{At: at(1), Dir: DirIn, Topic: "visits", Dropped: "property visitId: expected string or number, got a mapping"},
		{At: at(2), Dir: DirIn, Topic: "visits", Dropped: "undecodable: not a JSON object"},
		{At: at(3), Dir: DirIn, Topic: "visits", Props: map[string]any{"visitId": "v1"}},
	} {
		must(t, s.RecordEvent(e))
	}
	if n, err := s.DroppedEvents(); err != nil || n != 2 {
		t.Errorf("DroppedEvents = %d, %v; want 2", n, err)
	}
	es, err := s.Events(EventQuery{})
	must(t, err)
	if len(es) != 4 || es[0].Dropped != "" || es[2].Dropped != "undecodable: not a JSON object" {
		t.Errorf("events %+v; want the drops' reasons read back", es)
	}
	var plan strings.Builder
	rows, err := s.db.Query(`EXPLAIN QUERY PLAN SELECT COUNT(*) FROM events WHERE dropped != ''`)
	must(t, err)
	for rows.Next() {
		var id, parent, unused int
		var detail string
		must(t, rows.Scan(&id, &parent, &unused, &detail))
		plan.WriteString(detail + "\n")
	}
	rows.Close()
	if !strings.Contains(plan.String(), "events_dropped") {
		t.Errorf("counting the drops does not use their index:\n%s", plan.String())
	}
}
