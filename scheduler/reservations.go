package scheduler

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dpsbatch/dpsbatch/site"
)

// ReservationReader is a Backend that can list Slurm's reservations: site
// check compares the site file's reservations with them. Without it
// (slurmrestd's backend), they are not checked.
type ReservationReader interface {
	Reservations(ctx context.Context) ([]site.Reservation, error)
}

// Reservations runs scontrol --oneliner show reservation.
func (c *CLI) Reservations(ctx context.Context) ([]site.Reservation, error) {
	out, err := c.run(ctx, nil, nil, "scontrol", "--oneliner", "show", "reservation")
	if err != nil {
		return nil, err
	}
	return parseReservations(out, time.Local)
}

// parseReservations reads scontrol --oneliner show reservation: one
// reservation a line, Key=Value fields, times local to loc; "No
// reservations in the system" when there are none.
func parseReservations(out []byte, loc *time.Location) ([]site.Reservation, error) {
	var rs []site.Reservation
	for line := range strings.Lines(string(out)) {
		kv := keyValues(line)
		name := kv["ReservationName"]
		if name == "" {
			continue
		}
		end, err := squeueTime(kv["EndTime"], loc)
		if err != nil {
			return nil, fmt.Errorf("scheduler: scontrol show reservation %s: EndTime: %w", name, err)
		}
		rs = append(rs, site.Reservation{Name: name, Partition: nullable(kv["PartitionName"]),
			Users: list(kv["Users"]), Accounts: list(kv["Accounts"]), End: end})
	}
	return rs, nil
}

// keyValues splits a line of scontrol --oneliner into its Key=Value
// fields.
func keyValues(line string) map[string]string {
	kv := map[string]string{}
	for _, field := range strings.Fields(line) {
		if k, v, ok := strings.Cut(field, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

// nullable is scontrol's value v, "" for (null).
func nullable(v string) string {
	if v == "(null)" {
		return ""
	}
	return v
}

// list splits a comma-separated scontrol value; nil for (null) or "".
func list(v string) []string {
	if v = nullable(v); v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// allowList is a partition's AllowAccounts or AllowQos as site.Live
// holds it: nil for any (ALL).
func allowList(names []string) []string {
	if slices.Contains(names, "ALL") {
		return nil
	}
	return names
}

var _ ReservationReader = (*CLI)(nil)
