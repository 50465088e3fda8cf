package harness

import "golang.org/x/sys/unix"

// pipeBuffered is the number of bytes waiting in the pipe f reads (0 when
// unknown).
func pipeBuffered(f syscallConner) int {
	n := 0
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) })
	}
	return n
}
