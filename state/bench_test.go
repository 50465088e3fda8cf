package state

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The benchmarks' run: a million visits, of which (by seq modulo 100) 60%
// are done, 5% failed, 1% interrupted, 34% pending: a large run resumed
// after a crash.
const fixtureVisits = 1_000_000

var fixture struct {
	once sync.Once
	dir  string // removed by TestMain
	path string
	ids  []string
	err  error
}

// fixtureIDs returns the visit IDs of the fixture.
func fixtureIDs() []string {
	fixture.once.Do(buildFixture)
	return fixture.ids
}

// fixturePath builds the fixture file once per process and returns its
// path. Benchmarks that write copy it.
func fixturePath(b *testing.B) string {
	b.Helper()
	fixture.once.Do(buildFixture)
	if fixture.err != nil {
		b.Fatal(fixture.err)
	}
	return fixture.path
}

func buildFixture() {
	fixture.ids = make([]string, fixtureVisits)
	for i := range fixture.ids {
		fixture.ids[i] = fmt.Sprintf("tract=%d,patch=%d,visit=%07d", i%97, i%13, i)
	}
	fixture.dir, fixture.err = os.MkdirTemp("", "state-bench-")
	if fixture.err != nil {
		return
	}
	fixture.path = filepath.Join(fixture.dir, "run.db")
	s, err := Create(fixture.path, Run{ID: "bench"})
	if err != nil {
		fixture.err = err
		return
	}
	defer s.Close()
	if err := s.AddVisits(fixture.ids); err != nil {
		fixture.err = err
		return
	}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	_, fixture.err = s.db.Exec(`UPDATE visits SET
		state = CASE WHEN seq % 100 < 60 THEN 2 WHEN seq % 100 < 65 THEN 3 WHEN seq % 100 < 66 THEN 4 ELSE 0 END,
		attempts = CASE WHEN seq % 100 < 66 THEN 1 + seq % 3 ELSE 0 END,
		job = CASE WHEN seq % 100 < 66 THEN '1234' END,
		started = CASE WHEN seq % 100 < 66 THEN ? + seq * 1000000 END,
		ended = CASE WHEN seq % 100 < 66 THEN ? + seq * 1000000 + 500000 END`, t0, t0)
}

// copyFixture copies the fixture file into dir.
func copyFixture(b *testing.B, dir string) string {
	b.Helper()
	src, err := os.Open(fixturePath(b))
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(dir, "run.db")
	os.Remove(path)
	dst, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		b.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

func TestMain(m *testing.M) {
	if helper := os.Getenv(helperEnv); helper != "" {
		os.Exit(runHelper(helper))
	}
	code := m.Run()
	if fixture.dir != "" {
		os.RemoveAll(fixture.dir)
	}
	os.Exit(code)
}

// BenchmarkAddVisits1M adds a million visits to a new file (submit).
func BenchmarkAddVisits1M(b *testing.B) {
	ids := fixtureIDs()
	dir := b.TempDir()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		path := filepath.Join(dir, fmt.Sprintf("run%d.db", i))
		s, err := Create(path, Run{ID: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := s.AddVisits(ids); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close()
		os.Remove(path)
		b.StartTimer()
	}
	reportPerMillion(b)
}

// BenchmarkCreateWithVisits1M is a new run's state file with a million
// visits pending, as submit makes it: created, filled, closed.
func BenchmarkCreateWithVisits1M(b *testing.B) {
	ids := fixtureIDs()
	dir := b.TempDir()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		path := filepath.Join(dir, fmt.Sprintf("run%d.db", i))
		if err := CreateWithVisits(path, Run{ID: "bench"}, ids); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.Remove(path)
		b.StartTimer()
	}
	reportPerMillion(b)
}

// BenchmarkCounts1M is status's count of visits by state over a million.
func BenchmarkCounts1M(b *testing.B) {
	s, err := OpenReadOnly(fixturePath(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := s.Counts()
		if err != nil {
			b.Fatal(err)
		}
		if c[Done] != 600_000 {
			b.Fatalf("done = %d, want 600000", c[Done])
		}
	}
	reportPerMillion(b)
}

// BenchmarkRunnable1M lists what a resumed job runs: 350,000 of a million.
func BenchmarkRunnable1M(b *testing.B) {
	s, err := OpenReadOnly(fixturePath(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ids, err := s.Runnable()
		if err != nil {
			b.Fatal(err)
		}
		if len(ids) != 350_000 {
			b.Fatalf("runnable = %d, want 350000", len(ids))
		}
	}
	reportPerMillion(b)
}

// BenchmarkRetry1M is resume's retry of failed and interrupted visits
// (60,000 of a million, a third of them at the limit of 3 attempts).
func BenchmarkRetry1M(b *testing.B) {
	dir := b.TempDir()
	fixturePath(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, err := Open(copyFixture(b, dir))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		n, exhausted, err := s.Retry(3)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if n+len(exhausted) != 60_000 {
			b.Fatalf("retried %d + exhausted %d, want 60000", n, len(exhausted))
		}
		s.Close()
		b.StartTimer()
	}
	reportPerMillion(b)
}

// reportPerMillion reports the time of one operation over the million
// visits in milliseconds.
func reportPerMillion(b *testing.B) {
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/op-over-1M")
}

// BenchmarkVisitCycle is the Pipeline's cost per visit in each journal
// mode: VisitStarted and VisitEnded(done) with two stage times, each a
// commit, on a run of a million visits.
func BenchmarkVisitCycle(b *testing.B) {
	for _, mode := range []string{"wal", "delete"} {
		b.Run(mode, func(b *testing.B) {
			b.Setenv(JournalEnv, mode)
			s, err := Open(copyFixture(b, b.TempDir()))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ids, err := s.Runnable()
			if err != nil {
				b.Fatal(err)
			}
			if b.N > len(ids) {
				b.Fatalf("b.N = %d: only %d runnable visits", b.N, len(ids))
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				now := time.Now()
				if err := s.VisitStarted(ids[i], "1", now); err != nil {
					b.Fatal(err)
				}
				s.StageDone(ids[i], "isr", time.Millisecond)
				s.StageDone(ids[i], "calexp", time.Millisecond)
				if err := s.VisitEnded(ids[i], Done, "", now); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "visits/s")
		})
	}
}

// BenchmarkAddVisitOneByOne is the Pipeline adding the visits that arrive
// by trigger event, one AddVisit (one commit) each, to a run of a million
// visits, in each journal mode.
func BenchmarkAddVisitOneByOne(b *testing.B) {
	for _, mode := range []string{"wal", "delete"} {
		b.Run(mode, func(b *testing.B) {
			b.Setenv(JournalEnv, mode)
			s, err := Open(copyFixture(b, b.TempDir()))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ids := make([]string, b.N)
			for i := range ids {
				ids[i] = fmt.Sprintf("tract=%d,patch=%d,visit=%07d", i%97, i%13, fixtureVisits+i)
			}
			b.ResetTimer()
			for _, id := range ids {
				added, err := s.AddVisit(id)
				if err != nil || !added {
					b.Fatalf("AddVisit(%s) = %v, %v", id, added, err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "visits/s")
			if c, err := s.Counts(); err != nil || c[Pending] != 340_000+b.N {
				b.Fatalf("Counts() = %v, %v; want %d pending", c, err, 340_000+b.N)
			}
		})
	}
}

// BenchmarkEventsFollow is `dpsbatch events --follow` on a run that
// recorded 200,000 events over 20 topics: one Events call after the last
// ID seen, which finds the 10 newest, for all topics and for one.
func BenchmarkEventsFollow(b *testing.B) {
	const events = 200_000
	s, path := benchRun(b)
	if _, err := s.db.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
		INSERT INTO events (at, dir, topic, props) SELECT i, CASE WHEN i % 2 = 0 THEN 'in' ELSE 'out' END, 'topic' || (i % 20), '{"visit":"v' || i || '"}' FROM n`,
		events); err != nil {
		b.Fatal(err)
	}
	s.Close()
	r, err := OpenReadOnly(path)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	for _, c := range []struct {
		name string
		q    EventQuery
		want int
	}{
		{"all", EventQuery{After: events - 10}, 10},
		{"topic", EventQuery{Topic: "topic7", After: events - 200}, 10},
		{"last", EventQuery{Topic: "topic7", Limit: 10}, 10},
	} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				es, err := r.Events(c.q)
				if err != nil || len(es) != c.want {
					b.Fatalf("Events(%+v) = %d events, %v; want %d", c.q, len(es), err, c.want)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/call")
		})
	}
}

// benchRun creates an empty run in a temporary folder.
func benchRun(b *testing.B) (*Store, string) {
	b.Helper()
	path := filepath.Join(b.TempDir(), "run.db")
	s, err := Create(path, Run{ID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	return s, path
}
