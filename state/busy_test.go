package state

import (
	"bytes"
	"context"
	"database/sql"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// holdShared takes a shared lock on the state file at path, as a reader
// in the middle of a read transaction holds it, and keeps it for hold;
// held is closed once the lock is taken.
func holdShared(t *testing.T, path string, hold time.Duration, held chan<- struct{}) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Error(err)
		close(held)
		return
	}
	defer db.Close()
	tx, err := db.BeginTx(context.Background(), &sql.TxOptions{ReadOnly: true})
	if err == nil {
		err = tx.QueryRow(`SELECT count(*) FROM visits`).Scan(new(int))
	}
	close(held)
	if err != nil {
		t.Error(err)
		return
	}
	time.Sleep(hold)
	tx.Rollback()
}

// In rollback-journal mode a reader's shared lock holds the writer's
// commit back. A persistent writer (the job's Pipeline) waits it out,
// however long it lasts, warning in the log, and loses nothing; a plain
// one fails after its busy timeout, as SQLite says.
func TestPersistentWriterOutlastsReader(t *testing.T) {
	t.Setenv(JournalEnv, "delete")
	const timeout = 200 * time.Millisecond
	for _, persist := range []bool{true, false} {
		t.Run(map[bool]string{true: "persistent", false: "plain"}[persist], func(t *testing.T) {
			s, path := newRun(t, "v1", "v2")
			must(t, s.Close())
			var log bytes.Buffer
			var mu sync.Mutex
			w, err := OpenWith(path, Options{BusyTimeout: timeout, Persist: persist,
				Log: slog.New(slog.NewTextHandler(&lockedWriter{w: &log, mu: &mu}, nil))})
			must(t, err)
			defer w.Close()
			must(t, w.VisitStarted("v1", "1001", at(1)))

			held := make(chan struct{})
			go holdShared(t, path, 2*timeout, held)
			<-held
			t0 := time.Now()
			err = w.VisitEnded("v1", Done, "", at(2))
			took := time.Since(t0)
			if !persist {
				if !isBusy(err) || !strings.Contains(err.Error(), "database is locked") {
					t.Fatalf("plain writer: VisitEnded = %v; want SQLite's busy error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("persistent writer: VisitEnded = %v after %s; want it to wait for the reader", err, took)
			}
			if took < timeout {
				t.Errorf("VisitEnded took %s; the reader held the file for %s", took, 2*timeout)
			}
			if st, err := w.VisitState("v1"); err != nil || st != Done {
				t.Errorf("v1 is %v, %v; want done", st, err)
			}
			vs, err := w.Visits(Done, 0)
			if err != nil || len(vs) != 1 || vs[0].Attempts != 1 {
				t.Errorf("done visits %+v, %v; want v1, started once", vs, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if !strings.Contains(log.String(), "state file busy") || !strings.Contains(log.String(), "written after waiting") {
				t.Errorf("log lacks the warning and the note:\n%s", log.String())
			}
		})
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A starting job interrupts the running visits of the jobs it names only:
// another job's running visit stays running. RunningByJob counts them.
func TestInterruptRunningOf(t *testing.T) {
	s, _ := newRun(t, "a", "b", "c", "d")
	must(t, s.VisitStarted("a", "1001", at(1)))
	must(t, s.VisitStarted("b", "1002", at(1)))
	must(t, s.VisitStarted("c", "1002", at(1)))
	must(t, s.VisitStarted("d", "1003", at(1)))
	must(t, s.VisitEnded("d", Done, "", at(2)))
	by, err := s.RunningByJob()
	must(t, err)
	if len(by) != 2 || by["1001"] != 1 || by["1002"] != 2 {
		t.Errorf("RunningByJob() = %v; want 1001: 1, 1002: 2", by)
	}
	n, err := s.InterruptRunningOf([]string{"1001", "1003", "9999"}, "job 1001 ended")
	must(t, err)
	if n != 1 {
		t.Errorf("InterruptRunningOf = %d; want 1 (a)", n)
	}
	for id, want := range map[string]VisitState{"a": Interrupted, "b": Running, "c": Running, "d": Done} {
		if st, err := s.VisitState(id); err != nil || st != want {
			t.Errorf("%s is %s, %v; want %s", id, st, err, want)
		}
	}
	if n, err := s.InterruptRunningOf(nil, "nothing"); n != 0 || err != nil {
		t.Errorf("InterruptRunningOf(nil) = %d, %v; want 0", n, err)
	}
	checkCounts(t, s)
}
