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

// CheckAccounting compares the site file's account and qos with the
// cluster's accounting: the account exists and the user is associated
// with it; the QoS exists and, when the association lists the QoS it may
// use, is one of them. Slurm with associations enforced refuses the jobs
// otherwise; without enforcement it runs them under the user's default
// account, which is worse. A site file that names neither has no
// mismatch.
func CheckAccounting(s *Site, a Accounting) []Mismatch {
	var out []Mismatch
	var assocs []Assoc // the user's associations with the site's account
	for _, as := range a.Assocs {
		if (a.Cluster == "" || as.Cluster == "" || as.Cluster == a.Cluster) && as.Account == s.Account {
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
	if s.Account != "" {
		switch {
		case !slices.Contains(a.Accounts, s.Account):
			out = append(out, Mismatch{Key: "account", Site: s.Account, Live: "no such account", Hint: userAccounts()})
		case len(assocs) == 0:
			out = append(out, Mismatch{Key: "account", Site: s.Account,
				Live: fmt.Sprintf("no association of user %s with it", a.User), Hint: userAccounts() + ": Slurm refuses or misbills such jobs"})
		}
	}
	if s.QoS == "" {
		return out
	}
	if !slices.Contains(a.QoS, s.QoS) {
		slices.Sort(a.QoS)
		return append(out, Mismatch{Key: "qos", Site: s.QoS, Live: "no such QoS", Hint: "have: " + strings.Join(a.QoS, ", ")})
	}
	if s.Account == "" {
		return out
	}
	for _, as := range assocs {
		if as.QoS == nil || slices.Contains(as.QoS, s.QoS) {
			return out
		}
	}
	if len(assocs) > 0 {
		return append(out, Mismatch{Key: "qos", Site: s.QoS,
			Live: fmt.Sprintf("no QoS %s for user %s in account %s", s.QoS, a.User, s.Account),
			Hint: "the association allows " + strings.Join(assocs[0].QoS, ", ")})
	}
	return out
}
