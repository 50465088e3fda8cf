package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/internal/conf"
)

// ExitCode gives each exit status for the errors that mean it, wrapped or
// not, ExitOK for nil and ExitFailure for any other error.
func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{conf.ErrInvalid, ExitBadInput},
		{fmt.Errorf("%w: policy: stages[1]: unknown type", ErrInvalid), ExitBadInput},
		{fmt.Errorf("run: %w: 1 of 4 visits", ErrVisitsFailed), ExitVisitsFailed},
		{fmt.Errorf("%w: SIGTERM", ErrInterrupted), ExitInterrupted},
		{fmt.Errorf("waiting: %w", context.Canceled), ExitInterrupted},
		{errors.New("comm: rank 2 lost"), ExitFailure},
		{context.DeadlineExceeded, ExitFailure},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// README.md's exit-status table lists every exit status, each once, with
// the meaning exitStatuses gives it, and nothing else; every error of
// exitStatuses gives its status.
func TestExitStatusesInReadme(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented, err := readmeExitStatuses(string(readme))
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	for _, s := range exitStatuses {
		meaning, ok := documented[s.code]
		switch {
		case !ok:
			t.Errorf("README.md: the exit-status table lacks %d (%s)", s.code, s.meaning)
		case meaning != s.meaning:
			t.Errorf("README.md: exit status %d means %q; the code says %q", s.code, meaning, s.meaning)
		}
		delete(documented, s.code)
		for _, e := range s.errs {
			if got := ExitCode(fmt.Errorf("x: %w", e)); got != s.code {
				t.Errorf("ExitCode(%v) = %d, want %d (%s)", e, got, s.code, s.meaning)
			}
		}
	}
	for code, meaning := range documented {
		t.Errorf("README.md: exit status %d (%s) is not one the code returns", code, meaning)
	}
	for _, code := range []int{ExitOK, ExitFailure, ExitBadInput, ExitVisitsFailed, ExitAlerted, ExitInterrupted} {
		n := 0
		for _, s := range exitStatuses {
			if s.code == code {
				n++
			}
		}
		if n != 1 {
			t.Errorf("exit status %d is %d times in exitStatuses, want once", code, n)
		}
	}
}

// readmeExitStatuses reads the table under the header row
// "| exit status | meaning |": each row's code and meaning.
func readmeExitStatuses(readme string) (map[int]string, error) {
	lines := strings.Split(readme, "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimSpace(l) == "| exit status | meaning |" {
			if start >= 0 {
				return nil, errors.New("two exit-status tables")
			}
			start = i
		}
	}
	if start < 0 {
		return nil, errors.New(`no exit-status table (a header row "| exit status | meaning |")`)
	}
	got := map[int]string{}
	for i := start + 2; i < len(lines) && strings.HasPrefix(lines[i], "|"); i++ {
		cells := strings.Split(strings.Trim(strings.TrimSpace(lines[i]), "|"), "|")
		if len(cells) != 2 {
			return nil, fmt.Errorf("line %d: want two cells, code and meaning: %q", i+1, lines[i])
		}
		code, err := strconv.Atoi(strings.TrimSpace(cells[0]))
		if err != nil {
			return nil, fmt.Errorf("line %d: exit status %q is not a number", i+1, cells[0])
		}
		if _, dup := got[code]; dup {
			return nil, fmt.Errorf("line %d: exit status %d again", i+1, code)
		}
		got[code] = strings.TrimSpace(cells[1])
	}
	if len(got) == 0 {
		return nil, errors.New("the exit-status table has no rows")
	}
	return got, nil
}
