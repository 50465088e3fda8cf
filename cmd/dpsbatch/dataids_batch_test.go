package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// On the cluster, one CCD of a visit fails under failure: {visit:
// never}: wait exits 3, status names the CCD with the end of its
// program's stderr, and resume runs that CCD again, and only it.
func TestBatchFailedDataIDResume(t *testing.T) {
	e := newBatchEnv(t)
	dir := filepath.Join(e.dir, "dataid")
	policy := filepath.Join(dir, "pipeline.yaml")
	// The marks live beside the policy, named by their absolute path: a
	// copy of the policy's folder would not see the mending.
	writeFile(t, policy, fmt.Sprintf(`pipeline: dataid
slices: 2
mapper: {type: range, settings: {key: ccd, from: 1, to: 2}}
locations: {output: "output/{visit}"}
events: {trigger: {topic: visits}}
failure: {visit: never}
stages:
  - name: measure
    type: exec
    settings:
      command: [sh, -c, 'echo "$3" >> "$1/ccd$2.log"; if test -e "$4/broken-$3-$2"; then echo "bad pixels in $2" >&2; exit 1; fi',
                sh, "{output}", "{ccd}", "{visit}", %q]
      results: none
      timeout: 60s
`, dir))
	visits := filepath.Join(dir, "visits.csv")
	writeFile(t, visits, "visitId\nv001\nv002\nv003\n")
	broken := filepath.Join(dir, "broken-v002-2")
	writeFile(t, broken, "")

	e.cancelAtEnd("dataid-1")
	e.must(0, time.Minute, "submit", policy, "--visits", visits, "--name", "dataid-1")
	_, errOut, code := e.dps(3*time.Minute, "wait", "dataid-1", "--interval", "1s")
	if code != exitPartial || !strings.Contains(errOut, "1 data IDs failed") {
		t.Fatalf("wait: exit %d, want %d naming the failed data ID\n%s", code, exitPartial, errOut)
	}
	text := e.must(0, time.Minute, "status", "dataid-1")
	for _, want := range []string{"visits: 3 (3 done)", "data IDs: 5 done, 1 failed", "visit v002 data ID ccd=2 (attempt 1) stage measure:",
		"bad pixels in 2"} {
		if !strings.Contains(text, want) {
			t.Errorf("status lacks %q:\n%s", want, text)
		}
	}
	var all []struct {
		Outcome       string         `json:"outcome"`
		Dir           string         `json:"runDir"`
		DataIDs       map[string]int `json:"dataIds"`
		FailedDataIDs []struct {
			Visit  string `json:"visit"`
			DataID string `json:"dataId"`
			Error  string `json:"error"`
		} `json:"failedDataIds"`
	}
	out := e.must(0, time.Minute, "status", "--json", "dataid-1")
	if err := json.Unmarshal([]byte(out), &all); err != nil || len(all) != 1 {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	st := all[0]
	// (The job may still be completing in Slurm's eyes: running, not yet
	// failed; never done.)
	if st.Outcome == "done" || st.DataIDs["failed"] != 1 || len(st.FailedDataIDs) != 1 || st.FailedDataIDs[0].Visit != "v002" ||
		st.FailedDataIDs[0].DataID != "ccd=2" || !strings.Contains(st.FailedDataIDs[0].Error, "bad pixels in 2") {
		t.Errorf("status --json: %+v", st)
	}

	// Mended, the CCD runs again on resume, and nothing else does.
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	if out := e.must(0, time.Minute, "resume", "dataid-1"); !strings.Contains(out, "attempt 2") {
		t.Errorf("resume:\n%s", out)
	}
	e.must(0, 3*time.Minute, "wait", "dataid-1", "--interval", "1s")
	for v := 1; v <= 3; v++ {
		for ccd := 1; ccd <= 2; ccd++ {
			want := 1
			if v == 2 && ccd == 2 {
				want = 2
			}
			log, err := os.ReadFile(filepath.Join(st.Dir, "output", fmt.Sprintf("v%03d", v), fmt.Sprintf("ccd%d.log", ccd)))
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(log), "\n"); n != want {
				t.Errorf("v%03d ccd %d ran %d times, want %d", v, ccd, n, want)
			}
		}
	}
	if text := e.must(0, time.Minute, "status", "dataid-1"); !strings.Contains(text, "data IDs: 6 done\n") || strings.Contains(text, "failed data IDs") {
		t.Errorf("status after resume:\n%s", text)
	}
}
