package state

import (
	"errors"
	"testing"
	"time"
)

// A submission recorded before sbatch gets its job once known (by its
// submitter, or by a job that finds no row of its own), or is voided; the
// next attempt counts every submission that may have become a job.
func TestSubmissions(t *testing.T) {
	s, _ := newRun(t, "a")
	next := func(want int) {
		t.Helper()
		if n, err := s.NextAttempt(); err != nil || n != want {
			t.Errorf("NextAttempt = %d, %v; want %d", n, err, want)
		}
	}
	next(1)
	must(t, s.RecordSubmission(Submission{Token: "a1-x", Attempt: 1, Name: "r1:a1-x", Recorded: at(1)}))
	if err := s.RecordSubmission(Submission{Token: "a1-x", Attempt: 1, Name: "r1:a1-x", Recorded: at(1)}); !errors.Is(err, ErrExists) {
		t.Errorf("the same token twice: %v; want ErrExists", err)
	}
	next(2) // the submission may have become a job
	must(t, s.VoidSubmission("a1-x", "sbatch refused it"))
	next(1) // a void one frees its number
	must(t, s.RecordSubmission(Submission{Token: "a1-y", Attempt: 1, Name: "r1:a1-y", Recorded: at(2)}))
	if added, err := s.AdoptJob("a1-y", Job{ID: "7", Submitted: at(3), State: "SUBMITTED"}); err != nil || !added {
		t.Fatalf("AdoptJob: %v, %v", added, err)
	}
	// Adopting it again (the job recording itself too) keeps the row.
	if added, err := s.AdoptJob("a1-y", Job{ID: "7", Attempt: 1, Started: at(4)}); err != nil || added {
		t.Errorf("AdoptJob again: %v, %v; want no new row", added, err)
	}
	must(t, s.VoidSubmission("a1-y", "late")) // a submission with a job stays
	subs, err := s.Submissions()
	must(t, err)
	if len(subs) != 2 || subs[0].Void != "sbatch refused it" || subs[1].Job != "7" || subs[1].Void != "" || !subs[1].Recorded.Equal(at(2)) {
		t.Errorf("submissions %+v", subs)
	}
	js, err := s.Jobs()
	must(t, err)
	if len(js) != 1 || js[0].ID != "7" || js[0].Attempt != 1 || !js[0].Started.IsZero() {
		t.Errorf("jobs %+v; want 7 as attempt 1, as first recorded", js)
	}
	next(2)
	// A job with neither a submission nor an attempt is not recorded.
	if _, err := s.AdoptJob("", Job{ID: "8"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("AdoptJob of nothing: %v; want ErrNotFound", err)
	}
	if _, err := s.AdoptJob("nope", Job{ID: "8", Attempt: 2}); err != nil {
		t.Errorf("AdoptJob with an attempt: %v", err)
	}
	next(3)
}

// The lock row: one holder at a time, taken over once expired or stale,
// released only by its holder's token.
func TestLockRow(t *testing.T) {
	s, _ := newRun(t)
	now := time.Now()
	a := LockHolder{Token: "a", Host: "h", PID: 1, Command: "resume", Taken: now, Expires: now.Add(time.Minute)}
	b := LockHolder{Token: "b", Host: "h", PID: 2, Command: "resume", Taken: now, Expires: now.Add(time.Minute)}
	if cur, ok, err := s.TakeLock(a, nil); err != nil || !ok || cur.Token != "a" {
		t.Fatalf("TakeLock(a) = %+v, %v, %v", cur, ok, err)
	}
	if cur, ok, err := s.TakeLock(b, nil); err != nil || ok || cur.Token != "a" || cur.PID != 1 || cur.Command != "resume" {
		t.Fatalf("TakeLock(b) while a holds it = %+v, %v, %v; want a named", cur, ok, err)
	}
	must(t, s.ReleaseLock("b")) // not b's: a keeps it
	if _, ok, _ := s.TakeLock(b, nil); ok {
		t.Fatal("b took the lock a holds after b's release")
	}
	if _, ok, _ := s.TakeLock(b, func(h LockHolder) bool { return h.PID == 1 }); !ok {
		t.Fatal("b did not take over a stale holder's lock")
	}
	must(t, s.ReleaseLock("b"))
	if _, ok, _ := s.TakeLock(a, nil); !ok {
		t.Fatal("a did not take the free lock")
	}
	late := b
	late.Taken = now.Add(2 * time.Minute)
	if _, ok, _ := s.TakeLock(late, nil); !ok {
		t.Fatal("b did not take over a lock past its lease")
	}
}
