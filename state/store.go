package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-sqlite3"
	"golang.org/x/sys/unix"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// How long a connection waits for a busy file before it gives up. The
// writer waits longer: an error from it stops the run, while a reader can
// ask again. A persistent writer (Options.Persist) then tries again,
// pausing between tries from firstBusyPause, doubling up to maxBusyPause.
const (
	writerBusyTimeout = 30 * time.Second
	readerBusyTimeout = 10 * time.Second
	firstBusyPause    = 100 * time.Millisecond
	maxBusyPause      = 5 * time.Second
)

// Options tunes a writer's Store: see OpenWith. The zero value is Open's.
type Options struct {
	// BusyTimeout is how long one write waits for a busy file (another
	// process holds a lock on it) before SQLite gives up; 0 is 30 s.
	BusyTimeout time.Duration
	// Persist makes a write that found the file busy or locked try
	// again, after a pause that grows to 5 s, for as long as the process
	// lives, instead of failing. The writer that must never lose a result, the
	// Pipeline of a job, sets it: in rollback-journal mode (network file
	// systems) a reader's shared lock holds the writer back, however
	// long the reader keeps it. Any other error (a full disk, say)
	// still fails the write at once.
	Persist bool
	// Log hears a warning each time a persistent write found the file
	// busy and waits to try again, and a note once it got through; nil
	// hears nothing.
	Log *slog.Logger
}

// Store is an open state file. A Store from Create or Open is the run's
// one writer; one from OpenReadOnly only reads. A Store is safe for
// concurrent use, but the visit methods are meant to be called by one
// goroutine (the Pipeline's loop) in the order VisitStarted, StageDone and
// SliceFailed, VisitEnded.
type Store struct {
	db       *sql.DB
	path     string
	readOnly bool
	fs       string // FileSystem
	journal  string // JournalMode
	opt      Options

	mu      sync.Mutex
	pending map[string]*visitLog // by visit: what VisitEnded writes
}

// visitLog is what StageDone and SliceFailed keep for VisitEnded.
type visitLog struct {
	stages   []stageTime
	failures []Failure
	dataIDs  []DataIDOutcome
	outputs  []Output
	capture  string // VisitCapture's
}

type stageTime struct {
	stage string
	took  time.Duration
}

// Create makes a new state file at path for run r, at the latest schema,
// and returns it open for writing. It fails with ErrExists if there is a
// file (or a leftover SQLite journal) at path, and with an error wrapping
// conf.ErrInvalid if r has no ID or Settings is not JSON; it leaves no file
// behind when it fails.
func Create(path string, r Run) (st *Store, err error) {
	if r.ID == "" {
		return nil, fmt.Errorf("state: %s: run ID is empty: %w", path, conf.ErrInvalid)
	}
	if r.Settings != "" && !json.Valid([]byte(r.Settings)) {
		return nil, fmt.Errorf("state: %s: run settings are not valid JSON: %w", path, conf.ErrInvalid)
	}
	if r.Created.IsZero() {
		r.Created = time.Now()
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("state: %s: %w", path, err)
	}
	for _, p := range []string{abs, abs + "-wal", abs + "-journal"} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("state: %s: %w", p, ErrExists)
		}
	}
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("state: %s: %w", path, ErrExists)
		}
		return nil, fmt.Errorf("state: creating %w", err)
	}
	f.Close()
	defer func() {
		if err != nil {
			removeFiles(abs)
		}
	}()
	s, err := openDB(path, abs, roleCreate, Options{})
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := migrate(ctx, tx, 0, schemaVersion); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO runs (id, name, dir, pipeline, policy_sum, site, partition, created, settings, input_closed, input_closed_why)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, r.Name, r.Dir, r.Pipeline, r.PolicySum, r.Site, r.Partition, r.Created.UnixNano(), r.Settings,
			nanos(r.InputClosed), r.InputClosedWhy)
		return err
	})
	if err != nil {
		s.db.Close()
		return nil, s.wrap("creating", err)
	}
	return s, nil
}

// removeFiles removes the state file at abs and SQLite's files beside it.
func removeFiles(abs string) {
	for _, p := range []string{abs, abs + "-wal", abs + "-shm", abs + "-journal"} {
		os.Remove(p)
	}
}

// CreateWithVisits creates the state file at path for run r with the
// visits ids pending, as Create, AddVisits and Close in turn would, with
// their errors; after an error nothing is left at path. The front end
// calls it for a new run, in the run's folder before that is moved in
// place, so nothing else opens the file while it is filled: a long list
// is written without a journal (once, not once to the journal and again
// to the file) and a smaller page cache, and the file is then put in the
// journal mode of its folder, as Create leaves it.
func CreateWithVisits(path string, r Run, ids []string) (err error) {
	s, err := Create(path, r)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := s.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			if abs, aerr := filepath.Abs(path); aerr == nil {
				removeFiles(abs)
			}
		}
	}()
	if len(ids) < bulkVisits {
		return s.AddVisits(ids)
	}
	return s.withoutJournal(func() error { return s.AddVisits(ids) })
}

// withoutJournal runs fill with the file's journal off and a page cache
// of 2 MiB, SQLite's default (the 64 MiB of openDB only add to the
// command's memory when the list is appended and its index built after),
// then puts the journal mode back. Only for a file no other connection
// has open; a fill that fails leaves it in no state to use.
func (s *Store) withoutJournal(fill func() error) error {
	ctx := context.Background()
	var mode, actual string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return s.wrap("reading the journal mode", err)
	}
	if _, err := s.db.ExecContext(ctx, "PRAGMA journal_mode = OFF; PRAGMA cache_size = -2048"); err != nil {
		return s.wrap("turning the journal off", err)
	}
	if err := fill(); err != nil {
		return err
	}
	err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode = "+mode).Scan(&actual)
	if err == nil && actual != mode {
		err = fmt.Errorf("cannot set journal mode %s: it stays %s", mode, actual)
	}
	if err != nil {
		return s.wrap("putting the journal back", err)
	}
	return nil
}

// Open opens the state file at path for writing, migrating it forward if
// it was written at an older schema. It fails with ErrNotFound if there is
// no file, ErrNotStateFile if it is not a state file, and ErrNewerSchema if
// a newer dpsbatch wrote it. Only one writer may have a run's file open:
// the front end while no job is live, else the job's Pipeline.
func Open(path string) (*Store, error) { return OpenWith(path, Options{}) }

// With opens the state file at path for writing (Open), runs f on it and
// closes it: f's error, else the close's.
func With(path string, f func(*Store) error) error {
	st, err := Open(path)
	if err != nil {
		return err
	}
	err = f(st)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	return err
}

// OpenWith is Open with options: the job's Pipeline opens the file
// persistent (Options.Persist).
func OpenWith(path string, o Options) (*Store, error) {
	abs, err := existing(path)
	if err != nil {
		return nil, err
	}
	s, err := openDB(path, abs, roleWrite, o)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	var headerErr error // already says what it is
	err = s.write(ctx, func(tx *sql.Tx) error {
		headerErr = nil
		version, err := s.checkHeader(ctx, tx)
		if err != nil || version == schemaVersion {
			headerErr = err
			return err
		}
		return migrate(ctx, tx, version, schemaVersion)
	})
	if err != nil {
		s.db.Close()
		if headerErr != nil {
			return nil, headerErr
		}
		return nil, s.wrap("opening", err)
	}
	return s, nil
}

// OpenReadOnly opens the state file at path for reading, for status. It
// never changes what the file records (SQLite itself may still roll back
// the journal of a writer that crashed, or checkpoint its WAL, where the
// reader may write the folder: every connection must). A file at an
// older schema (a run made by an earlier dpsbatch) whose jobs have all
// recorded their end is first migrated, as opening it for writing does,
// so that status reads runs from before an upgrade. One with a job that
// has not (it may still be queued or running, under the older dpsbatch,
// which would refuse the file once migrated), or that cannot be migrated
// (a file this user may not write), fails with ErrOldSchema, saying why.
// Write methods on the Store return ErrReadOnly.
func OpenReadOnly(path string) (*Store, error) {
	s, err := openReadOnly(path)
	if !errors.Is(err, ErrOldSchema) {
		return s, err
	}
	if n, qerr := unendedJobs(path); qerr != nil || n > 0 {
		if qerr != nil {
			return nil, fmt.Errorf("%w; reading its jobs: %v", err, qerr)
		}
		return nil, fmt.Errorf("%w; not migrated while %d of its jobs recorded no end (it may still run under the dpsbatch that made it): once they have ended, status migrates it, or resume does", err, n)
	}
	w, merr := Open(path)
	if merr != nil {
		return nil, fmt.Errorf("%w; migrating it failed: %v", err, merr)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("state: %s: closing it after migrating it: %w", path, err)
	}
	return openReadOnly(path)
}

// unendedJobs counts the jobs of the file at path that recorded no end,
// reading it at whatever schema it is (every schema has jobs.ended).
func unendedJobs(path string) (int, error) {
	abs, err := existing(path)
	if err != nil {
		return 0, err
	}
	s, err := openDB(path, abs, roleRead, Options{})
	if err != nil {
		return 0, err
	}
	defer s.db.Close()
	var n int
	err = s.db.QueryRow(`SELECT count(*) FROM jobs WHERE ended IS NULL`).Scan(&n)
	return n, err
}

// openReadOnly is OpenReadOnly of a file at this dpsbatch's schema: an
// older one fails with ErrOldSchema.
func openReadOnly(path string) (*Store, error) {
	abs, err := existing(path)
	if err != nil {
		return nil, err
	}
	s, err := openDB(path, abs, roleRead, Options{})
	if err != nil {
		return nil, err
	}
	version, err := s.checkHeader(context.Background(), s.db)
	if errors.Is(err, errEmpty) {
		err = fmt.Errorf("state: %s: empty file: %w", path, ErrNotStateFile)
	}
	if err == nil && version < schemaVersion {
		err = fmt.Errorf("state: %s is at schema version %d, this dpsbatch reads %d: %w",
			path, version, schemaVersion, ErrOldSchema)
	}
	if err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// existing returns the absolute path of the state file at path, or
// ErrNotFound.
func existing(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("state: %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("state: %s: %w", path, ErrNotFound)
	case err != nil:
		return "", fmt.Errorf("state: %w", err)
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("state: %s is not a regular file: %w", path, ErrNotStateFile)
	}
	return abs, nil
}

// role is what a Store is opened for.
type role int

const (
	roleCreate role = iota // the writer, of a new empty file
	roleWrite              // the writer, of an existing state file
	roleRead               // a reader
)

// openDB opens one connection to the existing file abs: the writer's, in
// the journal mode chosen for its file system, with o, or a reader's.
func openDB(path, abs string, r role, o Options) (*Store, error) {
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = writerBusyTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	readOnly := r == roleRead
	fs, mode, why, err := journalFor(filepath.Dir(abs))
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if readOnly {
		q.Set("_busy_timeout", fmt.Sprint(readerBusyTimeout.Milliseconds()))
		// A reader that may write the file and its folder opens it
		// read-write with query_only, so that it can roll back a crashed
		// writer's hot journal or open a WAL file whose -shm is gone; one
		// that may not opens it read-only.
		if unix.Access(abs, unix.W_OK) == nil && unix.Access(filepath.Dir(abs), unix.W_OK) == nil {
			q.Set("mode", "rw")
			q.Set("_query_only", "1")
		} else {
			q.Set("mode", "ro")
		}
	} else {
		q.Set("mode", "rw")
		q.Set("_busy_timeout", fmt.Sprint(o.BusyTimeout.Milliseconds()))
		q.Set("_txlock", "immediate") // take the write lock at BEGIN: no deadlock between writers
		// A larger page cache than the default 2 MiB: adding a million
		// visits touches the whole ID index.
		q.Set("_cache_size", "-65536")
		if mode == journalWAL {
			q.Set("_sync", "NORMAL")
		} else {
			q.Set("_sync", "FULL")
		}
	}
	name := "file:" + strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(abs) + "?" + q.Encode()
	db, err := sql.Open("sqlite3", name)
	if err != nil {
		return nil, fmt.Errorf("state: %s: %w", path, err)
	}
	// One connection: PRAGMAs hold for every statement, and the writer's
	// statements are serialised.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	s := &Store{db: db, path: path, readOnly: readOnly, fs: fs, opt: o, pending: map[string]*visitLog{}}
	ctx := context.Background()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, s.openError(err)
	}
	var actual string
	if readOnly {
		err = db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&actual)
		s.journal = fmt.Sprintf("%s (as the writer set it; the writer here would choose %s: %s)", actual, mode, why)
		if actual == mode {
			s.journal = fmt.Sprintf("%s (%s)", actual, why)
		}
	} else {
		// Before changing anything, make sure the file is ours: an empty
		// file (from Create) or a state file.
		_, err = s.checkHeader(ctx, db)
		if r == roleCreate && errors.Is(err, errEmpty) {
			err = nil
		}
		if errors.Is(err, errEmpty) {
			err = fmt.Errorf("state: %s: empty file: %w", path, ErrNotStateFile)
		}
		if err != nil {
			db.Close()
			return nil, err
		}
		err = db.QueryRowContext(ctx, "PRAGMA journal_mode = "+mode).Scan(&actual)
		if err == nil && actual != mode {
			err = fmt.Errorf("cannot set journal mode %s (%s): it stays %s", mode, why, actual)
		}
		s.journal = fmt.Sprintf("%s (%s)", actual, why)
	}
	if err != nil {
		db.Close()
		return nil, s.openError(err)
	}
	return s, nil
}

// openError wraps an error from opening the file; SQLite's "file is not a
// database" becomes ErrNotStateFile.
func (s *Store) openError(err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) && se.Code == sqlite3.ErrNotADB {
		return fmt.Errorf("state: %s: %v: %w", s.path, err, ErrNotStateFile)
	}
	return s.wrap("opening", err)
}

// errEmpty is checkHeader's answer for a file with no schema at all.
var errEmpty = errors.New("empty file")

// checkHeader reads the file's header and returns its schema version, or
// errEmpty for a file with no schema, or an error that names the file:
// ErrNotStateFile for another database, ErrNewerSchema, or SQLite's.
func (s *Store) checkHeader(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int, error) {
	app, version, err := header(ctx, q)
	if err != nil {
		return 0, s.openError(err)
	}
	switch {
	case app == 0 && version == 0:
		var tables int
		if err := q.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&tables); err != nil {
			return 0, s.openError(err)
		}
		if tables == 0 {
			return 0, errEmpty
		}
		fallthrough
	case app != applicationID:
		return 0, fmt.Errorf("state: %s: SQLite database with application ID 0x%X, schema version %d: %w", s.path, app, version, ErrNotStateFile)
	case version > schemaVersion:
		return 0, fmt.Errorf("state: %s is at schema version %d, this dpsbatch knows versions up to %d: use a newer dpsbatch: %w",
			s.path, version, schemaVersion, ErrNewerSchema)
	}
	return version, nil
}

// write runs f in one write transaction (BEGIN IMMEDIATE) and commits it.
// A persistent Store (Options.Persist) runs f again in a new transaction
// while the file is busy: f must set what it reports from scratch.
func (s *Store) write(ctx context.Context, f func(tx *sql.Tx) error) error {
	if s.readOnly {
		return ErrReadOnly
	}
	pause, start := firstBusyPause, time.Now()
	for tries := 1; ; tries++ {
		err := s.writeOnce(ctx, f)
		if !s.opt.Persist || !isBusy(err) {
			if err == nil && tries > 1 {
				s.opt.Log.Info("state file written after waiting for the lock", "state", s.path, "tries", tries,
					"waited", time.Since(start).Round(time.Millisecond))
			}
			return err
		}
		s.opt.Log.Warn("state file busy: another process holds a lock on it; trying again, nothing is lost",
			"state", s.path, "tries", tries, "waited", time.Since(start).Round(time.Millisecond), "pause", pause, "err", err)
		time.Sleep(pause)
		pause = min(2*pause, maxBusyPause)
	}
}

// isBusy reports whether err is SQLite's "database is locked" (busy) or
// "database table is locked".
func isBusy(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked)
}

// writeOnce is one try of write.
func (s *Store) writeOnce(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Close closes the file. Stage times and slice failures of visits that did
// not end are dropped.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return s.wrap("closing", err)
	}
	return nil
}

// Path returns the path the Store was opened with.
func (s *Store) Path() string { return s.path }

// JournalMode says which journal mode the file is in and why: "wal (local
// file system ext4)", "delete (nfs is not known to be a local file system:
// ...)", or the override of JournalEnv. For a reader it is the mode the
// writer set.
func (s *Store) JournalMode() string { return s.journal }

// FileSystem names the file system the file's folder is on, as detected:
// "ext4", "overlayfs", "nfs", "fuse.sshfs", "unknown (magic 0x1234)".
func (s *Store) FileSystem() string { return s.fs }

// Run returns the run the file records.
func (s *Store) Run() (Run, error) {
	var r Run
	var created int64
	var closed sql.NullInt64
	err := s.db.QueryRow(`SELECT id, name, dir, pipeline, policy_sum, site, partition, created, settings, input_closed, input_closed_why
		FROM runs LIMIT 1`).
		Scan(&r.ID, &r.Name, &r.Dir, &r.Pipeline, &r.PolicySum, &r.Site, &r.Partition, &created, &r.Settings, &closed, &r.InputClosedWhy)
	if err != nil {
		return Run{}, s.wrap("reading the run", err)
	}
	r.Created = time.Unix(0, created)
	r.InputClosed = fromNanos(closed)
	return r, nil
}

// CloseInput records that the run's input was closed at at: a no-more-data
// event reached it, for why (the event's topic and sender, say). The
// Pipeline calls it when it receives no-more-data, before it drains; a
// later job of the run (resume) reads Run().InputClosed and runs what is
// left without waiting for more trigger events. If the input is closed
// already, the first closing stands and CloseInput changes nothing: a
// redelivered no-more-data is not news. at must not be zero (a zero
// InputClosed means open): that is an error wrapping conf.ErrInvalid.
func (s *Store) CloseInput(at time.Time, why string) error {
	if at.IsZero() {
		return fmt.Errorf("state: %s: closing the run's input: zero time: %w", s.path, conf.ErrInvalid)
	}
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE runs SET input_closed = ?, input_closed_why = ? WHERE input_closed IS NULL`, nanos(at), why)
		return err
	})
	if err != nil {
		return s.wrap("closing the run's input", err)
	}
	return nil
}

// ReopenInput forgets CloseInput: the next job of the run waits for
// trigger events again. The front end calls it when the operator resumes a
// run with more input to come. Reopening an open input does nothing.
func (s *Store) ReopenInput() error {
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE runs SET input_closed = NULL, input_closed_why = ''`)
		return err
	})
	if err != nil {
		return s.wrap("reopening the run's input", err)
	}
	return nil
}

// SetSettings replaces the run's Settings ("" or valid JSON): the front end
// calls it when a resume plans anew.
func (s *Store) SetSettings(settings string) error {
	if settings != "" && !json.Valid([]byte(settings)) {
		return fmt.Errorf("state: %s: run settings are not valid JSON: %w", s.path, conf.ErrInvalid)
	}
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE runs SET settings = ?`, settings)
		return err
	})
	if err != nil {
		return s.wrap("setting the run's settings", err)
	}
	return nil
}
