package state

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

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
