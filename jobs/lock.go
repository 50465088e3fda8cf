package jobs

// The run lock: every command that submits a job for a run holds it while
// it decides and submits, so that two commands never both see the run
// idle and both submit (four resumes started at once left five jobs).
//
// The lock is flock(2) on RUN-DIR/.lock: the kernel releases it when its
// holder dies, however it dies. The holder writes who it is (host, pid,
// command, since when) into the file, for the message a second command
// gives. sbatch inherits the lock while it runs: a command killed while
// sbatch submits leaves the lock held until sbatch is done, so the next
// command finds the job sbatch made (by its name: see settleSubmissions)
// instead of submitting another. Where the run directory's file system
// has no flock (ENOLCK, EOPNOTSUPP, ENOSYS), the lock is a row of the
// state file taken in one immediate transaction (state.TakeLock), freed
// by its holder, by its process's death on the same host, or at the end
// of its lease; sbatch does not hold that one, so a command killed while
// its sbatch runs frees it at once (a job that sbatch then makes is
// still adopted if it is found by name, and a job that starts while
// another runs visits waits for it: see claimRun).

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dpsbatch/dpsbatch/rundir"
	"github.com/dpsbatch/dpsbatch/state"
)

// ErrRunLocked is returned when another command held the run's lock for
// longer than the wait allowed (ResumeOptions.WaitLock).
var ErrRunLocked = errors.New("jobs: the run is locked by another command")

// LockFile is the run lock's file in a run directory.
const LockFile = ".lock"

// DefaultLockWait is how long a command waits for the run's lock before
// it gives up, unless told otherwise (resume --wait-lock).
const DefaultLockWait = 3 * time.Second

// lockLease bounds the state-file lock of a holder on another host that
// died without releasing it.
const lockLease = 10 * time.Minute

// flock is flock(2); a test makes it fail as a file system without flock
// does.
var flock = unix.Flock

// holder is who holds the run's lock, as written in the lock file.
type holder struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Command string    `json:"command"`
	Since   time.Time `json:"since"`
}

func (h holder) String() string {
	s := fmt.Sprintf("pid %d on %s (%s), since %s", h.PID, h.Host, h.Command, h.Since.Format("15:04:05"))
	if me, _ := os.Hostname(); h.Host == me && h.PID > 0 && !alive(h.PID) {
		s += "; that process is gone: a program it started (sbatch) still holds the lock"
	}
	return s
}

// runLock is a held run lock.
type runLock struct {
	f     *os.File // the flocked lock file; nil for the state-file lock
	state string   // the state file holding the lock row
	token string   // the lock row's
}

// lockRun takes the lock of the run in l, waiting up to wait (0:
// DefaultLockWait) while another command holds it, then failing with
// ErrRunLocked naming the holder.
func lockRun(ctx context.Context, l rundir.Layout, wait time.Duration) (*runLock, error) {
	if wait <= 0 {
		wait = DefaultLockWait
	}
	me := self()
	f, err := os.OpenFile(filepath.Join(l.Dir, LockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("jobs: the run's lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		err := flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			if err := writeHolder(f, me); err != nil {
				f.Close()
				return nil, err
			}
			return &runLock{f: f}, nil
		case errors.Is(err, unix.ENOLCK), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
			f.Close()
			return lockState(ctx, l, me, deadline, wait)
		case !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR):
			f.Close()
			return nil, fmt.Errorf("jobs: the run's lock %s: %w", f.Name(), err)
		}
		if time.Now().After(deadline) {
			h := readHolder(f)
			f.Close()
			return nil, lockedError(l, wait, h)
		}
		if err := pause(ctx); err != nil {
			f.Close()
			return nil, err
		}
	}
}

// lockState takes the lock row of the run's state file, for a file
// system without flock.
func lockState(ctx context.Context, l rundir.Layout, me holder, deadline time.Time, wait time.Duration) (*runLock, error) {
	st, err := state.Open(l.State())
	if err != nil {
		return nil, err
	}
	defer st.Close()
	token := rand.Text()
	for {
		now := time.Now()
		h := state.LockHolder{Token: token, Host: me.Host, PID: me.PID, Command: me.Command, Taken: now, Expires: now.Add(lockLease)}
		cur, ok, err := st.TakeLock(h, func(c state.LockHolder) bool { return c.Host == me.Host && !alive(c.PID) })
		if err != nil {
			return nil, err
		}
		if ok {
			return &runLock{state: l.State(), token: token}, nil
		}
		if now.After(deadline) {
			return nil, lockedError(l, wait, holder{Host: cur.Host, PID: cur.PID, Command: cur.Command, Since: cur.Taken})
		}
		if err := pause(ctx); err != nil {
			return nil, err
		}
	}
}

func lockedError(l rundir.Layout, wait time.Duration, h holder) error {
	who := "another command (it wrote no name)"
	if h.PID > 0 {
		who = h.String()
	}
	return fmt.Errorf("%w: run %s: held by %s; waited %s (--wait-lock DURATION waits longer)",
		ErrRunLocked, filepath.Base(l.Dir), who, wait.Round(100*time.Millisecond))
}

func pause(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(50 * time.Millisecond):
		return nil
	}
}

// unlock releases the lock. It is safe on nil.
func (k *runLock) unlock() {
	switch {
	case k == nil:
	case k.f != nil:
		k.f.Truncate(0)
		k.f.Close() // releases the flock, unless sbatch still holds it
	case k.token != "":
		if st, err := state.Open(k.state); err == nil {
			st.ReleaseLock(k.token)
			st.Close()
		}
	}
}

// sharing runs f with the flock inherited by the programs f starts (the
// lock file's descriptor is not closed on exec): if this process dies
// while such a program runs, the lock stays held until that program ends.
func (k *runLock) sharing(f func() error) error {
	if k == nil || k.f == nil {
		return f()
	}
	fd := int(k.f.Fd())
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
		return f()
	}
	defer unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
	return f()
}

// self is this process as a lock holder.
func self() holder {
	host, _ := os.Hostname()
	cmd := strings.Join(append([]string{filepath.Base(os.Args[0])}, os.Args[1:]...), " ")
	if len(cmd) > 200 {
		cmd = cmd[:200] + "..."
	}
	return holder{Host: host, PID: os.Getpid(), Command: cmd, Since: time.Now()}
}

func writeHolder(f *os.File, h holder) error {
	data, _ := json.Marshal(h)
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("jobs: the run's lock: %w", err)
	}
	if _, err := f.WriteAt(append(data, '\n'), 0); err != nil {
		return fmt.Errorf("jobs: the run's lock: %w", err)
	}
	return nil
}

// readHolder reads who holds the lock; the zero holder when the file
// says nothing readable (being written, or by an older dpsbatch).
func readHolder(f *os.File) holder {
	var h holder
	data := make([]byte, 4096)
	n, _ := f.ReadAt(data, 0)
	json.Unmarshal(data[:n], &h)
	return h
}

// alive reports whether process pid exists on this host.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
