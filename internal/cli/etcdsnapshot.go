package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/k1s-io/k1s/internal/datadir"
	"github.com/k1s-io/k1s/internal/etcd"
	"github.com/k1s-io/k1s/internal/etcd/snapshot"
	"github.com/k1s-io/k1s/internal/layout"
)

func etcdSnapshotCommand() *cli.Command {
	flags := func(extra ...cli.Flag) []cli.Flag {
		return append(append(serverFlags(), etcdSnapshotDirFlag("dir")), extra...)
	}
	return &cli.Command{
		Name:            "etcd-snapshot",
		Usage:           "Save, list, delete and prune snapshots of a server's etcd (restore: k1s server --cluster-reset-restore-path FILE)",
		OnUsageError:    usageError,
		HideHelpCommand: true,
		Subcommands: []*cli.Command{
			{
				Name:         "save",
				Usage:        "Take a snapshot of the running server's etcd",
				OnUsageError: usageError,
				Flags: flags(
					&cli.StringFlag{Name: "name", Value: snapshot.OnDemandPrefix, Usage: "start of the snapshot's name (<name>-<node>-<unix time>)"},
					etcdSnapshotCompressFlag("snapshot-compress"),
				),
				Action: etcdSnapshotSave,
			},
			{Name: "ls", Aliases: []string{"list"}, Usage: "List snapshots: name, size, created, node", OnUsageError: usageError, Flags: flags(), Action: etcdSnapshotList},
			{Name: "delete", Usage: "Delete snapshots by name", ArgsUsage: "NAME...", OnUsageError: usageError, Flags: flags(), Action: etcdSnapshotDelete},
			{
				Name:         "prune",
				Usage:        "Delete all but the newest snapshots (of --name's snapshots only, when given)",
				OnUsageError: usageError,
				Flags: flags(
					&cli.IntFlag{Name: "snapshot-retention", Value: 5, Usage: "how many snapshots to keep"},
					&cli.StringFlag{Name: "name", Usage: "prune only snapshots whose name starts with this (like on-demand or etcd-snapshot)"},
				),
				Action: etcdSnapshotPrune,
			},
		},
	}
}

// snapshotDir is where the command finds snapshots: --etcd-snapshot-dir, else the config
// file's, else the data directory's default.
func snapshotDir(c *cli.Context) (layout.DataDir, string, error) {
	dir, err := dataDir(c)
	if err != nil {
		return "", "", err
	}
	snapshots := c.String("etcd-snapshot-dir")
	if !c.IsSet("etcd-snapshot-dir") {
		if v, err := configFileValue(c, "etcd-snapshot-dir"); err != nil {
			return "", "", err
		} else if v != "" {
			snapshots = v
		}
	}
	if snapshots == "" {
		snapshots = dir.Server().SnapshotDir()
	}
	abs, err := filepath.Abs(snapshots)
	if err != nil {
		return "", "", fmt.Errorf("--etcd-snapshot-dir %q: %w", snapshots, err)
	}
	return dir, abs, nil
}

func etcdSnapshotSave(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see 'k1s etcd-snapshot save --help')", c.Args().First())
	}
	prefix := c.String("name")
	if err := snapshot.ValidatePrefix(prefix); err != nil {
		return err
	}
	dir, snapshots, err := snapshotDir(c)
	if err != nil {
		return err
	}
	compress := c.Bool("etcd-snapshot-compress")
	if !c.IsSet("etcd-snapshot-compress") {
		if v, err := configFileValue(c, "etcd-snapshot-compress"); err != nil {
			return err
		} else if v == "true" {
			compress = true
		}
	}
	client, endpoint, node, err := etcdClient(dir, "etcd-snapshot save")
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, stop := signalContext()
	defer stop()
	probe, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = client.Status(probe, endpoint)
	cancel()
	if err != nil {
		return fmt.Errorf("the server's etcd at %s does not answer (%v): is the server started and ready?", endpoint, err)
	}
	created := time.Now().UTC()
	meta := snapshot.Metadata{Name: snapshot.FileName(prefix, node, created, compress), Node: node, Created: created, Compressed: compress}
	ctx, cancel = context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	stream, err := client.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("asking etcd at %s for a snapshot: %w", endpoint, err)
	}
	defer stream.Close()
	if meta, err = snapshot.Write(snapshots, meta, stream); err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "saved etcd snapshot %s in %s (%d bytes, sha256 %s)\n", meta.Name, snapshots, meta.Size, meta.SHA256)
	fmt.Fprintln(c.App.Writer, filepath.Join(snapshots, meta.Name))
	return nil
}

// etcdClient is a client of the running server's etcd with the server's own client
// credentials, at the address the server recorded; node is its member (node) name. command
// names what needs it when no server runs.
func etcdClient(dir layout.DataDir, command string) (client *clientv3.Client, endpoint, node string, err error) {
	// Without this, a stopped server's etcd would only show as a dial that never succeeds.
	if !datadir.Held(dir.Root()) {
		return nil, "", "", fmt.Errorf("no k1s server is running on %s: %s needs the running server (start it, or give the --data-dir it runs with)", dir.Root(), command)
	}
	files := dir.Server()
	recorded := dir.ArgsFile(layout.PartServer, "etcd")
	data, err := os.ReadFile(recorded)
	if err != nil {
		return nil, "", "", fmt.Errorf("no etcd arguments recorded in %s (%v): run this on the server, with its --data-dir", recorded, errors.Unwrap(err))
	}
	var argv []string
	if err := json.Unmarshal(data, &argv); err != nil {
		return nil, "", "", fmt.Errorf("%s is malformed: %w", recorded, err)
	}
	if endpoint, node, err = snapshot.ClientEndpoint(argv); err != nil {
		return nil, "", "", err
	}
	tlsConfig, err := etcd.ClientTLS(files.EtcdCA().Cert, files.EtcdAPIServerClient().Cert, files.EtcdAPIServerClient().Key)
	if err != nil {
		return nil, "", "", fmt.Errorf("%w (run this as root on the server)", err)
	}
	if client, err = etcd.NewClient([]string{endpoint}, tlsConfig); err != nil {
		return nil, "", "", fmt.Errorf("connecting to etcd at %s: %w", endpoint, err)
	}
	return client, endpoint, node, nil
}

func etcdSnapshotList(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see 'k1s etcd-snapshot ls --help')", c.Args().First())
	}
	_, snapshots, err := snapshotDir(c)
	if err != nil {
		return err
	}
	entries, err := snapshot.List(snapshots)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tSIZE\tCREATED\tNODE")
	for _, e := range entries {
		node := e.Node
		if !e.HasMetadata {
			node = "-" // a file without metadata: its node is unknown
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", e.Name, e.Size, e.Created.UTC().Format(time.RFC3339), node)
	}
	return w.Flush()
}

func etcdSnapshotDelete(c *cli.Context) error {
	if c.NArg() == 0 {
		return fmt.Errorf("give the names of the snapshots to delete (see 'k1s etcd-snapshot ls')")
	}
	_, snapshots, err := snapshotDir(c)
	if err != nil {
		return err
	}
	// Every name is checked before any is deleted: a typo deletes nothing.
	var entries []snapshot.Entry
	for _, name := range c.Args().Slice() {
		if strings.HasPrefix(name, "-") {
			return fmt.Errorf("flags go before the snapshot names: k1s etcd-snapshot delete %s NAME", name)
		}
		e, err := snapshot.Find(snapshots, name)
		if err != nil {
			return err
		}
		entries = append(entries, e)
	}
	for _, e := range entries {
		if err := snapshot.Remove(e); err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "deleted %s\n", e.Name)
	}
	return nil
}

func etcdSnapshotPrune(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see 'k1s etcd-snapshot prune --help')", c.Args().First())
	}
	prefix := c.String("name")
	if prefix != "" {
		if err := snapshot.ValidatePrefix(prefix); err != nil {
			return err
		}
	}
	retain := c.Int("snapshot-retention")
	if retain < 1 {
		return fmt.Errorf("--snapshot-retention %d would delete every snapshot; keep at least 1 (delete them by name with 'k1s etcd-snapshot delete')", retain)
	}
	_, snapshots, err := snapshotDir(c)
	if err != nil {
		return err
	}
	removed, err := snapshot.Prune(snapshots, prefix, "", retain)
	for _, name := range removed {
		fmt.Fprintf(c.App.Writer, "deleted %s\n", name)
	}
	return err
}
