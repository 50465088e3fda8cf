package jobs

import (
	"strings"
	"testing"
)

// TestFailureStringIndentsAProgramsStderr: a program's error ends with
// the end of its stderr, over several lines; status --failures keeps those
// lines under their failure, indented, as the run's summary does, so a
// line of stderr never reads as a failure of its own.
func TestFailureStringIndentsAProgramsStderr(t *testing.T) {
	for _, f := range []Failure{
		{Visit: "1002", Attempt: 1, Stage: "stats", Slice: 2, DataID: "ccd=3", Error: "exec: jq exited with status 4; stderr ends:\nparse error: Unfinished JSON term\nat EOF"},
		{Visit: "1002", Attempt: 1, Error: "stage \"a\": boom\nsecond line", Capture: "/r/captures/visit-1002/a.pipeline.failed.json"},
	} {
		lines := strings.Split(f.String(), "\n")
		for _, l := range lines[1:] {
			if !strings.HasPrefix(l, "      ") {
				t.Errorf("line %q of failure %+v is not indented under it:\n%s", l, f, f.String())
			}
		}
		if !strings.Contains(f.String(), "stderr ends:") && !strings.Contains(f.String(), "boom") {
			t.Errorf("the failure's error is missing:\n%s", f.String())
		}
	}
}
