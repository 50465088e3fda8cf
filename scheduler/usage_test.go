package scheduler

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testdata/sacct-usage.txt is sacct's answer on the local cluster for job
// 2563 (a batch script, then a step of two tasks of about 130 MiB each)
// and 2567 (running), with two made-up lines: 2568 cancelled while
// pending (no start, no step) and 2569 whose end accounting holds before
// its start (Slurm 22.05 names such a job "allocation" for a few seconds).
func TestParseUsage(t *testing.T) {
	out, err := os.ReadFile("testdata/sacct-usage.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseUsage(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := job2563(); !reflect.DeepEqual(got["2563"], want) {
		t.Errorf("2563:\n%+v\nwant\n%+v", got["2563"], want)
	}
	if u := got["2567"]; u.Final || len(u.Steps) != 2 || u.ReqMemMB != 2000 {
		t.Errorf("running job 2567: %+v, want not final, two steps, 2000 MB asked", u)
	}
	if u := got["2568"]; !u.Final || u.State != "CANCELLED" || len(u.Steps) != 0 {
		t.Errorf("job 2568 cancelled while pending: %+v, want final with no step", u)
	}
	u := got["2569"]
	if u.Final {
		t.Errorf("job 2569, ended without a start yet: final")
	}
	if s := u.Steps[0]; s.CPU != 26*time.Hour+3*time.Minute+4*time.Second || s.MaxRSS != 5<<29 || s.MaxRSSNode != "n2" {
		t.Errorf("2569.batch %+v, want 1-02:03:04 of CPU and 2.5 GiB on n2", s)
	}
	if _, err := parseUsage([]byte("1|COMPLETED|1|1|12.5|1|1M||||x\n")); err == nil || !strings.Contains(err.Error(), "TotalCPU") {
		t.Errorf("a TotalCPU that is not one: %v", err)
	}
}

// job2563 is what both backends read of job 2563.
func job2563() Usage {
	return Usage{Job: "2563", State: "COMPLETED", Final: true, Elapsed: 7 * time.Second, CPUs: 2, ReqMemMB: 200,
		Steps: []StepUsage{
			{Step: "batch", Name: "batch", State: "COMPLETED", Elapsed: 7 * time.Second, CPU: 559 * time.Millisecond, Tasks: 1},
			{Step: "0", Name: "python3", State: "COMPLETED", Elapsed: 5 * time.Second, CPU: 5621 * time.Millisecond, Tasks: 2,
				MaxRSS: 136172 << 10, MaxRSSNode: "n1"},
		}}
}

// The REST backend reads slurmrestd's record of job 2563 (recorded on the
// local cluster beside sacct's) as the CLI backend reads sacct's, and a
// running job as not final.
func TestRESTUsage(t *testing.T) {
	answers := map[string]string{}
	for path, file := range map[string]string{
		"/openapi/v3":                  "openapi.200.json",
		"/slurmdb/v0.0.38/job/2563":    "dbjob-usage.200.json",
		"/slurmdb/v0.0.38/job/2567":    "dbjob-running.200.json",
		"/slurmdb/v0.0.38/job/9999999": "dbjob-unknown.200.json",
	} {
		b, err := os.ReadFile("slurmrest/testdata/" + file)
		if err != nil {
			t.Fatal(err)
		}
		answers[path] = string(b)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(answers[r.URL.Path]))
	}))
	t.Cleanup(srv.Close)
	t.Setenv("TEST_SLURM_JWT", "x.y.z")
	r, err := NewREST(RESTOptions{URL: srv.URL, TokenEnv: "TEST_SLURM_JWT", User: "tester"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Usage(context.Background(), []string{"2563", "2567", "9999999"})
	if err != nil {
		t.Fatal(err)
	}
	if want := job2563(); !reflect.DeepEqual(got["2563"], want) {
		t.Errorf("2563:\n%+v\nwant\n%+v", got["2563"], want)
	}
	if u, ok := got["2567"]; !ok || u.Final {
		t.Errorf("running job 2567: %+v, want not final", u)
	}
	if _, ok := got["9999999"]; ok || len(got) != 2 {
		t.Errorf("usage %+v, want 2563 and 2567 only", got)
	}
}

func TestSacctPrecision(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{
		5621401 * time.Microsecond:                       5621 * time.Millisecond,
		time.Hour + 2*time.Second + 999*time.Millisecond: time.Hour + 2*time.Second,
	} {
		if got := sacctPrecision(in); got != want {
			t.Errorf("sacctPrecision(%v) = %v, want %v", in, got, want)
		}
	}
}
