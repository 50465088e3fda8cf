package rundir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The rank-0 lock: a job's rank 0 holds an exclusive flock on a file of
// its pipeline's run directory from its start until it ends, and the
// kernel drops the lock when the process dies, however it dies. A reader
// that finds the lock free knows that no rank 0 of the pipeline is alive,
// sooner and more precisely than Slurm can say it: a production's job
// runs on while one of its pipelines' rank 0 has died. The file holds the
// holder's job, host and pid, one line.

// rank0Lock is the rank-0 lock's file.
func (l Layout) rank0Lock() string { return filepath.Join(l.Dir, ".rank0.lock") }

// HoldRank0 takes the rank-0 lock of l for job and returns its release.
// A reader tests the lock for an instant: HoldRank0 tries for up to wait.
// If the lock stays taken (another rank 0 of the pipeline is alive), it
// returns an error saying so.
func HoldRank0(l Layout, job string, wait time.Duration) (release func(), err error) {
	f, err := os.OpenFile(l.rank0Lock(), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("rundir: rank-0 lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || !time.Now().Before(deadline) {
			holder, _ := os.ReadFile(l.rank0Lock())
			f.Close()
			return nil, fmt.Errorf("rundir: rank-0 lock %s (held by %s): %w", l.rank0Lock(), strings.TrimSpace(string(holder)), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	host, _ := os.Hostname()
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "job %s host %s pid %d\n", job, host, os.Getpid())
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// Rank0Gone reports whether no rank 0 of the pipeline in l is alive: its
// rank-0 lock is free. It says so only where the answer is sure: the lock
// file exists (rank 0 of this dpsbatch made it) and its last holder ran
// on this host (a network file system may not share flock between
// hosts). It takes a shared lock for an instant and writes nothing.
func Rank0Gone(l Layout) bool {
	f, err := os.Open(l.rank0Lock())
	if err != nil {
		return false
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if err != nil {
		return false // held, or not known
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	holder := make([]byte, 512)
	n, _ := f.ReadAt(holder, 0)
	host, _ := os.Hostname()
	fields := strings.Fields(string(holder[:n]))
	return host != "" && len(fields) >= 4 && fields[2] == "host" && fields[3] == host
}
