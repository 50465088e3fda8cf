package scheduler

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// testSeparator is the separator squeue-capture.sh captured
// testdata/squeue-text.txt with.
const testSeparator = "~TESTSEPARATOR2K7Q"

// TestParseSqueueText reads the text squeue printed for sixteen jobs
// (testdata/squeue-capture.sh: every state Jobs meets, arrays, hostile
// names) and checks that every Job is the one squeue --json gave for it at
// the same moment, and what some of them are.
func TestParseSqueueText(t *testing.T) {
	jobs, err := parseSqueueText(readTestdata(t, "squeue-text.txt"), testSeparator, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := parseSqueue(readTestdata(t, "squeue-text.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 16 || len(fromJSON) != 16 {
		t.Fatalf("%d jobs from the text, %d from the JSON; want 16 each", len(jobs), len(fromJSON))
	}
	byID := map[string]Job{}
	for _, j := range jobs {
		if _, dup := byID[j.ID]; dup {
			t.Errorf("job %s twice", j.ID)
		}
		byID[j.ID] = j
	}
	for _, want := range fromJSON {
		if got, ok := byID[want.ID]; !ok {
			t.Errorf("job %s (%q) of squeue --json: not in the text", want.ID, want.Name)
		} else if got != want {
			t.Errorf("job %s\n text %+v\n JSON %+v", want.ID, got, want)
		}
	}

	const sub, start = 1795452332, 1795452332
	for _, want := range []Job{
		{ID: "6384", Name: "cap-fail", State: "FAILED", Reason: "NonZeroExitCode", ExitCode: 3,
			Submitted: at(sub), Started: at(start), Ended: at(start), Nodes: "n1", Partition: "debug", Source: "squeue"},
		{ID: "6385", Name: "cap-killed", State: "FAILED", Reason: "JobLaunchFailure", Signal: 9,
			Submitted: at(sub), Started: at(start), Ended: at(start), Nodes: "n1", Partition: "debug", Source: "squeue"},
		{ID: "6386", Name: "cap-running", State: "RUNNING", Submitted: at(sub), Started: at(start), Deadline: at(start + 120),
			Nodes: "n2", Partition: "debug", Source: "squeue"},
		{ID: "6388", Name: "cap|pending", State: "PENDING", Reason: "Dependency", Submitted: at(sub), Partition: "debug", Source: "squeue"},
		// An array's tasks not yet split off go by the array's job ID.
		{ID: "6389", Name: "cap-array", State: "PENDING", Reason: "Dependency", Submitted: at(sub), Partition: "debug", Source: "squeue"},
		{ID: "6390", Name: "cap-held\n1~QWERTYUIOPASDFGH1~QWERTYUIOPASDFGHCOMPLETED|None|0", State: "PENDING", Reason: "JobHeldUser",
			Submitted: at(sub), Partition: "debug", Source: "squeue"},
	} {
		if got := byID[want.ID]; got != want {
			t.Errorf("job %s\n got %+v\nwant %+v", want.ID, got, want)
		}
	}
	if j := byID["6387"]; j.State != "CANCELLED" || j.Signal != 15 || j.Ended.IsZero() {
		t.Errorf("job 6387 %+v, want CANCELLED by signal 15, with an end", j)
	}
	// Array tasks go by ARRAY_TASK, whatever their own job ID.
	for _, id := range []string{"6391_1", "6391_2"} {
		if j := byID[id]; j.State != "COMPLETED" || j.Name != "cap-done-array" {
			t.Errorf("array task %s: %+v, want COMPLETED cap-done-array", id, j)
		}
	}
	names := map[string]string{"6392": "sp ace\tand tab", "6393": "ünïcødé 🙂", "6394": "", "6395": "%j%i,:0~X",
		"6396": "~QWERTYUIOPASDFGH", "6397": "trailing-newline\n"}
	for id, name := range names {
		if j := byID[id]; j.Name != name || j.State != "COMPLETED" {
			t.Errorf("job %s: name %q, state %s; want %q, COMPLETED", id, j.Name, j.State, name)
		}
	}
	if _, ok := byID["1"]; ok {
		t.Error("a job name's forged record became job 1")
	}
}

// A record of squeueFields in the order of squeue's output, with sep.
func squeueRecord(sep string, fields ...string) string {
	return strings.Join(fields, sep) + sep + "\n"
}

func TestParseSqueueTextCases(t *testing.T) {
	const sep = "~ABCDEFGHIJKLMNOP"
	rec := func(f ...string) string { return squeueRecord(sep, f...) }
	paris := time.FixedZone("CET", 3600)

	jobs, err := parseSqueueText(nil, sep, time.UTC)
	if err != nil || len(jobs) != 0 {
		t.Errorf("no output: %v, %v; want no jobs", jobs, err)
	}

	// squeue's default ISO times are local: read in the location given.
	// NO_VAL exit codes are none; "(null)" nodes none; a line squeue
	// prints between jobs (CLUSTER: with -M) is skipped.
	out := "CLUSTER: dps\n" +
		rec("7", "7", "COMPLETING", "None", "4294967294", "2026-11-23T16:43:11", "2026-11-23T16:43:12", "2026-11-23T16:43:13", "(null)", "debug", "a") +
		"CLUSTER: other\n" +
		rec("8", "8", "TIMEOUT", "TimeLimit", "N/A", "1795452191", "Unknown", "None", "n[1-2]", "debug,long", "b") +
		// A requeued job waits for its begin time: its start is expected.
		rec("9", "9", "PENDING", "BeginTime", "0", "1795452191", "1795452311", "Unknown", "", "debug", "c")
	jobs, err = parseSqueueText([]byte(out), sep, paris)
	if err != nil {
		t.Fatal(err)
	}
	want := []Job{
		{ID: "7", Name: "a", State: "COMPLETING", Submitted: time.Date(2026, 11, 23, 16, 43, 11, 0, paris),
			Started: time.Date(2026, 11, 23, 16, 43, 12, 0, paris), Partition: "debug", Source: "squeue"},
		{ID: "8", Name: "b", State: "TIMEOUT", Reason: "TimeLimit", Submitted: at(1795452191), Nodes: "n[1-2]",
			Partition: "debug,long", Source: "squeue"},
		{ID: "9", Name: "c", State: "PENDING", Reason: "BeginTime", Submitted: at(1795452191), Expected: at(1795452311),
			Partition: "debug", Source: "squeue"},
	}
	checkJobs(t, jobs, want)
	if jobs[0].Submitted.Unix() != time.Date(2026, 11, 23, 15, 43, 11, 0, time.UTC).Unix() {
		t.Errorf("16:43:11 CET read as %v, want 15:43:11 UTC", jobs[0].Submitted.UTC())
	}

	good := rec("9", "9", "RUNNING", "None", "0", "1", "2", "3", "n1", "debug", "c")
	for _, tc := range []struct{ name, out, want string }{
		{"other separator", strings.ReplaceAll(good, sep, "|"), "scheduler: squeue: want 11 fields a job, each ending in \"~ABCDEFGHIJKLMNOP\"; got 0"},
		{"a field short", rec("9", "9", "RUNNING", "None", "0", "1", "2", "3", "n1", "c"), "got 10"},
		{"text after the last job", good + "squeue: error: oops\n", "got 11 (output"},
		{"ID not a number", strings.Replace(good, "9", "x9", 1), `output job 1 (ID "x9"): the job ID is not a number`},
		{"no state", good + rec("10", "10", " ", "None", "0", "1", "2", "3", "n1", "debug", "c"), `output job 2 (ID "10"): no state`},
		{"bad exit code", strings.Replace(good, sep+"0"+sep, sep+"zero"+sep, 1), `exit code "zero" is not a number`},
		{"bad time", strings.Replace(good, sep+"2"+sep, sep+"yesterday"+sep, 1), `time "yesterday" is neither epoch seconds nor YYYY-MM-DDTHH:MM:SS`},
	} {
		jobs, err := parseSqueueText([]byte(tc.out), sep, time.UTC)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, %v; want an error containing %q", tc.name, jobs, err, tc.want)
		}
	}
}

func TestWaitStatus(t *testing.T) {
	for s, want := range map[string][2]int{
		"0": {0, 0}, "768": {3, 0}, "9": {0, 9}, "15": {0, 15}, "33280": {130, 0}, "": {0, 0}, "N/A": {0, 0}, "4294967294": {0, 0}, "-2": {0, 0},
	} {
		code, sig, err := waitStatus(s)
		if err != nil || code != want[0] || sig != want[1] {
			t.Errorf("waitStatus(%q) = %d, %d, %v; want %d, %d", s, code, sig, err, want[0], want[1])
		}
	}
}

func TestSqueueSeparator(t *testing.T) {
	form := regexp.MustCompile(`^~[A-Z2-7]{16}$`)
	a, b := squeueSeparator(), squeueSeparator()
	if !form.MatchString(a) || !form.MatchString(b) || a == b {
		t.Errorf("separators %q and %q: want two different ones matching %s", a, b, form)
	}
	const sep = "~ABCDEFGHIJKLMNOP"
	want := "JobID:0" + sep + ",JobArrayID:0" + sep + ",State:0" + sep + ",Reason:0" + sep + ",exit_code:0" + sep +
		",SubmitTime:0" + sep + ",StartTime:0" + sep + ",EndTime:0" + sep + ",NodeList:0" + sep + ",Partition:0" + sep + ",Name:0" + sep
	if got := squeueFormat(sep); got != want {
		t.Errorf("squeueFormat\n got %s\nwant %s", got, want)
	}
}
