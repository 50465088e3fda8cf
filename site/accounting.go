package site

import (
	"fmt"
	"slices"
	"strings"
)

// Accounting is what Slurm's accounting (sacctmgr) says about the
// accounts and QoS a site file may name, for one user; the scheduler
// package fills it in.
type Accounting struct {
	User     string   // the user the jobs run as
	Cluster  string   // the cluster the associations are of; "" for any
	Accounts []string // every account
	QoS      []string // every QoS
	Assocs   []Assoc  // the user's associations
}

// Assoc is one association of a user with an account.
type Assoc struct {
	Cluster, Account string
	// Partition, when not "", limits the association to one partition.
	Partition string
	// QoS lists the QoS the association may use; nil when accounting
	// does not say.
	QoS []string
}

// CheckAccounting compares the site file's accounts and QoS with the
// cluster's accounting, the site-wide ones and then each partition's own
// (a partition's QoS with its account, its own or the site's): the
// account exists and the user is associated with it (on that partition,
// for a partition's); the QoS exists and, when the association lists the
// QoS it may use, is one of them. Slurm with associations enforced
// refuses the jobs otherwise; without enforcement it runs them under the
// user's default account, which is worse. A site file that names neither
// has no mismatch, nor does a site-wide value that every partition
// replaces with its own.
func CheckAccounting(s *Site, a Accounting) []Mismatch {
	account, qos := s.Account, s.QoS
	if everyPartition(s, func(p Partition) bool { return p.Account != "" }) {
		account = "" // never used
	}
	if everyPartition(s, func(p Partition) bool { return p.QoS != "" }) {
		qos = ""
	}
	out := checkAssociation("", account, qos, a)
	for _, p := range s.Partitions {
		if p.Account == "" && p.QoS == "" {
			continue
		}
		ps := s.Settings(p.Name)
		for _, m := range checkAssociation(p.Name, ps.Account, ps.QoS, a) {
			if m.Key == "qos" || p.Account != "" { // the site's account is reported once, above
				out = append(out, m)
			}
		}
	}
	return out
}

// everyPartition reports whether s has partitions and f holds for each.
func everyPartition(s *Site, f func(Partition) bool) bool {
	return len(s.Partitions) > 0 && !slices.ContainsFunc(s.Partitions, func(p Partition) bool { return !f(p) })
}

// checkAssociation checks one account and QoS, of the whole site when
// partition is "", else of that partition.
func checkAssociation(partition, account, qos string, a Accounting) []Mismatch {
	var out []Mismatch
	var assocs []Assoc // the user's associations with the account
	for _, as := range a.Assocs {
		if (a.Cluster == "" || as.Cluster == "" || as.Cluster == a.Cluster) && as.Account == account &&
			(partition == "" || as.Partition == "" || as.Partition == partition) {
			assocs = append(assocs, as)
		}
	}
	userAccounts := func() string {
		var names []string
		for _, as := range a.Assocs {
			if !slices.Contains(names, as.Account) {
				names = append(names, as.Account)
			}
		}
		if len(names) == 0 {
			return "user " + a.User + " is in no account"
		}
		slices.Sort(names)
		return "user " + a.User + " is in " + strings.Join(names, ", ")
	}
	add := func(m Mismatch) { m.Partition = partition; out = append(out, m) }
	if account != "" {
		switch {
		case !slices.Contains(a.Accounts, account):
			add(Mismatch{Key: "account", Site: account, Live: "no such account", Hint: userAccounts()})
		case len(assocs) == 0:
			add(Mismatch{Key: "account", Site: account,
				Live: fmt.Sprintf("no association of user %s with it", a.User), Hint: userAccounts() + ": Slurm refuses or misbills such jobs"})
		}
	}
	if qos == "" {
		return out
	}
	if !slices.Contains(a.QoS, qos) {
		have := slices.Sorted(slices.Values(a.QoS))
		add(Mismatch{Key: "qos", Site: qos, Live: "no such QoS", Hint: "have: " + strings.Join(have, ", ")})
		return out
	}
	if account == "" {
		return out
	}
	for _, as := range assocs {
		if as.QoS == nil || slices.Contains(as.QoS, qos) {
			return out
		}
	}
	if len(assocs) > 0 {
		add(Mismatch{Key: "qos", Site: qos,
			Live: fmt.Sprintf("no QoS %s for user %s in account %s", qos, a.User, account),
			Hint: "the association allows " + strings.Join(assocs[0].QoS, ", ")})
	}
	return out
}
