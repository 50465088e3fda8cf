package rundir

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/state"
)

// CheckBrokerSpace checks, for a run with an embedded broker whose
// directory is (or will be) dir, that dir's file system has room for the
// broker's store: submit and resume call it before submitting, and the
// job's broker checks again when it starts (events.StartEmbedded).
func CheckBrokerSpace(dir string, b BrokerSettings) error {
	if b.External() {
		return nil
	}
	if err := events.CheckStoreSpace(Layout{Dir: dir}.BrokerDir(), b.MaxBytes()); err != nil {
		return fmt.Errorf("rundir: the run's events do not fit: %w; free space there, or lower broker.stream_size in the site file", err)
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

// ErrBrokerBusy: another process has the run's embedded broker store open.
var ErrBrokerBusy = errors.New("the run's broker store is in use")

// LockBroker takes the run's broker lock, which whoever serves the
// embedded broker's store holds for as long as it does (two servers on one
// store would corrupt it): the job's rank 0, or a relay command storing an
// event while no job runs. With wait 0 it fails at once with errBrokerBusy
// when the lock is held; else it tries until wait has passed.
func LockBroker(l Layout, wait time.Duration) (unlock func(), err error) {
	if err := os.MkdirAll(l.BrokerDir(), 0o700); err != nil {
		return nil, fmt.Errorf("rundir: broker directory: %w", err)
	}
	f, err := os.OpenFile(l.brokerLock(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("rundir: broker lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("rundir: broker lock %s: %w", l.brokerLock(), err)
		}
		if !time.Now().Before(deadline) {
			f.Close()
			return nil, fmt.Errorf("rundir: %s: %w", l.BrokerDir(), ErrBrokerBusy)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// NewToken writes a fresh random token to the run's token file (0600,
// replaced atomically) and returns it.
func NewToken(l Layout) (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b[:])
	tmp := l.BrokerToken() + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("rundir: broker token: %w", err)
	}
	if err := os.Rename(tmp, l.BrokerToken()); err != nil {
		return "", fmt.Errorf("rundir: broker token: %w", err)
	}
	return tok, nil
}

// Served is a broker connection and what must be closed with it: the
// embedded server this process started and the store's lock.
type Served struct {
	*events.NATS
	srv    *events.Embedded // nil for an external broker
	unlock func()
	URL    string // where it listens: recorded for the relay commands
}

// Clients is the number of connections to the server s started (its own
// included); 0 for an external broker.
func (s *Served) Clients() int {
	if s.srv == nil {
		return 0
	}
	return s.srv.Clients()
}

// Close closes the connection, then the server and the lock.
func (s *Served) Close() error {
	err := s.NATS.Close()
	if s.srv != nil {
		s.srv.Close()
	}
	if s.unlock != nil {
		s.unlock()
	}
	return err
}

// Serve starts the run's embedded broker on this host (host "" listens on
// every address, for a job; "127.0.0.1" for a relay command storing an
// event while no job runs), with a fresh token and the store limit of b,
// and connects to it. It holds the store's lock until Close, waiting up
// to lockWait for it.
func Serve(ctx context.Context, l Layout, b BrokerSettings, host string, lockWait time.Duration, name, subscriber string, log *slog.Logger) (*Served, error) {
	unlock, err := LockBroker(l, lockWait)
	if err != nil {
		return nil, err
	}
	tok, err := NewToken(l)
	if err != nil {
		unlock()
		return nil, err
	}
	srv, err := events.StartEmbedded(events.EmbeddedConfig{Dir: l.BrokerDir(), Host: host, Token: tok,
		MaxStore: b.MaxBytes(), Logger: slog.New(warnOnly{log.Handler()})})
	if err != nil {
		unlock()
		return nil, err
	}
	n, err := events.DialNATS(ctx, events.NATSConfig{URLs: []string{srv.URL()}, TokenFile: l.BrokerToken(),
		Name: name, Subscriber: subscriber, Logger: log, MaxBytes: b.MaxBytes()})
	if err != nil {
		srv.Close()
		unlock()
		return nil, err
	}
	return &Served{NATS: n, srv: srv, unlock: unlock, URL: srv.URL()}, nil
}

// warnOnly passes on records at slog.LevelWarn and above: the embedded
// server's start-up notices stay out of the job's log.
type warnOnly struct{ slog.Handler }

func (w warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}

func (w warnOnly) WithAttrs(as []slog.Attr) slog.Handler { return warnOnly{w.Handler.WithAttrs(as)} }

func (w warnOnly) WithGroup(g string) slog.Handler { return warnOnly{w.Handler.WithGroup(g)} }

// DialJobBroker connects to the embedded broker job serves for the run of l,
// waiting up to wait for the job to record where it listens.
func DialJobBroker(ctx context.Context, l Layout, job string, wait time.Duration, name, subscriber string, log *slog.Logger) (*Served, error) {
	url, err := brokerURL(ctx, l, job, wait)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", job, err)
	}
	n, err := events.DialNATS(ctx, events.NATSConfig{URLs: []string{url}, TokenFile: l.BrokerToken(), Name: name, Subscriber: subscriber, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("job %s's %w at %s: %v", job, ErrBrokerUnreachable, url, err)
	}
	return &Served{NATS: n, URL: url}, nil
}

// ErrBrokerUnreachable: the run's broker did not answer.
var ErrBrokerUnreachable = errors.New("broker cannot be reached")

// brokerURL waits until the state file says where job's broker listens.
func brokerURL(ctx context.Context, l Layout, job string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		url, err := recordedBroker(l, job)
		if err != nil || url != "" {
			return url, err
		}
		if !time.Now().Before(deadline) {
			return "", fmt.Errorf("%w: the job is running but has not recorded its broker's address within %s (is it still starting? see its log)", ErrBrokerUnreachable, wait)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// recordedBroker reads the broker address job recorded, "" if none yet.
func recordedBroker(l Layout, job string) (string, error) {
	st, err := state.OpenReadOnly(l.State())
	if err != nil {
		return "", err
	}
	defer st.Close()
	js, err := st.Jobs()
	if err != nil {
		return "", err
	}
	for _, j := range js {
		if j.ID == job {
			return j.Broker, nil
		}
	}
	return "", nil
}
