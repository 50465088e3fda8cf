package main

import (
	"fmt"

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
					"node, node count and list, time and node limits; and asks Slurm's accounting (sacctmgr)\n" +
					"whether the account and QoS exist and you are associated with them.\n" +
					"Exit status: 0 the file matches the cluster, 2 the file is invalid or does not match.",
				Flags: []cli.Flag{siteFlag()},
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return badInput("site check takes no arguments (the file comes from --site)")
					}
					s, err := loadSite(c, true)
					if err != nil {
						return err
					}
					b, err := backend()
					if err != nil {
						return err
					}
					live, err := b.Partitions(c.Context)
					if err != nil {
						return err
					}
					ms := site.Check(s, live)
					ms = append(ms, checkAccounting(c, b, s, live)...)
					for _, m := range ms {
						fmt.Fprintf(c.App.Writer, "%s: %s\n", s.Path, m)
					}
					if len(ms) > 0 {
						return badInput("%s: %d mismatches with the live cluster", s.Path, len(ms))
					}
					fmt.Fprintf(c.App.Writer, "%s: matches the cluster (%s)\n", s.Path, plural(len(s.Partitions), "partition"))
					return nil
				},
			},
			{
				Name:  "discover",
				Usage: "print a starting site file from the live cluster",
				Description: "Asks Slurm (sinfo) for its partitions and prints a commented site file describing\n" +
					"them; edit the launcher, setup lines and runs root, then check it with `site check`.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "runs-root", Value: "/var/tmp/dpsbatch/runs", Usage: "runs root to write in the file (on a file system every node sees)"},
				},
				Action: func(c *cli.Context) error {
					b, err := backend()
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

// checkAccounting compares the site file's account and QoS with Slurm's
// accounting, when the site names one and the backend can read it; when
// it cannot, it says so on stderr and finds no mismatch.
func checkAccounting(c *cli.Context, b scheduler.Backend, s *site.Site, live []site.Live) []site.Mismatch {
	if s.Account == "" && s.QoS == "" {
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
