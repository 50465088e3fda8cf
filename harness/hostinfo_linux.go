package harness

import "golang.org/x/sys/unix"

// affinityCPUs counts the CPUs this process may run on, or returns 0.
func affinityCPUs() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0
	}
	return set.Count()
}
