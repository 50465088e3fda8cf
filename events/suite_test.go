package events_test

import (
	"sync"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/events"
	"github.com/dpsbatch/dpsbatch/events/natstest"
	"github.com/nats-io/nats.go"
)

func TestMemorySuite(t *testing.T) {
	natstest.Run(t, natstest.Harness{
		New:  func(t *testing.T) events.Broker { return events.NewMemory() },
		Peer: func(t *testing.T, b events.Broker) events.Broker { return b },
	})
}

// The NATS broker against a real NATS server (embedded in the test
// process), a new server for each test.
func TestNATSSuite(t *testing.T) {
	var mu sync.Mutex
	urls := map[events.Broker]string{}
	natstest.Run(t, natstest.Harness{
		New: func(t *testing.T) events.Broker {
			srv := natstest.StartServer(t, "")
			b := natstest.Dial(t, srv.URL())
			mu.Lock()
			urls[b] = srv.URL()
			mu.Unlock()
			return b
		},
		Peer: func(t *testing.T, b events.Broker) events.Broker {
			mu.Lock()
			url := urls[b]
			mu.Unlock()
			return natstest.Dial(t, url)
		},
		PublishRaw: func(t *testing.T, b events.Broker, topic, runID string, data []byte) {
			mu.Lock()
			url := urls[b]
			mu.Unlock()
			publishRaw(t, url, "", events.Subject(topic, runID), data)
		},
	})
}

// publishRaw stores data on subject through a plain nats.go connection.
func publishRaw(t *testing.T, url, token, subject string, data []byte) {
	t.Helper()
	nc, err := nats.Connect(url, nats.Token(token))
	if err != nil {
		t.Fatalf("nats.Connect: %v", err)
	}
	defer nc.Close()
	msg, err := nc.Request(subject, data, 5*time.Second)
	if err != nil {
		t.Fatalf("publish raw on %s: %v", subject, err)
	}
	if len(msg.Data) == 0 || msg.Data[0] != '{' {
		t.Fatalf("publish raw on %s: no JetStream ack: %q", subject, msg.Data)
	}
}
