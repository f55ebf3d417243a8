package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/etcd"
)

func etcdCommand() *cli.Command {
	return &cli.Command{
		Name:  "etcd",
		Usage: "Look at the running server's etcd cluster",
		Subcommands: []*cli.Command{{
			Name:         "member",
			Usage:        "etcd members",
			OnUsageError: usageError,
			Subcommands: []*cli.Command{{
				Name: "list", Aliases: []string{"ls"}, Usage: "List members: name, peer URL, voter or learner, health, leader",
				OnUsageError: usageError, Flags: serverFlags(), Action: etcdMemberList,
			}},
		}},
	}
}

func etcdMemberList(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see 'k1s etcd member list --help')", c.Args().First())
	}
	dir, err := dataDir(c)
	if err != nil {
		return err
	}
	client, endpoint, _, err := etcdClient(dir, "etcd member list")
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, stop := signalContext()
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := client.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("the server's etcd at %s does not answer (%v): is the server started and ready, and does its cluster have quorum?", endpoint, err)
	}
	var leader uint64
	if status, err := client.Status(ctx, endpoint); err == nil {
		leader = status.Leader
	}
	tlsCfg, err := etcd.ClientTLS(dir.Server().EtcdCA().Cert, dir.Server().EtcdAPIServerClient().Cert, dir.Server().EtcdAPIServerClient().Key)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tNAME\tPEER URL\tROLE\tHEALTH\tLEADER")
	for _, m := range list.Members {
		role := "voter"
		if m.IsLearner {
			role = "learner"
		}
		health := "unstarted"
		if len(m.ClientURLs) > 0 {
			health = memberHealth(ctx, m.ClientURLs, tlsCfg)
		}
		fmt.Fprintf(w, "%x\t%s\t%s\t%s\t%s\t%t\n", m.ID, m.Name, strings.Join(m.PeerURLs, ","), role, health, m.ID == leader)
	}
	return w.Flush()
}

// memberHealth is "healthy" when one of the member's client URLs answers a status request.
func memberHealth(ctx context.Context, urls []string, tlsCfg *tls.Config) string {
	client, err := etcd.NewClient(urls, tlsCfg)
	if err != nil {
		return "unreachable"
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for _, u := range urls {
		if _, err := client.Status(ctx, u); err == nil {
			return "healthy"
		}
	}
	return "unreachable"
}
