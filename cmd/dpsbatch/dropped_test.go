package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dpsbatch/dpsbatch/events"
)

// TestBatchDroppedEvents publishes, straight to a running job's broker,
// a message that is no event and a trigger whose visitId is a JSON
// object: the job drops both and runs no visit "map[a:1]"; its summary in
// the Slurm log counts each kind, status --json counts them, and
// dpsbatch events lists them with why.
func TestBatchDroppedEvents(t *testing.T) {
	e := newBatchEnv(t)
	policy, vf := e.slowPipeline("drops", 1, "0.1")
	e.must(0, time.Minute, "submit", policy, "--visits", vf, "--name", "drops-1", "--listen", "--heartbeat", "1s")
	e.waitDone("drops-1", 1, 2*time.Minute)

	var full []struct {
		Dir  string `json:"runDir"`
		Jobs []struct {
			ID     string `json:"id"`
			Broker string `json:"broker"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(e.must(0, time.Minute, "status", "--json", "drops-1")), &full); err != nil || len(full) != 1 || len(full[0].Jobs) != 1 {
		t.Fatalf("status --json: %v %+v", err, full)
	}
	run := full[0]
	token, err := os.ReadFile(filepath.Join(run.Dir, "broker", "token"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(run.Jobs[0].Broker, nats.Token(strings.TrimSpace(string(token))))
	if err != nil {
		t.Fatalf("connecting to the job's broker %s: %v", run.Jobs[0].Broker, err)
	}
	defer nc.Close()
	subject := events.Subject("visits", "drops-1")
	for _, data := range []string{`not json`, `{"v":1,"topic":"visits","run":"drops-1","props":{"visitId":{"a":1}}}`} {
		if _, err := nc.Request(subject, []byte(data), 10*time.Second); err != nil {
			t.Fatalf("publishing %s: %v", data, err)
		}
	}
	e.must(0, time.Minute, "event", "send", "drops-1", "--topic", "visits", "visitId=v002")
	e.waitDone("drops-1", 2, 2*time.Minute)
	e.must(0, time.Minute, "finish", "drops-1")
	e.must(0, 2*time.Minute, "wait", "drops-1", "--interval", "1s")

	var counted []struct {
		Visits        int `json:"visits"`
		DroppedEvents int `json:"droppedEvents"`
	}
	if err := json.Unmarshal([]byte(e.must(0, time.Minute, "status", "--json", "drops-1")), &counted); err != nil || len(counted) != 1 ||
		counted[0].DroppedEvents != 2 || counted[0].Visits != 2 {
		t.Errorf("status --json: %v %+v; want 2 visits and 2 dropped events", err, counted)
	}
	if out := e.must(0, time.Minute, "status", "drops-1"); !strings.Contains(out, "events dropped: 2") {
		t.Errorf("status does not count the dropped events:\n%s", out)
	}
	listed := e.must(0, time.Minute, "events", "drops-1")
	for _, want := range []string{"DROPPED", `(undecodable: events: malformed event: not a JSON object ("not json"))`,
		"(property visitId: expected string or number, got a mapping)"} {
		if !strings.Contains(listed, want) {
			t.Errorf("events lacks %q:\n%s", want, listed)
		}
	}
	log, _ := os.ReadFile(filepath.Join(run.Dir, "logs", "slurm-"+run.Jobs[0].ID+".out"))
	if !strings.Contains(string(log), "1 malformed events dropped; 1 undecodable messages dropped") {
		t.Errorf("the job's summary does not count both drops:\n%s", log)
	}
	if strings.Contains(string(log), "visit=map[a:1]") {
		t.Errorf("a visit map[a:1] ran:\n%s", log)
	}
}
