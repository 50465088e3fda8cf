package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// On the local cluster: a stage that fails in a batch job leaves a
// capture per failed data ID, which status --failures names and replay
// runs again to the same error, in one process; submit --freeze-dry
// captures the stage's calls as they start on every rank, and the replay
// of one succeeds.
func TestBatchFailureCaptureReplays(t *testing.T) {
	e := newBatchEnv(t)
	policy, visits := e.twoSlicePipeline("frozen", `  - name: measure
    type: exec
    settings:
      command: [sh, "{pipelinedir}/measure.sh", "{visit}", "{ccd}"]
      produces: [mean]
`, "v001", "v002")
	writeFile(t, filepath.Join(filepath.Dir(policy), "measure.sh"),
		"if [ \"$1\" = v002 ]; then echo \"no sources in $1 $2\" >&2; exit 1; fi\necho '{\"mean\": '$2'}'\n")
	e.must(0, time.Minute, "submit", policy, "--visits", visits, "--name", "frozen", "--freeze-dry", "measure")
	e.cancelAtEnd("frozen")
	e.must(exitPartial, 3*time.Minute, "wait", "frozen", "--interval", "1s")

	var all []struct {
		Dir      string `json:"runDir"`
		Failures []struct {
			Slice   int    `json:"slice"`
			Capture string `json:"capture"`
		} `json:"failures"`
	}
	js := e.must(0, time.Minute, "status", "--failures", "--json", "frozen")
	if err := json.Unmarshal([]byte(js), &all); err != nil || len(all) != 1 {
		t.Fatalf("status --failures --json: %v\n%s", err, js)
	}
	var failed string
	for _, f := range all[0].Failures {
		if f.Slice == 1 {
			failed = f.Capture
		}
	}
	if want := filepath.Join(all[0].Dir, "captures", "visit-v002", "measure.slice1-ccd=1.failed.json"); failed != want {
		t.Fatalf("slice 1's failure points at %q, want %q\n%s", failed, want, js)
	}
	if out := e.must(0, time.Minute, "status", "--failures", "frozen"); !strings.Contains(out, "dpsbatch replay "+failed) {
		t.Errorf("status --failures does not show the capture:\n%s", out)
	}
	out := e.must(exitPartial, time.Minute, "replay", failed)
	if !strings.Contains(out, "failed: ") || !strings.Contains(out, "no sources in v002 1") {
		t.Errorf("replay of the failure:\n%s", out)
	}

	entry := filepath.Join(all[0].Dir, "captures", "visit-v001", "measure.slice2-ccd=2.entry.json")
	if _, err := os.Stat(entry); err != nil {
		t.Fatalf("no entry capture of --freeze-dry measure: %v", err)
	}
	if out := e.must(0, time.Minute, "replay", entry); !strings.Contains(out, "  mean: 2") {
		t.Errorf("replay of an entry capture:\n%s", out)
	}
}
