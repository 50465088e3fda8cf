package main

import (
	"errors"
	"fmt"
	"io"
	"os/user"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dpsbatch/dpsbatch/scheduler"
	"github.com/dpsbatch/dpsbatch/site"
)

func siteCommand() *cli.Command {
	return &cli.Command{
		Name:  "site",
		Usage: "check a site file against the live cluster, or write a first one from it",
		Subcommands: []*cli.Command{
			{
				Name:  "check",
				Usage: "compare the site file with the live cluster and report each mismatch",
				Description: "Loads the site file (every problem in it is reported with its line), then asks Slurm\n" +
					"(sinfo) for the partitions and compares: partition exists and is up, CPUs and memory per\n" +
					"node, node count and list, time and node limits, the constraint's features; asks Slurm's\n" +
					"accounting (sacctmgr) whether each partition's account and QoS exist and you are associated\n" +
					"with them; and whether each partition's reservation exists and lets you in.\n" +
					"Exit status: 0 the file matches the cluster, 2 the file is invalid or does not match.",
				Flags: []cli.Flag{siteFlag(), &cli.BoolFlag{Name: "json", Usage: "print the result (each mismatch, or each problem of the file) as JSON"}},
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return badInput("site check takes no arguments (the file comes from --site)")
					}
					s, err := loadSite(c, true)
					if err != nil {
						if c.Bool("json") && c.String("site") != "" {
							return errors.Join(err, printJSON(c.App.Writer, siteChecked{Site: c.String("site"), Problems: problemsOf(err),
								Mismatches: []mismatch{}}))
						}
						return err
					}
					b, err := backend(s)
					if err != nil {
						return err
					}
					live, err := b.Partitions(c.Context)
					if err != nil {
						return err
					}
					ms := site.Check(s, live)
					ms = append(ms, checkAccounting(c, b, s, live)...)
					ms = append(ms, checkReservations(c, b, s)...)
					if c.Bool("json") {
						if err := printJSON(c.App.Writer, checkedSite(s, ms)); err != nil {
							return err
						}
					} else {
						printChecked(c.App.Writer, s, ms)
					}
					if len(ms) > 0 {
						return badInput("%s: %d mismatches with the live cluster", s.Path, len(ms))
					}
					return nil
				},
			},
			{
				Name:  "discover",
				Usage: "print a starting site file from the live cluster",
				Description: "Asks Slurm (sinfo) for its partitions and prints a commented site file describing\n" +
					"them (each partition's node features and allowed accounts and QoS as commented keys); edit the\n" +
					"launcher, setup lines and runs root, then check it with `site check`.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "runs-root", Value: "/var/tmp/dpsbatch/runs", Usage: "runs root to write in the file (on a file system every node sees)"},
					&cli.StringFlag{Name: "site", EnvVars: []string{"DPSBATCH_SITE"},
						Usage: "a site file whose scheduler section says how to reach Slurm (optional: Slurm's tools)"},
				},
				Action: func(c *cli.Context) error {
					s, err := loadSite(c, false)
					if err != nil {
						return err
					}
					b, err := backend(s)
					if err != nil {
						return err
					}
					live, err := b.Partitions(c.Context)
					if err != nil {
						return err
					}
					out, err := site.Discover(live, site.DiscoverOptions{RunsRoot: c.String("runs-root")})
					if err != nil {
						return err
					}
					_, err = c.App.Writer.Write(out)
					return err
				},
			},
		},
	}
}

func printChecked(w io.Writer, s *site.Site, ms []site.Mismatch) {
	for _, m := range ms {
		fmt.Fprintf(w, "%s: %s\n", s.Path, m)
	}
	if len(ms) == 0 {
		fmt.Fprintf(w, "%s: matches the cluster (%s)\n", s.Path, plural(len(s.Partitions), "partition"))
	}
}

// siteChecked is what site check --json prints: whether the site file
// matches the cluster and, when not, each mismatch; or, for a site file
// that does not load, its problems.
type siteChecked struct {
	Site       string     `json:"site"`
	Matches    bool       `json:"matches"`
	Partitions int        `json:"partitions"`
	Mismatches []mismatch `json:"mismatches"`
	Problems   []problem  `json:"problems,omitempty"`
}

// mismatch is a site.Mismatch with the line site check prints for it.
type mismatch struct {
	site.Mismatch
	Message string `json:"message"`
}

func checkedSite(s *site.Site, ms []site.Mismatch) siteChecked {
	r := siteChecked{Site: s.Path, Matches: len(ms) == 0, Partitions: len(s.Partitions), Mismatches: []mismatch{}}
	for _, m := range ms {
		r.Mismatches = append(r.Mismatches, mismatch{Mismatch: m, Message: m.String()})
	}
	return r
}

// checkAccounting compares the site file's account and QoS with Slurm's
// accounting, when the site names one and the backend can read it; when
// it cannot, it says so on stderr and finds no mismatch.
func checkAccounting(c *cli.Context, b scheduler.Backend, s *site.Site, live []site.Live) []site.Mismatch {
	if !anyPartition(s, func(ps site.Settings) bool { return ps.Account != "" || ps.QoS != "" }) {
		return nil
	}
	r, ok := b.(scheduler.AccountingReader)
	if !ok {
		fmt.Fprintf(c.App.ErrWriter, "%s: account and qos not checked: the backend cannot read Slurm's accounting\n", s.Path)
		return nil
	}
	a, err := r.Accounting(c.Context)
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "%s: account and qos not checked: %v\n", s.Path, err)
		return nil
	}
	if len(live) > 0 {
		a.Cluster = live[0].Cluster
	}
	return site.CheckAccounting(s, a)
}

// anyPartition reports whether the settings of any partition of s have
// what f looks for.
func anyPartition(s *site.Site, f func(site.Settings) bool) bool {
	return slices.ContainsFunc(s.Partitions, func(p site.Partition) bool { return f(s.Settings(p.Name)) })
}

// checkReservations compares the partitions' reservations with Slurm's,
// when one names a reservation and the backend can list them; when it
// cannot (slurmrestd), it says so on stderr and finds no mismatch.
func checkReservations(c *cli.Context, b scheduler.Backend, s *site.Site) []site.Mismatch {
	if !anyPartition(s, func(ps site.Settings) bool { return ps.Reservation != "" }) {
		return nil
	}
	r, ok := b.(scheduler.ReservationReader)
	if !ok {
		fmt.Fprintf(c.App.ErrWriter, "%s: reservations not checked: not checked through REST (the backend cannot list them)\n", s.Path)
		return nil
	}
	me, err := user.Current()
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "%s: reservations not checked: %v\n", s.Path, err)
		return nil
	}
	live, err := r.Reservations(c.Context)
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "%s: reservations not checked: %v\n", s.Path, err)
		return nil
	}
	return site.CheckReservations(s, me.Username, live, time.Now())
}
