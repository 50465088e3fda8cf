package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedConfig says where an embedded NATS server keeps its events and
// where it listens.
type EmbeddedConfig struct {
	Dir    string       // JetStream store directory, e.g. RUN-DIR/broker; required
	Host   string       // listen address; default 0.0.0.0, so other nodes can connect
	Port   int          // 0 picks a free port
	Token  string       // if set, clients must present it; never logged
	Logger *slog.Logger // the server's notices, warnings and errors; nil for none
	// MaxStore is the most the server's JetStream stores, in bytes;
	// default DefaultMaxBytes. Give the stream the same MaxBytes
	// (NATSConfig). Without it the server takes 75% of the free space and
	// refuses a stream larger than that, whatever the events need: it
	// reserves a stream's MaxBytes, but only takes what the events take.
	MaxStore int64
}

// Embedded is a NATS server with JetStream running in this process: the
// default broker of a batch run, with nothing to install. Its store lives
// in Dir, so a server started again on the same Dir has every event the
// last one stored (within the stream's limits). Clients reach it with
// DialNATS at URL().
//
// Published events are written to the store's files before Publish
// returns; they survive this process being killed, and reach the disk
// within the server's sync interval (a power cut may lose the last ones).
type Embedded struct {
	srv  *server.Server
	url  string
	once sync.Once
}

// StartEmbedded starts a server and returns once it accepts connections
// with JetStream enabled. Close stops it. It first checks that the
// store's file system has room for MaxStore less what the store holds
// (CheckStoreSpace): an error matching ErrNoSpace names the folder, the
// space free and the space needed.
func StartEmbedded(c EmbeddedConfig) (*Embedded, error) {
	if c.Dir == "" {
		return nil, errors.New("events: embedded NATS server: no store directory")
	}
	maxStore := or(c.MaxStore, DefaultMaxBytes)
	if err := CheckStoreSpace(c.Dir, maxStore); err != nil {
		return nil, err
	}
	host := c.Host
	if host == "" {
		host = "0.0.0.0"
	}
	port := c.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName:        "dpsbatch",
		Host:              host,
		Port:              port,
		JetStream:         true,
		StoreDir:          c.Dir,
		JetStreamMaxStore: maxStore,
		Authorization:     c.Token,
		NoSigs:            true,
		// No HTTP monitoring, no cluster, no leaf nodes: clients only.
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("events: embedded NATS server: %w", err)
	}
	lg := &serverLog{log: c.Logger, secret: c.Token}
	srv.SetLoggerV2(lg, false, false, false)
	srv.Start()
	ready := false
	for deadline := time.Now().Add(10 * time.Second); !ready && time.Now().Before(deadline) && !lg.fatal(); {
		ready = srv.ReadyForConnections(50 * time.Millisecond)
	}
	if !ready {
		srv.Shutdown()
		srv.WaitForShutdown()
		if why := lg.lastError(); why != "" {
			return nil, fmt.Errorf("events: embedded NATS server on %s: %s", net.JoinHostPort(host, strconv.Itoa(c.Port)), why)
		}
		return nil, fmt.Errorf("events: embedded NATS server on %s: not accepting connections after 10s", net.JoinHostPort(host, strconv.Itoa(c.Port)))
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		why := lg.lastError()
		if why == "" {
			why = "JetStream did not start"
		}
		return nil, fmt.Errorf("events: embedded NATS server, store %s: %s", c.Dir, why)
	}
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		srv.Shutdown()
		return nil, errors.New("events: embedded NATS server: no TCP address")
	}
	return &Embedded{srv: srv, url: "nats://" + net.JoinHostPort(advertise(host), strconv.Itoa(addr.Port))}, nil
}

// URL is the address clients connect to: nats://host:port, where host is
// the listen address, or for a wildcard address (0.0.0.0, ::) this host's
// first non-loopback IPv4 address (127.0.0.1 when it has none). It holds no
// token.
func (e *Embedded) URL() string { return e.url }

// Clients is the number of client connections the server has now.
func (e *Embedded) Clients() int { return e.srv.NumClients() }

// Close stops the server and waits until it has stopped, its store closed.
// Clients see their connection drop. It may be called more than once.
func (e *Embedded) Close() error {
	e.once.Do(func() {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
	})
	return nil
}

// advertise returns the address other hosts reach a server listening on
// host at.
func advertise(host string) string {
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsUnspecified() {
		return host
	}
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// serverLog passes the server's log to an slog.Logger (debug and trace
// are off), keeps the last error to explain a failed start, and never lets
// the server exit the process: Fatalf logs an error.
type serverLog struct {
	log    *slog.Logger
	secret string

	mu       sync.Mutex
	last     string
	hadFatal bool
}

func (l *serverLog) emit(level slog.Level, format string, v []any) {
	l.emitFatal(level, false, format, v)
}

func (l *serverLog) emitFatal(level slog.Level, fatal bool, format string, v []any) {
	msg := fmt.Sprintf(format, v...)
	if l.secret != "" {
		msg = redactString(msg, l.secret)
	}
	if level >= slog.LevelError {
		l.mu.Lock()
		l.last = msg
		l.hadFatal = l.hadFatal || fatal
		l.mu.Unlock()
	}
	if l.log != nil {
		l.log.Log(context.Background(), level, "nats-server: "+msg)
	}
}

// fatal reports whether the server has given up (a start that cannot
// succeed, such as a port in use).
func (l *serverLog) fatal() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hadFatal
}

func (l *serverLog) lastError() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

func (l *serverLog) Noticef(format string, v ...any) { l.emit(slog.LevelInfo, format, v) }
func (l *serverLog) Warnf(format string, v ...any)   { l.emit(slog.LevelWarn, format, v) }
func (l *serverLog) Fatalf(format string, v ...any)  { l.emitFatal(slog.LevelError, true, format, v) }
func (l *serverLog) Errorf(format string, v ...any)  { l.emit(slog.LevelError, format, v) }
func (l *serverLog) Debugf(format string, v ...any)  {}
func (l *serverLog) Tracef(format string, v ...any)  {}

var _ server.Logger = (*serverLog)(nil)
