package scheduler

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// This file reads squeue's text output, which Jobs uses instead of squeue
// --json: Slurm 22.05's squeue --json ignores --jobs and --states and
// prints every job slurmctld remembers, about 3 KB each. With 2,500
// remembered jobs on the local cluster, Jobs about four of them took
// 0.34 s through squeue --json (7.9 MB), and 14 ms through the text
// output (1 KB); see BenchmarkJobs.

// squeueFields are the --Format fields of Jobs' squeue, in output order.
// exit_code is only in --Format, not in -o: hence --Format. Name comes
// last only by habit: fields are split by a separator no field can hold
// (see squeueSeparator), not by position.
var squeueFields = []string{
	"JobID",      // the job's own ID, also for array tasks and het components
	"JobArrayID", // 12_3 for array task 3 of job 12; 12_[1-4] for its pending tasks; else the job ID
	"State",      // PENDING, RUNNING, COMPLETED, ... (Slurm's job_state_string)
	"Reason",     // Slurm's description of the reason when it has one, else the reason code
	"exit_code",  // a wait status, exit code << 8 | signal, as in squeue --json
	"SubmitTime", // times are epoch seconds under SLURM_TIME_FORMAT=%s, "N/A" when unset
	"StartTime",
	"EndTime",
	"NodeList",
	"Partition",
	"Name", // free text: any byte but NUL, newlines and "|" included
}

// squeueSeparator returns a new separator for one squeue call: "~" and
// 16 random letters and digits (80 bits). Job names and reasons are free
// text: a job's owner can put any separator fixed in advance, or a
// newline followed by a whole forged line, in its name, and so pass off
// another job's ID with any state (a job named "x|0|COMPLETED|..." under
// a "|" format, for one). A separator drawn for each call cannot be
// guessed. It starts with "~", not a digit or ".", because squeue reads
// the size of a --Format field (FIELD:[.]SIZE SUFFIX) up to the first
// character that is not one, and "," and ":" would end the field.
func squeueSeparator() string {
	return "~" + rand.Text()[:16]
}

// squeueFormat is the --Format argument that prints squeueFields
// unpadded (size 0), each followed by sep: a job is
// "ID<sep>ARRAYID<sep>...<sep>NAME<sep>\n".
func squeueFormat(sep string) string {
	var b strings.Builder
	for i, f := range squeueFields {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(f + ":0" + sep)
	}
	return b.String()
}

// parseSqueueText reads the output of squeue --noheader
// --Format=squeueFormat(sep), with times as epoch seconds
// (SLURM_TIME_FORMAT=%s), or as local ISO 8601 times in loc
// (2006-01-02T15:04:05, squeue's default) should squeue ignore
// SLURM_TIME_FORMAT. Jobs come in squeue's order. It gives the same Job
// as parseSqueue does for squeue --json, but for Reason: squeue prints
// Slurm's description of the reason when there is one (such as
// "ReqNodeNotAvail, UnavailableNodes:n1"), where --json has the code.
func parseSqueueText(out []byte, sep string, loc *time.Location) ([]Job, error) {
	n := len(squeueFields)
	f := strings.Split(string(out), sep)
	// After the last job's last separator comes its newline.
	if rest := f[len(f)-1]; strings.TrimSpace(rest) != "" || (len(f)-1)%n != 0 {
		return nil, fmt.Errorf("scheduler: squeue: want %d fields a job, each ending in %q; got %d (output %s)",
			n, sep, len(f)-1, excerpt(out))
	}
	jobs := make([]Job, 0, (len(f)-1)/n)
	for i := 0; i+n < len(f); i += n {
		r := f[i : i+n]
		// The first field holds the previous job's newline, and any line
		// squeue prints between jobs (CLUSTER: name, with -M).
		id := strings.TrimSpace(r[0][strings.LastIndexByte(r[0], '\n')+1:])
		j, err := squeueJob(id, r[1:], loc)
		if err != nil {
			return nil, fmt.Errorf("scheduler: squeue: output job %d (ID %s): %w", len(jobs)+1, excerpt([]byte(id)), err)
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// squeueJob builds the Job of id and the other fields of squeueFields.
func squeueJob(id string, r []string, loc *time.Location) (Job, error) {
	arrayID, state, why, status, submit, start, end, nodes, partition, name :=
		r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return Job{}, errors.New("the job ID is not a number")
	}
	// An array task is known by its array's ID and its index, as in
	// squeue --json; pending tasks not yet split off (12_[1-4]) by the
	// job ID.
	if base, task, ok := strings.Cut(arrayID, "_"); ok && isDigits(base) && isDigits(task) {
		id = arrayID
	}
	state, _, _ = strings.Cut(strings.TrimSpace(state), " ")
	if state == "" {
		return Job{}, errors.New("no state")
	}
	j := Job{
		ID:        id,
		Name:      name,
		State:     strings.ToUpper(state),
		Reason:    reason(why),
		Nodes:     nodes,
		Partition: partition,
		Source:    "squeue",
	}
	if j.Nodes == "(null)" {
		j.Nodes = ""
	}
	var err error
	if j.ExitCode, j.Signal, err = waitStatus(status); err != nil {
		return Job{}, err
	}
	times := []struct {
		to   *time.Time
		s    string
		keep bool
	}{
		{&j.Submitted, submit, true},
		// Slurm fills start and end times with its expectations before
		// they happen: keep only what did, as parseSqueue does.
		{&j.Started, start, j.State != "PENDING"},
		{&j.Ended, end, !j.Live()},
		{&j.Deadline, end, j.State == "RUNNING"},
	}
	for _, t := range times {
		v, err := squeueTime(t.s, loc)
		if err != nil {
			return Job{}, err
		}
		if t.keep {
			*t.to = v
		}
		if t.to == &j.Started && j.State == "PENDING" {
			j.Expected = v
		}
	}
	return j, nil
}

// waitStatus reads a wait status (exit code << 8 | signal) as squeue
// prints it; "N/A", "" and Slurm's NO_VAL (4294967294, or -2 as a signed
// number) mean none.
func waitStatus(s string) (code, signal int, err error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "N/A" {
		return 0, 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("exit code %q is not a number", s)
	}
	if n < 0 || n >= 0xfffffffe {
		return 0, 0, nil
	}
	return int(n >> 8 & 0xff), int(n & 0x7f), nil
}

// squeueTime reads a time squeue printed: epoch seconds, or a local ISO
// 8601 time in loc; "N/A", "Unknown", "None" and 0 are the zero time.
func squeueTime(s string, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "", "N/A", "Unknown", "None", "NONE":
		return time.Time{}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return epoch(n), nil
	}
	t, err := time.ParseInLocation("2006-01-02T15:04:05", s, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q is neither epoch seconds nor YYYY-MM-DDTHH:MM:SS", s)
	}
	return t, nil
}

func isDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// excerpt quotes the start of b for an error message.
func excerpt(b []byte) string {
	if len(b) > 200 {
		return strconv.Quote(string(b[:200])) + "..."
	}
	return strconv.Quote(string(b))
}
