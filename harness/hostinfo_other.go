//go:build !linux

package harness

// affinityCPUs returns 0 (unknown) where there is no sched_getaffinity:
// thisTask then uses runtime.NumCPU.
func affinityCPUs() int { return 0 }
