package site_test

import (
	"strings"
	"testing"

	"github.com/dpsbatch/dpsbatch/site"
)

func TestCheckAccounting(t *testing.T) {
	acct := site.Accounting{User: "ann", Cluster: "dps", Accounts: []string{"root", "science", "physics"}, QoS: []string{"normal", "high"},
		Assocs: []site.Assoc{
			{Cluster: "dps", Account: "physics", QoS: []string{"normal"}},
			{Cluster: "other", Account: "science", QoS: []string{"normal", "high"}},
		}}
	for _, tc := range []struct {
		account, qos string
		want         []string // one substring per mismatch
	}{
		{"", "", nil},
		{"physics", "normal", nil},
		{"physics", "", nil},
		{"", "high", nil},
		{"a'b", "", []string{"account: site file says a'b, the cluster has no such account (user ann is in physics, science)"}},
		{"science", "", []string{"account: site file says science, the cluster has no association of user ann with it"}},
		{"physics", "urgent", []string{"qos: site file says urgent, the cluster has no such QoS (have: high, normal)"}},
		{"physics", "high", []string{"qos: site file says high, the cluster has no QoS high for user ann in account physics (the association allows normal)"}},
		{"nope", "nope", []string{"account: site file says nope", "qos: site file says nope"}},
	} {
		s := &site.Site{Account: tc.account, QoS: tc.qos}
		ms := site.CheckAccounting(s, acct)
		if len(ms) != len(tc.want) {
			t.Errorf("account %q qos %q: %d mismatches %v, want %d", tc.account, tc.qos, len(ms), ms, len(tc.want))
			continue
		}
		for i, m := range ms {
			if !strings.Contains(m.String(), tc.want[i]) {
				t.Errorf("account %q qos %q: %q, want %q", tc.account, tc.qos, m.String(), tc.want[i])
			}
		}
	}
}

// Each partition with its own account or QoS is checked with them: a
// partition's QoS with its effective account, associations limited to a
// partition only for that partition.
func TestCheckAccountingPerPartition(t *testing.T) {
	acct := site.Accounting{User: "ann", Cluster: "dps", Accounts: []string{"science", "physics", "gpu"}, QoS: []string{"normal", "high"},
		Assocs: []site.Assoc{
			{Cluster: "dps", Account: "physics", QoS: []string{"normal"}},
			{Cluster: "dps", Account: "gpu", Partition: "gpu", QoS: []string{"normal", "high"}},
		}}
	s := &site.Site{Account: "physics", QoS: "normal", Partitions: []site.Partition{
		{Name: "a"},
		{Name: "b", Account: "science"},
		{Name: "c", QoS: "high"},
		{Name: "gpu", Account: "gpu", QoS: "high"},
		{Name: "cpu", Account: "gpu"},
	}}
	want := []string{
		"partition b: account: site file says science, the cluster has no association of user ann with it",
		"partition c: qos: site file says high, the cluster has no QoS high for user ann in account physics",
		"partition cpu: account: site file says gpu, the cluster has no association of user ann with it",
	}
	ms := site.CheckAccounting(s, acct)
	wantMismatches(t, ms, want)
}

// A site-wide account or QoS that every partition replaces is never used,
// so not checked.
func TestCheckAccountingUnusedSiteValues(t *testing.T) {
	acct := site.Accounting{User: "ann", Accounts: []string{"science", "physics"}, QoS: []string{"normal"},
		Assocs: []site.Assoc{{Account: "physics"}}}
	s := &site.Site{Account: "science", QoS: "nope", Partitions: []site.Partition{{Name: "a", Account: "physics", QoS: "normal"}}}
	if ms := site.CheckAccounting(s, acct); len(ms) != 0 {
		t.Errorf("mismatches %v, want none", ms)
	}
	s.Partitions = append(s.Partitions, site.Partition{Name: "b"})
	if ms := site.CheckAccounting(s, acct); len(ms) != 2 {
		t.Errorf("mismatches %v, want the site's account and QoS", ms)
	}
}
