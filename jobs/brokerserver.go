package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/state"
)

// checkBrokerSpace checks, for a run with an embedded broker whose
// directory is (or will be) dir, that dir's file system has room for the
// broker's store: submit and resume call it before submitting, and the
// job's broker checks again when it starts (events.StartEmbedded).
func checkBrokerSpace(dir string, b brokerSettings) error {
	if b.external() {
		return nil
	}
	if err := events.CheckStoreSpace(Layout{Dir: dir}.BrokerDir(), b.maxBytes()); err != nil {
		return fmt.Errorf("jobs: the run's events do not fit: %w; free space there, or lower broker.stream_size in the site file", err)
	}
	return nil
}

// BrokerDir is where the embedded broker of the run's jobs keeps its
// events (JetStream's store), its token and its lock.
func (l Layout) BrokerDir() string { return filepath.Join(l.Dir, "broker") }

// BrokerToken is the file holding the token of the run's embedded broker
// (mode 0600): only the run's owner can talk to it.
func (l Layout) BrokerToken() string { return filepath.Join(l.BrokerDir(), "token") }

func (l Layout) brokerLock() string { return filepath.Join(l.BrokerDir(), "lock") }

// errBrokerBusy: another process has the run's embedded broker store open.
var errBrokerBusy = errors.New("the run's broker store is in use")

// lockBroker takes the run's broker lock, which whoever serves the
// embedded broker's store holds for as long as it does (two servers on one
// store would corrupt it): the job's rank 0, or a relay command storing an
// event while no job runs. With wait 0 it fails at once with errBrokerBusy
// when the lock is held; else it tries until wait has passed.
func lockBroker(l Layout, wait time.Duration) (unlock func(), err error) {
	if err := os.MkdirAll(l.BrokerDir(), 0o700); err != nil {
		return nil, fmt.Errorf("jobs: broker directory: %w", err)
	}
	f, err := os.OpenFile(l.brokerLock(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("jobs: broker lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("jobs: broker lock %s: %w", l.brokerLock(), err)
		}
		if !time.Now().Before(deadline) {
			f.Close()
			return nil, fmt.Errorf("jobs: %s: %w", l.BrokerDir(), errBrokerBusy)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// newToken writes a fresh random token to the run's token file (0600,
// replaced atomically) and returns it.
func newToken(l Layout) (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b[:])
	tmp := l.BrokerToken() + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("jobs: broker token: %w", err)
	}
	if err := os.Rename(tmp, l.BrokerToken()); err != nil {
		return "", fmt.Errorf("jobs: broker token: %w", err)
	}
	return tok, nil
}

// served is a broker connection and what must be closed with it: the
// embedded server this process started and the store's lock.
type served struct {
	*events.NATS
	srv    *events.Embedded // nil for an external broker
	unlock func()
	URL    string // where it listens: recorded for the relay commands
}

// Close closes the connection, then the server and the lock.
func (s *served) Close() error {
	err := s.NATS.Close()
	if s.srv != nil {
		s.srv.Close()
	}
	if s.unlock != nil {
		s.unlock()
	}
	return err
}

// serve starts the run's embedded broker on this host (host "" listens on
// every address, for a job; "127.0.0.1" for a relay command storing an
// event while no job runs), with a fresh token and the store limit of b,
// and connects to it. It holds the store's lock until Close, waiting up
// to lockWait for it.
func serve(ctx context.Context, l Layout, b brokerSettings, host string, lockWait time.Duration, name, subscriber string, log *slog.Logger) (*served, error) {
	unlock, err := lockBroker(l, lockWait)
	if err != nil {
		return nil, err
	}
	tok, err := newToken(l)
	if err != nil {
		unlock()
		return nil, err
	}
	srv, err := events.StartEmbedded(events.EmbeddedConfig{Dir: l.BrokerDir(), Host: host, Token: tok,
		MaxStore: b.maxBytes(), Logger: slog.New(warnOnly{log.Handler()})})
	if err != nil {
		unlock()
		return nil, err
	}
	n, err := events.DialNATS(ctx, events.NATSConfig{URLs: []string{srv.URL()}, TokenFile: l.BrokerToken(),
		Name: name, Subscriber: subscriber, Logger: log, MaxBytes: b.maxBytes()})
	if err != nil {
		srv.Close()
		unlock()
		return nil, err
	}
	return &served{NATS: n, srv: srv, unlock: unlock, URL: srv.URL()}, nil
}

// warnOnly passes on records at slog.LevelWarn and above: the embedded
// server's start-up notices stay out of the job's log.
type warnOnly struct{ slog.Handler }

func (w warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}
func (w warnOnly) WithAttrs(as []slog.Attr) slog.Handler { return warnOnly{w.Handler.WithAttrs(as)} }
func (w warnOnly) WithGroup(g string) slog.Handler       { return warnOnly{w.Handler.WithGroup(g)} }

// ServeBroker serves the embedded broker of the run in dir for job's
// restart-th start (RestartCount) until ctx ends: the job script starts
// it (`dpsbatch broker`) in the background on the batch host before the
// run's steps, whose Pipelines dial it, and stops it once they have
// ended. It records the job's start and where it listens in the run's
// state file (the job's row). ready, when not nil, is called once it
// serves.
func ServeBroker(ctx context.Context, dir, job string, restart int, log *slog.Logger, ready func(url string)) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if job == "" {
		job = localJob // as the Pipeline outside Slurm calls it (InJob.JobID)
	}
	l := Layout{Dir: dir}
	_, set, err := readSettings(l)
	if err != nil {
		return err
	}
	// The start first: a requeued job's record then forgets its earlier
	// start's broker, which the relay commands must not dial. A step's
	// rank 0 records it in its own state file: here, only in a run's
	// state file that no step shares.
	if !stepIn(l, set) {
		if err := withJob(l, func(st *state.Store) error { return startJob(st, job, restart) }); err != nil {
			return err
		}
	}
	if err := writeServed(l, job, restart, brokerWaiting); err != nil {
		return err
	}
	defer os.Remove(l.servedFile(job, restart)) // its Pipelines find no broker once it has gone
	s, err := serveWhenFree(ctx, l, set.Broker, log)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := withJob(l, func(st *state.Store) error { return st.SetJobBroker(job, s.URL) }); err != nil {
		return err
	}
	if err := writeServed(l, job, restart, s.URL); err != nil {
		return err
	}
	log.Info("broker serving", "url", s.URL, "store", l.BrokerDir())
	if ready != nil {
		ready(s.URL)
	}
	<-ctx.Done()
	lingerForPipelines(s, brokerLinger)
	return nil
}

// brokerLinger is how long a stopped broker serves on while Pipelines are
// connected to it.
const brokerLinger = 20 * time.Second

// lingerForPipelines returns once no client but s's own connection is
// left on its server, or after at most d: Slurm signals the job's
// processes all at once when it requeues or cancels the job, and the
// steps' Pipelines still announce their end through the broker as they
// stop. At the job's normal end they have gone already.
func lingerForPipelines(s *served, d time.Duration) {
	for end := time.Now().Add(d); s.srv.Clients() > 1 && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
}

// startJob records job's restart-th start in st, and the job itself
// when its submitter died before recording it.
func startJob(st *state.Store, job string, restart int) error {
	host, _ := os.Hostname()
	err := st.StartJob(job, restart, host, time.Now())
	if errors.Is(err, state.ErrNotFound) {
		if _, err = recordSelf(st, job, host, time.Now()); err == nil {
			err = st.StartJob(job, restart, host, time.Now())
		}
	}
	return err
}

// serveWhenFree serves the run's embedded broker once its store is free:
// another job of the run (one Slurm has not finished ending) or a relay
// command may hold it a while.
func serveWhenFree(ctx context.Context, l Layout, b brokerSettings, log *slog.Logger) (*served, error) {
	for {
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		s, err := serve(sctx, l, b, "", 30*time.Second, "dpsbatch broker", "", log)
		cancel()
		if !errors.Is(err, errBrokerBusy) || ctx.Err() != nil {
			return s, err
		}
		log.Warn("the run's broker store is still in use (another job of the run ending?): waiting for it", "store", l.BrokerDir())
	}
}

// servedFile is where the run's broker for job's restart-th start says,
// for the steps' Pipelines, that it waits for the store or where it
// listens.
func (l Layout) servedFile(job string, restart int) string {
	return filepath.Join(l.BrokerDir(), fmt.Sprintf("served-%s-%d", url.PathEscape(job), restart))
}

// brokerWaiting is what the served file holds while its broker waits for
// the run's store.
const brokerWaiting = "waiting"

// writeServed records, for job's restart-th start, that the run's broker
// serves at url, or waits for the store (brokerWaiting); it is replaced
// atomically. The steps' Pipelines read it (servedURL), whether or not
// the state file has a row for the job.
func writeServed(l Layout, job string, restart int, url string) error {
	f := l.servedFile(job, restart)
	if err := os.MkdirAll(l.BrokerDir(), 0o700); err != nil {
		return fmt.Errorf("jobs: broker directory: %w", err)
	}
	if err := os.WriteFile(f+".tmp", []byte(url+"\n"), 0o600); err != nil {
		return fmt.Errorf("jobs: broker address: %w", err)
	}
	if err := os.Rename(f+".tmp", f); err != nil {
		return fmt.Errorf("jobs: broker address: %w", err)
	}
	return nil
}

// servedURL is where the run's broker serves job's restart-th start; ""
// while it does not (yet), with waiting set while it waits for the store.
func servedURL(l Layout, job string, restart int) (url string, waiting bool) {
	data, err := os.ReadFile(l.servedFile(job, restart))
	if err != nil {
		return "", false
	}
	s := strings.TrimSpace(string(data))
	if s == brokerWaiting {
		return "", true
	}
	return s, false
}

// withJob runs f on the run's state file, opened for it alone; a job
// the file does not know (ErrNotFound) is no error.
func withJob(l Layout, f func(st *state.Store) error) error {
	st, err := state.Open(l.State())
	if err != nil {
		return err
	}
	err = f(st)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, state.ErrNotFound) {
		return nil
	}
	return err
}
