package site_test

import (
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/site"
)

func TestCheckReservations(t *testing.T) {
	now := time.Date(2026, 12, 6, 19, 0, 0, 0, time.UTC)
	s := &site.Site{Account: "physics", Reservation: "ok", Partitions: []site.Partition{
		{Name: "a"},
		{Name: "b", Reservation: "gone"},
		{Name: "c", Reservation: "old"},
		{Name: "d", Reservation: "elsewhere"},
		{Name: "e", Reservation: "theirs"},
		{Name: "f", Reservation: "ours", Account: "science"},
		{Name: "g", Reservation: "mine"},
	}}
	live := []site.Reservation{
		{Name: "ok", Users: []string{"ann"}, End: now.Add(time.Hour)},
		{Name: "old", Users: []string{"ann"}, End: now.Add(-time.Minute)},
		{Name: "elsewhere", Partition: "x", Users: []string{"ann"}},
		{Name: "theirs", Users: []string{"bob"}, Accounts: []string{"science"}},
		{Name: "ours", Accounts: []string{"science"}},
		{Name: "mine", Partition: "g", Users: []string{"bob", "ann"}},
	}
	want := []string{
		"partition b: reservation: site file says gone, the cluster has no such reservation (have: ok, old, elsewhere, theirs, ours, mine)",
		"partition c: reservation: site file says old, the cluster has ended at 2026-12-06 18:59:00",
		"partition d: reservation: site file says elsewhere, the cluster has a reservation on partition x",
		"partition e: reservation: site file says theirs, the cluster has a reservation for users bob, accounts science (user ann in account physics may not use it)",
	}
	ms := site.CheckReservations(s, "ann", live, now)
	wantMismatches(t, ms, want)
}
