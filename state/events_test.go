package state

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

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
