package events_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/events/natstest"
	"github.com/dpsbatch/dpsbatch/internal/testenv"
)

// smallFS mounts a tmpfs of size (such as "64m") on a new folder and
// returns it.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	testenv.MountTmpfs(t, dir, "size="+size)
	return dir
}

// TestEmbeddedOnSmallFilesystem starts the embedded broker where its
// events fit but where nats-server's default (75% of the free space, and
// a stream reserving its whole limit) would refuse the stream, and checks
// that a store larger than the free space is refused up front, naming the
// folder, the space free and the space needed.
func TestEmbeddedOnSmallFilesystem(t *testing.T) {
	fs := smallFS(t, "64m")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	srv, err := events.StartEmbedded(events.EmbeddedConfig{Dir: fs + "/ok", Host: "127.0.0.1", MaxStore: 60 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	n, err := events.DialNATS(ctx, events.NATSConfig{URLs: []string{srv.URL()}, MaxBytes: 60 << 20})
	if err != nil {
		t.Fatalf("a 60 MiB stream on a 64 MiB file system: %v", err)
	}
	defer n.Close()
	publish(t, n, ev("r1", "v1"))

	_, err = events.StartEmbedded(events.EmbeddedConfig{Dir: fs + "/big", Host: "127.0.0.1", MaxStore: 1 << 30})
	var se *events.SpaceError
	if !errors.Is(err, events.ErrNoSpace) || !errors.As(err, &se) {
		t.Fatalf("a 1 GiB store on a 64 MiB file system: %v, want ErrNoSpace", err)
	}
	for _, want := range []string{fs + "/big", "free on its file system", "1 GiB needed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if se.Free <= 0 || se.Free > 64<<20 || se.Needed != 1<<30 {
		t.Errorf("free %d, needed %d", se.Free, se.Needed)
	}
}

// TestStreamFullRefusesNew fills a small stream: the event that does not
// fit is refused with ErrStreamFull, and every stored event, the first
// one unread, is still delivered (none is dropped to make room).
func TestStreamFullRefusesNew(t *testing.T) {
	srv, err := events.StartEmbedded(events.EmbeddedConfig{Dir: t.TempDir(), Host: "127.0.0.1", MaxStore: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	n := natstest.DialConfig(t, events.NATSConfig{URLs: []string{srv.URL()}, MaxBytes: 64 << 10})
	ctx := context.Background()
	pad := strings.Repeat("x", 1000)
	stored := 0
	for ; stored < 1000; stored++ {
		e := ev("r1", fmt.Sprintf("v%04d", stored))
		e.Properties["pad"] = pad
		if err = n.Publish(ctx, e); err != nil {
			break
		}
	}
	if !errors.Is(err, events.ErrStreamFull) || stored == 0 {
		t.Fatalf("after %d events: %v, want ErrStreamFull", stored, err)
	}
	got := visits(t, subscribe(t, n, "visits", "r1"), stored)
	if got[0] != "v0000" || got[stored-1] != fmt.Sprintf("v%04d", stored-1) {
		t.Errorf("the full stream delivers %s .. %s, want v0000 .. v%04d", got[0], got[len(got)-1], stored-1)
	}
}
