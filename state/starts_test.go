package state

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// A requeued job (Slurm runs it again under the same ID) keeps each start
// on its own, and its own record is its latest start's: no end, reason or
// heartbeat of the start before.
func TestJobStarts(t *testing.T) {
	s, path := newRun(t, "a")
	must(t, s.AddJob(Job{ID: "7", Attempt: 1, Submitted: at(0), State: "SUBMITTED"}))
	must(t, s.JobStarted("7", "n1", at(1)))
	must(t, s.Heartbeat("7", at(5), "a"))
	must(t, s.SetJobBroker("7", "nats://n1:4222"))
	// Slurm's SIGTERM of the requeue reaches rank 0 as a stop.
	must(t, s.JobEnded("7", "STOPPED", 0, "stop requested: terminated", at(6)))

	must(t, s.StartJob("7", 1, "n2", at(20)))
	js, err := s.Jobs()
	must(t, err)
	if len(js) != 1 {
		t.Fatalf("jobs: %+v", js)
	}
	want := Job{ID: "7", Attempt: 1, Submitted: at(0), Started: at(20), State: "SUBMITTED", Host: "n2"}
	if !js[0].Submitted.Equal(want.Submitted) || !js[0].Started.Equal(want.Started) || !js[0].Ended.IsZero() ||
		js[0].State != want.State || js[0].Reason != "" || js[0].Host != "n2" || !js[0].Heartbeat.IsZero() ||
		js[0].HeartbeatVisit != "" || js[0].Broker != "" {
		t.Errorf("the job's record after its second start: %+v, want its new start's only: %+v", js[0], want)
	}
	starts, err := s.JobStarts()
	must(t, err)
	if len(starts) != 2 {
		t.Fatalf("starts: %+v, want 2", starts)
	}
	first, second := starts[0], starts[1]
	if first.Job != "7" || first.Restart != 0 || first.Host != "n1" || !first.Started.Equal(at(1)) || !first.Ended.Equal(at(6)) ||
		first.State != Requeued || !strings.Contains(first.Reason, "requeued") || !strings.Contains(first.Reason, "stop requested: terminated") {
		t.Errorf("first start: %+v, want requeued, ended at 6, keeping what rank 0 recorded in its reason", first)
	}
	if second.Restart != 1 || second.Host != "n2" || !second.Started.Equal(at(20)) || !second.Ended.IsZero() || second.State != "" {
		t.Errorf("second start: %+v", second)
	}

	// Slurm's own word, once asked; then the second start ends.
	must(t, s.SetStartEnd("7", 0, "NODE_FAIL", "", at(7)))
	must(t, s.JobEnded("7", "COMPLETED", 0, "", at(30)))
	starts, err = s.JobStarts()
	must(t, err)
	if starts[0].State != "NODE_FAIL" || !starts[0].Ended.Equal(at(7)) || !strings.Contains(starts[0].Reason, "stop requested") ||
		starts[1].State != "COMPLETED" || !starts[1].Ended.Equal(at(30)) {
		t.Errorf("after Slurm's word and the second end: %+v", starts)
	}
	if err := s.SetStartEnd("7", 5, "NODE_FAIL", "", at(7)); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetStartEnd of a start never recorded: %v, want ErrNotFound", err)
	}
	if err := s.StartJob("8", 1, "n1", at(1)); !errors.Is(err, ErrNotFound) {
		t.Errorf("StartJob of an unknown job: %v, want ErrNotFound", err)
	}

	// A start that died without recording its end ends at its last
	// heartbeat once the job starts again; one with none at its start.
	must(t, s.AddJob(Job{ID: "9", Attempt: 2, Submitted: at(40), State: "SUBMITTED"}))
	must(t, s.StartJob("9", 0, "n3", at(41)))
	must(t, s.Heartbeat("9", at(45), ""))
	must(t, s.StartJob("9", 1, "n3", at(60)))
	must(t, s.StartJob("9", 2, "n4", at(70)))
	starts, err = s.JobStarts()
	must(t, err)
	var got []string
	for _, st := range starts[2:] {
		end := "-"
		if !st.Ended.IsZero() {
			end = st.Ended.Sub(at(0)).String()
		}
		got = append(got, st.Job+" "+st.State+" "+end)
	}
	// Start 1 gave no heartbeat: it ends when it started.
	if want := []string{"9 REQUEUED 45s", "9 REQUEUED 1m0s", "9  -"}; !reflect.DeepEqual(got, want) {
		t.Errorf("starts of job 9: %q, want %q (the last with no end yet)", got, want)
	}

	// Readers see it all.
	ro, err := OpenReadOnly(path)
	must(t, err)
	defer ro.Close()
	if all, err := ro.JobStarts(); err != nil || len(all) != 5 {
		t.Errorf("read-only JobStarts: %d starts, %v", len(all), err)
	}
}

// A file whose job started before starts were recorded keeps that start
// as the job's first.
func TestMigrateJobStarts(t *testing.T) {
	path := oldStateFile(t, 3, `INSERT INTO runs (id, name, created) VALUES ('old', 'three', 1);
		INSERT INTO jobs (id, attempt, submitted, started, ended, state, reason, host) VALUES
			('7', 1, 10, 20, 30, 'STOPPED', 'time limit near', 'n1'),
			('8', 2, 40, 50, NULL, 'SUBMITTED', '', 'n2'),
			('9', 3, 60, NULL, NULL, 'SUBMITTED', '', '');`)
	s, err := Open(path)
	must(t, err)
	defer s.Close()
	starts, err := s.JobStarts()
	must(t, err)
	var got []string
	for _, st := range starts {
		got = append(got, st.Job+" "+st.Host+" "+st.State+" "+st.Reason)
	}
	if want := []string{"7 n1 STOPPED time limit near", "8 n2  "}; !reflect.DeepEqual(got, want) {
		t.Errorf("starts after migrating: %q, want %q", got, want)
	}
}
