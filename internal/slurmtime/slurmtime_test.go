package slurmtime

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30":         30 * time.Minute,
		"30:15":      30*time.Minute + 15*time.Second,
		"02:00:00":   2 * time.Hour,
		"1-00":       24 * time.Hour,
		"1-02:03":    26*time.Hour + 3*time.Minute,
		"2-01:02:03": 49*time.Hour + 2*time.Minute + 3*time.Second,
		"infinite":   0,
		"UNLIMITED":  0,
		"90m":        90 * time.Minute,
		" 1h30m ":    90 * time.Minute,
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "1:2:3:4", "-5", "1-", "a-01", "1-1:2:3:4", "-1h", "5:-1"} {
		if d, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", in, d)
		}
	}
}

func TestFormatRoundTrip(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                       "infinite",
		90 * time.Second:        "00:01:30",
		1500 * time.Millisecond: "00:00:02",
		26*time.Hour + 3*time.Minute + 4*time.Second: "1-02:03:04",
	} {
		if got := Format(d); got != want {
			t.Errorf("Format(%v) = %q, want %q", d, got, want)
		}
		if back, err := Parse(want); err != nil || (d > 0 && back != d.Round(time.Second) && back != d.Truncate(time.Second)+time.Second) {
			t.Errorf("Parse(Format(%v)) = %v, %v", d, back, err)
		}
	}
}
