package events_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/events/natstest"
	"github.com/dpsbatch/dpsbatch/internal/testenv"
)

// A durable subscription continues where the last one of the same
// subscriber left off, on a new connection (a resumed pipeline): what it
// received is not delivered again, and an old shutdown does not stop it.
func TestNATSDurableSubscriber(t *testing.T) {
	srv := natstest.StartServer(t, "")
	url := []string{srv.URL()}
	producer := natstest.Dial(t, srv.URL())
	publish(t, producer, ev("r1", "v1"), ev("r1", "v2"), ev("r1", "v3"),
		events.Event{Topic: events.TopicControl, RunID: "r1", Kind: events.KindShutdown})

	// A short AckWait: an event received but not acknowledged would come
	// again within the test.
	const ackWait = 200 * time.Millisecond
	first := natstest.DialConfig(t, events.NATSConfig{URLs: url, Subscriber: "pipeline", AckWait: ackWait})
	s := subscribe(t, first, "visits", "r1")
	c := subscribe(t, first, events.TopicControl, "r1")
	if got := visits(t, s, 2); !slices.Equal(got, []string{"v1", "v2"}) {
		t.Fatalf("first run got %q", got)
	}
	if e := next(t, c); e.Kind != events.KindShutdown {
		t.Fatalf("control: %+v", e)
	}
	// One subscription per subscriber, topic and run in a broker.
	if _, err := first.Subscribe(context.Background(), "visits", "r1"); err == nil || !strings.Contains(err.Error(), `subscriber "pipeline" already has a subscription to topic "visits" of run "r1"`) {
		t.Errorf("second Subscribe = %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	publish(t, producer, ev("r1", "v4"))
	again := natstest.DialConfig(t, events.NATSConfig{URLs: url, Subscriber: "pipeline", AckWait: ackWait})
	s = subscribe(t, again, "visits", "r1")
	c = subscribe(t, again, events.TopicControl, "r1")
	if got := visits(t, s, 2); !slices.Equal(got, []string{"v3", "v4"}) {
		t.Errorf("resumed subscription got %q, want v3 v4", got)
	}
	for _, sub := range []events.Subscription{s, c} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*ackWait)
		if e, err := sub.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Next = %+v, %v; want nothing more, not even after AckWait", e, err)
		}
		cancel()
	}

	// Another subscriber, and an ephemeral subscription, start at the
	// beginning.
	other := natstest.DialConfig(t, events.NATSConfig{URLs: url, Subscriber: "watcher"})
	if got := visits(t, subscribe(t, other, "visits", "r1"), 4); !slices.Equal(got, []string{"v1", "v2", "v3", "v4"}) {
		t.Errorf("another subscriber got %q", got)
	}
	if got := visits(t, subscribe(t, producer, "visits", "r1"), 4); !slices.Equal(got, []string{"v1", "v2", "v3", "v4"}) {
		t.Errorf("an ephemeral subscription got %q", got)
	}
}

// An event the server hands to a subscription's pull after its Next was
// cancelled (a pipeline stopped while it waited for a trigger), and which
// the subscription therefore never returned nor acknowledged, is the
// first the next subscription of the same subscriber receives: it does
// not wait out AckWait behind the events published after it.
func TestNATSDurableSubscriberGetsWhatAStoppedWaitMissed(t *testing.T) {
	srv := natstest.StartServer(t, "")
	url := []string{srv.URL()}
	producer := natstest.Dial(t, srv.URL())
	const ackWait = time.Minute // longer than the test: no redelivery helps
	first := natstest.DialConfig(t, events.NATSConfig{URLs: url, Subscriber: "pipeline", AckWait: ackWait})
	s := subscribe(t, first, "visits", "r1")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	if e, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %+v, %v; want the wait cut short", e, err)
	}
	cancel()
	publish(t, producer, ev("r1", "v1")) // into the pull the cut wait left
	time.Sleep(500 * time.Millisecond)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	publish(t, producer, ev("r1", "v2"))
	again := natstest.DialConfig(t, events.NATSConfig{URLs: url, Subscriber: "pipeline", AckWait: ackWait})
	s = subscribe(t, again, "visits", "r1")
	if got := visits(t, s, 2); !slices.Equal(got, []string{"v1", "v2"}) {
		t.Errorf("the next subscription got %q, want v1 v2", got)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if e, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next = %+v, %v; want nothing more", e, err)
	}
}

// A server started again on the same store directory has the events the
// last one stored, and durable subscriptions where they were.
func TestEmbeddedRestartKeepsEvents(t *testing.T) {
	dir := t.TempDir()
	start := func() *events.Embedded {
		e, err := events.StartEmbedded(events.EmbeddedConfig{Dir: dir, Host: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	srv := start()
	b := natstest.DialConfig(t, events.NATSConfig{URLs: []string{srv.URL()}, Subscriber: "pipeline"})
	publish(t, b, ev("r1", "v1"), ev("r1", "v2"), ev("r1", "v3"))
	if got := visits(t, subscribe(t, b, "visits", "r1"), 1); got[0] != "v1" {
		t.Fatalf("got %q", got)
	}
	b.Close()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	srv = start()
	defer srv.Close()
	b = natstest.DialConfig(t, events.NATSConfig{URLs: []string{srv.URL()}, Subscriber: "pipeline"})
	if got := visits(t, subscribe(t, b, "visits", "r1"), 2); !slices.Equal(got, []string{"v2", "v3"}) {
		t.Errorf("after the restart the durable subscription got %q, want v2 v3", got)
	}
	eph := natstest.Dial(t, srv.URL())
	if got := visits(t, subscribe(t, eph, "visits", "r1"), 3); !slices.Equal(got, []string{"v1", "v2", "v3"}) {
		t.Errorf("after the restart a new subscription got %q", got)
	}
}

// A subscription waiting while its server restarts (same store, same
// port) receives what is published after the restart.
func TestNATSSurvivesServerRestart(t *testing.T) {
	dir := t.TempDir()
	srv, err := events.StartEmbedded(events.EmbeddedConfig{Dir: dir, Host: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	_, portStr, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL(), "nats://"))
	port, _ := strconv.Atoi(portStr)
	b := natstest.DialConfig(t, events.NATSConfig{URLs: []string{srv.URL()}, Logger: slog.New(slog.DiscardHandler)})
	s := subscribe(t, b, "visits", "r1")
	publish(t, b, ev("r1", "v1"))
	if got := visits(t, s, 1); got[0] != "v1" {
		t.Fatalf("got %q", got)
	}
	srv.Close()
	srv, err = events.StartEmbedded(events.EmbeddedConfig{Dir: dir, Host: "127.0.0.1", Port: port})
	if err != nil {
		t.Skipf("could not restart on port %d: %v", port, err)
	}
	defer srv.Close()
	producer := natstest.Dial(t, srv.URL())
	publish(t, producer, ev("r1", "v2"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next after the server restarted: %v", err)
	}
	if v, _ := e.Visit(); v != "v2" {
		t.Errorf("got %+v, want v2 (and v1 not again)", e)
	}
}

// An "external" server that wants a token: the Debian nats-server binary
// when it is installed, a second embedded server otherwise. The token
// comes from a file or a variable and never shows in a log or an error.
func TestNATSExternalToken(t *testing.T) {
	const token = "s3cr3t-t0ken-xyzzy"
	url := externalServer(t, token)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("  "+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs testenv.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	b := natstest.DialConfig(t, events.NATSConfig{URLs: []string{url}, TokenFile: tokenFile, Name: "test", Logger: log})
	s := subscribe(t, b, "visits", "r1")
	publish(t, b, ev("r1", "v1"))
	if got := visits(t, s, 1); got[0] != "v1" {
		t.Errorf("got %q", got)
	}
	t.Setenv("DPSBATCH_TEST_NATS_TOKEN", token)
	b2 := natstest.DialConfig(t, events.NATSConfig{URLs: []string{url}, TokenEnv: "DPSBATCH_TEST_NATS_TOKEN", Logger: log})
	if got := visits(t, subscribe(t, b2, "visits", "r1"), 1); got[0] != "v1" {
		t.Errorf("got %q", got)
	}

	// Wrong or no credentials: a clear error without the token.
	wrong := filepath.Join(dir, "wrong")
	os.WriteFile(wrong, []byte(token+"-not"), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := strings.Replace(url, "nats://", "nats://"+token+"@", 1)
	for name, c := range map[string]events.NATSConfig{
		"wrong token":     {URLs: []string{url}, TokenFile: wrong, Logger: log},
		"no token":        {URLs: []string{url}, Logger: log},
		"wrong token URL": {URLs: []string{strings.Replace(url, "nats://", "nats://"+token+"-not@", 1)}, Logger: log},
	} {
		_, err := events.DialNATS(ctx, c)
		if err == nil {
			t.Errorf("%s: DialNATS succeeded", name)
			continue
		}
		if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("%s: error %q does not say authorization failed", name, err)
		}
		if strings.Contains(err.Error(), token) {
			t.Errorf("%s: error shows the token: %v", name, err)
		}
	}
	// The token in the URL works, and is not logged either.
	b3 := natstest.DialConfig(t, events.NATSConfig{URLs: []string{u}, Logger: log})
	publish(t, b3, ev("r1", "v2"))
	b.Close()
	b2.Close()
	b3.Close()
	if logs.String() == "" {
		t.Log("(no client log lines)")
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("the log shows the token:\n%s", logs.String())
	}
}

// externalServer starts a NATS server with JetStream that wants token, as
// a separate process if nats-server is installed, else embedded with its
// own log checked for the token.
func externalServer(t *testing.T, token string) string {
	t.Helper()
	if path, err := exec.LookPath("nats-server"); err == nil {
		url := startBinary(t, path, token)
		t.Logf("external server: %s at %s", path, url)
		return url
	}
	var logs testenv.SyncBuffer
	srv, err := events.StartEmbedded(events.EmbeddedConfig{Dir: t.TempDir(), Host: "127.0.0.1", Token: token,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Close()
		if strings.Contains(logs.String(), token) {
			t.Errorf("the embedded server's log shows the token:\n%s", logs.String())
		}
		if !strings.Contains(logs.String(), "nats-server") {
			t.Errorf("the embedded server logged nothing:\n%s", logs.String())
		}
	})
	t.Logf("external server: a second embedded server at %s (nats-server is not installed)", srv.URL())
	return srv.URL()
}

// startBinary runs the nats-server program at path with JetStream, a
// store in a temporary directory and token (if any), until the test ends.
func startBinary(t *testing.T, path, token string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	args := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", t.TempDir()}
	if token != "" {
		args = append(args, "--auth", token)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	var out testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			c.Close()
			return "nats://127.0.0.1:" + strconv.Itoa(port)
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s did not start:\n%s", path, out.String())
	return ""
}

// The suite against Debian's nats-server program, a separate process, as
// a site's external server would be (apt package nats-server, which
// scripts/cluster.sh installs; .ci/run forbids skipping it).
func TestNATSSuiteExternalBinary(t *testing.T) {
	path, err := exec.LookPath("nats-server")
	if err != nil {
		testenv.SkipOrFail(t, "nats-server is not installed (apt package nats-server; scripts/cluster.sh install)")
	}
	var mu sync.Mutex
	urls := map[events.Broker]string{}
	natstest.Run(t, natstest.Harness{
		New: func(t *testing.T) events.Broker {
			url := startBinary(t, path, "")
			b := natstest.Dial(t, url)
			mu.Lock()
			urls[b] = url
			mu.Unlock()
			return b
		},
		Peer: func(t *testing.T, b events.Broker) events.Broker {
			mu.Lock()
			defer mu.Unlock()
			return natstest.Dial(t, urls[b])
		},
		PublishRaw: func(t *testing.T, b events.Broker, topic, runID string, data []byte) {
			mu.Lock()
			url := urls[b]
			mu.Unlock()
			publishRaw(t, url, "", events.Subject(topic, runID), data)
		},
	})
}

func TestDialNATSErrors(t *testing.T) {
	dir := t.TempDir()
	emptyFile := filepath.Join(dir, "empty")
	os.WriteFile(emptyFile, []byte(" \n"), 0o600)
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "nats://" + l.Addr().String()
	l.Close()
	t.Setenv("DPSBATCH_TEST_EMPTY", "")
	tests := []struct {
		c    events.NATSConfig
		want string
	}{
		{events.NATSConfig{}, "events: NATS: no server URLs"},
		{events.NATSConfig{URLs: []string{closed}, TokenFile: "a", TokenEnv: "B"}, "set at most one of"},
		{events.NATSConfig{URLs: []string{closed}, TokenFile: filepath.Join(dir, "missing")}, "events: NATS token file: open " + filepath.Join(dir, "missing") + ": no such file"},
		{events.NATSConfig{URLs: []string{closed}, TokenFile: emptyFile}, "events: NATS token file " + emptyFile + " is empty"},
		{events.NATSConfig{URLs: []string{closed}, TokenEnv: "DPSBATCH_TEST_EMPTY"}, "events: NATS token variable DPSBATCH_TEST_EMPTY is not set or empty"},
		{events.NATSConfig{URLs: []string{closed}, CredentialsFile: filepath.Join(dir, "x.creds")}, "events: NATS credentials file: stat " + filepath.Join(dir, "x.creds")},
		{events.NATSConfig{URLs: []string{closed}, ConnectTimeout: time.Second}, "events: connect to NATS at " + closed + ": "},
	}
	for _, tt := range tests {
		_, err := events.DialNATS(context.Background(), tt.c)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("DialNATS(%+v) = %v, want %q", tt.c, err, tt.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := events.DialNATS(ctx, events.NATSConfig{URLs: []string{closed}}); !errors.Is(err, context.Canceled) {
		t.Errorf("DialNATS with a cancelled context = %v", err)
	}
}

// Publish refuses what Decode would refuse, with nothing sent.
func TestNATSPublishRefusesBadEvents(t *testing.T) {
	srv := natstest.StartServer(t, "")
	b := natstest.Dial(t, srv.URL())
	for _, tt := range []struct {
		e    events.Event
		want string
	}{
		{events.Event{Topic: "visits", RunID: "r1", Kind: "bogus"}, `events: encode: unknown kind "bogus" (have: data, no-more-data, shutdown)`},
		{events.Event{RunID: "r1"}, "events: encode: the event has no topic"},
		{events.Event{Topic: "visits", Properties: map[string]any{"c": make(chan int)}}, `events: encode properties of an event on "visits": json: unsupported type: chan int`},
	} {
		if err := b.Publish(context.Background(), tt.e); err == nil || err.Error() != tt.want {
			t.Errorf("Publish(%+v) = %v, want %q", tt.e, err, tt.want)
		}
	}
	s := subscribe(t, b, "visits", "r1")
	empty(t, s)
	if n := s.Dropped(); n != 0 {
		t.Errorf("Dropped = %d", n)
	}
}

func TestStartEmbeddedErrors(t *testing.T) {
	if _, err := events.StartEmbedded(events.EmbeddedConfig{}); err == nil || err.Error() != "events: embedded NATS server: no store directory" {
		t.Errorf("no Dir: %v", err)
	}
	srv := natstest.StartServer(t, "")
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL(), "nats://"))
	p, _ := strconv.Atoi(port)
	_, err := events.StartEmbedded(events.EmbeddedConfig{Dir: t.TempDir(), Host: "127.0.0.1", Port: p})
	if err == nil || !strings.Contains(err.Error(), "events: embedded NATS server on 127.0.0.1:"+port) || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("port in use: %v", err)
	}
}

// By default the server listens on every address, and URL names one that
// other hosts can reach.
func TestEmbeddedDefaultHost(t *testing.T) {
	srv, err := events.StartEmbedded(events.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	u := srv.URL()
	if !strings.HasPrefix(u, "nats://") || strings.Contains(u, "0.0.0.0") || strings.Contains(u, ":-1") {
		t.Errorf("URL = %q", u)
	}
	b := natstest.Dial(t, u)
	publish(t, b, ev("r1", "v1"))
	if got := visits(t, subscribe(t, b, "visits", "r1"), 1); got[0] != "v1" {
		t.Errorf("got %q", got)
	}
	t.Logf("URL %s", u)
}

// A malformed message is logged with the reason, by the broker's logger.
func TestNATSLogsDroppedMessages(t *testing.T) {
	srv := natstest.StartServer(t, "")
	var logs testenv.SyncBuffer
	b := natstest.DialConfig(t, events.NATSConfig{URLs: []string{srv.URL()}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	publishRaw(t, srv.URL(), "", events.Subject("visits", "r1"), []byte(`{"v":1,"topic":"visits","kind":"explode"}`))
	publish(t, b, ev("r1", "v1"))
	s := subscribe(t, b, "visits", "r1")
	if got := visits(t, s, 1); got[0] != "v1" {
		t.Errorf("got %q", got)
	}
	if s.Dropped() != 1 || !strings.Contains(logs.String(), `dropped a malformed message`) || !strings.Contains(logs.String(), `unknown kind \"explode\"`) {
		t.Errorf("Dropped = %d, log:\n%s", s.Dropped(), logs.String())
	}
}

// BenchmarkNATSThroughput publishes 10,000 events through an embedded
// server while one subscription receives them, and reports events/s.
func BenchmarkNATSThroughput(b *testing.B) {
	const n = 10000
	srv, err := events.StartEmbedded(events.EmbeddedConfig{Dir: b.TempDir(), Host: "127.0.0.1"})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	pub, err := events.DialNATS(ctx, events.NATSConfig{URLs: []string{srv.URL()}})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	sub, err := events.DialNATS(ctx, events.NATSConfig{URLs: []string{srv.URL()}})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		run := fmt.Sprintf("bench-%d", i)
		s, err := sub.Subscribe(ctx, "visits", run)
		if err != nil {
			b.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() {
			for j := 0; j < n; j++ {
				e := events.Event{Topic: "visits", RunID: run, Properties: map[string]any{events.PropVisit: j, "filter": "r"}}
				if err := pub.Publish(ctx, e); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		for j := 0; j < n; j++ {
			e, err := s.Next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if e.Properties[events.PropVisit] != j {
				b.Fatalf("event %d: %+v", j, e)
			}
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
	el := time.Since(start)
	b.ReportMetric(float64(n*b.N)/el.Seconds(), "events/s")
	b.ReportMetric(float64(el.Microseconds())/float64(n*b.N), "µs/event")
}
