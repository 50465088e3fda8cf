package site

import (
	"slices"
	"strings"
	"time"
)

// Reservation is one live Slurm reservation (scontrol show reservation),
// filled in by the scheduler package.
type Reservation struct {
	Name      string
	Partition string // "" when the reservation names none
	// Users and Accounts are who may use it; a name starting with - is
	// denied. Both empty: anyone may (Slurm requires one of them, but a
	// backend may not report them).
	Users, Accounts []string
	End             time.Time // zero when not reported
}

// CheckReservations compares the reservation each partition's jobs use
// (the partition's own, else the site's) with the live reservations: it
// exists, has not ended by now, is on that partition (when it names one),
// and lets user or the partition's account in. sbatch refuses a job
// otherwise.
func CheckReservations(s *Site, user string, live []Reservation, now time.Time) []Mismatch {
	var out []Mismatch
	for _, p := range s.Partitions {
		ps := s.Settings(p.Name)
		if ps.Reservation == "" {
			continue
		}
		i := slices.IndexFunc(live, func(r Reservation) bool { return r.Name == ps.Reservation })
		if i < 0 {
			out = append(out, Mismatch{Partition: p.Name, Key: "reservation", Site: ps.Reservation, Live: "no such reservation",
				Hint: haveReservations(live)})
			continue
		}
		if m, bad := checkReservation(live[i], p.Name, user, ps.Account, now); bad {
			m.Partition, m.Key, m.Site = p.Name, "reservation", ps.Reservation
			out = append(out, m)
		}
	}
	return out
}

// checkReservation says what stops a job of user, under account, on
// partition from using r.
func checkReservation(r Reservation, partition, user, account string, now time.Time) (Mismatch, bool) {
	switch {
	case !r.End.IsZero() && !r.End.After(now):
		return Mismatch{Live: "ended at " + r.End.Format(time.DateTime)}, true
	case r.Partition != "" && r.Partition != partition:
		return Mismatch{Live: "a reservation on partition " + r.Partition, Hint: "sbatch refuses it for jobs on " + partition}, true
	case len(r.Users) == 0 && len(r.Accounts) == 0,
		slices.Contains(r.Users, user), account != "" && slices.Contains(r.Accounts, account):
		return Mismatch{}, false
	}
	who := "users " + orNone(r.Users) + ", accounts " + orNone(r.Accounts)
	return Mismatch{Live: "a reservation for " + who, Hint: "user " + user + orAccount(account) + " may not use it"}, true
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

func orAccount(account string) string {
	if account == "" {
		return ""
	}
	return " in account " + account
}

// haveReservations lists the live reservations for a hint.
func haveReservations(live []Reservation) string {
	if len(live) == 0 {
		return "there are none"
	}
	names := make([]string, len(live))
	for i, r := range live {
		names[i] = r.Name
	}
	return "have: " + strings.Join(names, ", ")
}
