// Package slurmtime reads and writes durations in Slurm's time format, as
// sbatch --time, sinfo's MaxTime and site files use it: "MM", "MM:SS",
// "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS", and "infinite" or
// "unlimited" (zero, meaning no limit). Go durations such as "90m" or
// "2h30m" are accepted too, since people write them in YAML files.
package slurmtime

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Parse reads a Slurm time limit. Zero means unlimited.
func Parse(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	switch strings.ToLower(t) {
	case "":
		return 0, errors.New("empty time")
	case "infinite", "unlimited":
		return 0, nil
	}
	if d, err := time.ParseDuration(t); err == nil {
		if d < 0 {
			return 0, fmt.Errorf("negative time %q", s)
		}
		return d, nil
	}
	bad := fmt.Errorf("bad time %q: want minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]], a Go duration such as 90m, or infinite", s)
	days := 0
	rest := t
	dayForm := false
	if i := strings.IndexByte(t, '-'); i >= 0 {
		n, err := strconv.Atoi(t[:i])
		if err != nil || n < 0 {
			return 0, bad
		}
		days, rest, dayForm = n, t[i+1:], true
	}
	parts := strings.Split(rest, ":")
	if len(parts) > 3 {
		return 0, bad
	}
	nums := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return 0, bad
		}
		nums[i] = n
	}
	var h, m, sec int
	switch {
	case dayForm && len(nums) == 1:
		h = nums[0]
	case dayForm && len(nums) == 2:
		h, m = nums[0], nums[1]
	case len(nums) == 3:
		h, m, sec = nums[0], nums[1], nums[2]
	case len(nums) == 2:
		m, sec = nums[0], nums[1]
	default:
		m = nums[0]
	}
	return time.Duration(days)*24*time.Hour + time.Duration(h)*time.Hour +
		time.Duration(m)*time.Minute + time.Duration(sec)*time.Second, nil
}

// Format writes d as Slurm's D-HH:MM:SS (HH:MM:SS under a day), rounding
// up to whole seconds; zero is "infinite".
func Format(d time.Duration) string {
	if d <= 0 {
		return "infinite"
	}
	s := int64((d + time.Second - 1) / time.Second)
	days, s := s/86400, s%86400
	h, s := s/3600, s%3600
	m, s := s/60, s%60
	if days > 0 {
		return fmt.Sprintf("%d-%02d:%02d:%02d", days, h, m, s)
	}
	return fmt.Sprintf("%02d:%02d:%02d", h, m, s)
}
