//go:build !linux

package harness

// pipeBuffered is the number of bytes waiting in the pipe f reads: unknown
// here, so a worker's settle relies on what its stderr reader has read.
func pipeBuffered(f syscallConner) int { return 0 }
