package capture

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseSize reads a size in bytes: a whole number with an optional unit,
// such as 4096, 512KiB, 16MiB, 1GiB (or KB, MB, GB, also powers of 1024).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("expected a positive size such as 4096, 512KiB, 16MiB or 1GiB, got %q", s)
	}
	return n * mult, nil
}
