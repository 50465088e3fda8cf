package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A visit file written by hand (comments, indented ones too, white space
// around IDs) runs on the cluster as validate and submit read it: the job
// reads the run's copy back with the same visit IDs. A visit ID that could
// leave the run directory is refused at submit, naming the line, and
// nothing is created.
func TestBatchVisitFileRules(t *testing.T) {
	e := newBatchEnv(t)
	policy := filepath.Join(e.dir, "pipeline.yaml")
	files := map[string]string{
		"hand.csv":   "# tonight's visits\nvisitId,filter,exptime\n  # 1000 is tomorrow's\n1001,r,30\n\"1002 \",g,30\n\t# the last one\n 1003,i,15\n",
		"hand.jsonl": "# tonight's visits\n  # indented\n{\"visitId\": 1001, \"filter\": \"r\", \"exptime\": 30}\n{\"visitId\": \" 1002\", \"filter\": \"g\", \"exptime\": 30}\n\n{\"visitId\": \"1003\", \"filter\": \"i\", \"exptime\": 15}\n",
	}
	for name, text := range files {
		path := filepath.Join(e.dir, name)
		writeFile(t, path, text)
		if out := e.must(0, time.Minute, "validate", policy, "--visits", path); !strings.Contains(out, "valid (3 visits; ") {
			t.Errorf("validate %s:\n%s", name, out)
		}
		run := "hand-" + strings.TrimPrefix(filepath.Ext(name), ".")
		e.must(0, time.Minute, "submit", policy, "--visits", path, "--name", run, "--slices", "2")
		e.dps(3*time.Minute, "wait", run, "--interval", "1s")
		if st := e.status(run); st.Counts["done"] != 3 || st.Visits != 3 {
			t.Errorf("%s: status after the run: %+v", name, st)
		}
	}

	bad := filepath.Join(e.dir, "bad.csv")
	writeFile(t, bad, "visitId,filter,exptime\n1001,r,30\n../../..,g,30\n")
	_, errOut, code := e.dps(time.Minute, "submit", policy, "--visits", bad, "--name", "bad-ids")
	if code != 2 || !strings.Contains(errOut, bad+`:3: visitId: visit ID "../../.." contains '/'`) {
		t.Errorf("submit with a visit ID climbing out: exit %d\n%s", code, errOut)
	}
	if _, _, code := e.dps(time.Minute, "status", "bad-ids"); code == 0 {
		t.Errorf("a run was created for a refused visit file")
	}
}
