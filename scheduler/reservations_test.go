package scheduler

import (
	"reflect"
	"testing"
	"time"

	"github.com/dpsbatch/dpsbatch/site"
)

func TestParseReservations(t *testing.T) {
	if rs, err := parseReservations([]byte("No reservations in the system\n"), time.UTC); err != nil || rs != nil {
		t.Errorf("none: %v, %v", rs, err)
	}
	out := "ReservationName=maint StartTime=2026-12-06T19:01:16 EndTime=2026-12-06T19:06:16 Duration=00:05:00 Nodes=n4 NodeCnt=1 " +
		"CoreCnt=2 Features=(null) PartitionName=debug Flags=SPEC_NODES   NodeName=n4 CoreIDs=0-1 TRES=cpu=2 Users=dpsuser,ann " +
		"Groups=(null) Accounts=(null) Licenses=(null) State=ACTIVE BurstBuffer=(null) Watts=n/a MaxStartDelay=(null)\n" +
		"ReservationName=all StartTime=2026-12-06T19:01:16 EndTime=2026-12-07T19:06:16 PartitionName=(null) Users=(null) Accounts=physics\n"
	rs, err := parseReservations([]byte(out), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	want := []site.Reservation{
		{Name: "maint", Partition: "debug", Users: []string{"dpsuser", "ann"}, End: time.Date(2026, 12, 6, 19, 6, 16, 0, time.UTC)},
		{Name: "all", Accounts: []string{"physics"}, End: time.Date(2026, 12, 7, 19, 6, 16, 0, time.UTC)},
	}
	if !reflect.DeepEqual(rs, want) {
		t.Errorf("got  %+v\nwant %+v", rs, want)
	}
	if _, err := parseReservations([]byte("ReservationName=x EndTime=soon\n"), time.UTC); err == nil {
		t.Error("a bad EndTime was accepted")
	}
}
