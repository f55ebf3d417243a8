package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/layout"
	"github.com/k1s-io/k1s/internal/network"
	"github.com/k1s-io/k1s/internal/server"
)

// Every flag that more than one command has is defined here, once.

// dataDirFlag is --data-dir; usage says what the command does with it.
func dataDirFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "data-dir", Aliases: []string{"d"}, Value: layout.DefaultDataDir, EnvVars: []string{"K1S_DATA_DIR"}, Usage: usage}
}

// serverFlags are the flags of the commands that act on a server from its host: its data
// directory, and the config file that may name it.
func serverFlags() []cli.Flag {
	return []cli.Flag{configFlag(), dataDirFlag("the server's data directory (default: the config file's, else " + layout.DefaultDataDir + ")")}
}

// writeKubeconfigFlag is where a server writes the admin kubeconfig (and where check-config
// looks for it).
func writeKubeconfigFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "write-kubeconfig", Aliases: []string{"o"}, Value: layout.DefaultKubeconfig, EnvVars: []string{"K1S_KUBECONFIG_OUTPUT"}, Usage: usage}
}

// etcdSnapshotDirFlag is --etcd-snapshot-dir, of the server and (with k3s's alias --dir) of
// etcd-snapshot.
func etcdSnapshotDirFlag(aliases ...string) cli.Flag {
	return &cli.StringFlag{Name: "etcd-snapshot-dir", Aliases: aliases, Usage: "directory of etcd snapshots (default: <data-dir>/server/db/snapshots)"}
}

// etcdSnapshotCompressFlag is --etcd-snapshot-compress, of the server and (with k3s's alias
// --snapshot-compress) of etcd-snapshot save.
func etcdSnapshotCompressFlag(aliases ...string) cli.Flag {
	return &cli.BoolFlag{Name: "etcd-snapshot-compress", Aliases: aliases, Usage: "gzip etcd snapshots"}
}

func logFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "debug", EnvVars: []string{"K1S_DEBUG"}, Usage: "log debug lines, including upstream components' info lines"},
		&cli.IntFlag{Name: "v", Usage: "upstream components' log verbosity (klog -v)"},
	}
}

// nodeFlags are the flags of a node, in `agent` and in the node half of `server`.
func nodeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "node-name", EnvVars: []string{"K1S_NODE_NAME"}, Usage: "node name (default: host name)"},
		&cli.StringFlag{Name: "node-ip", Usage: "this node's address (default: the address of the default route's interface)"},
		&cli.IntFlag{Name: "lb-server-port", EnvVars: []string{"K1S_LB_SERVER_PORT"}, Value: layout.LoadBalancerPort, Usage: "port on 127.0.0.1 of the node's API load balancer, which fails over between the cluster's servers (agents, and the nodes of servers that can be joined)"},
		&cli.StringFlag{Name: "resolv-conf", EnvVars: []string{"K1S_RESOLV_CONF"}, Value: "/etc/resolv.conf", Usage: "resolv.conf for the kubelet (and so for CoreDNS's upstream)"},
		&cli.StringSliceFlag{Name: "node-label", Usage: "key=value label to register the node with (repeatable)"},
		&cli.StringSliceFlag{Name: "node-taint", Usage: "key=value:Effect taint to register the node with (repeatable)"},
		componentArgFlag("kubelet-arg", "key=value for the kubelet (repeatable)"),
		componentArgFlag("kube-proxy-arg", "key=value for kube-proxy (repeatable)"),
		&cli.StringFlag{Name: "flannel-backend", Value: network.BackendVXLAN, Usage: "pod network between nodes: vxlan, host-gw (nodes on one L2 network) or none"},
		&cli.StringFlag{Name: "flannel-iface", Usage: "interface the pod network between nodes uses (default: the node IP's)"},
		&cli.StringSliceFlag{Name: "node-external-ip", Usage: "address others reach this node by, given to LoadBalancer Services instead of the node IP (repeatable, or comma-separated)"},
		&cli.StringFlag{Name: "private-registry", Value: layout.DefaultRegistries, Usage: "registry mirrors and credentials (k3s's registries.yaml format)"},
		&cli.BoolFlag{Name: "disable-default-registry-endpoint", Usage: "pull a mirrored registry's images from its mirrors only, never from the registry itself"},
		&cli.StringFlag{Name: "default-local-storage-path", Usage: "directory of the node's local-storage volumes (default: <data-dir>/storage)"},
		&cli.BoolFlag{Name: "hardened", EnvVars: []string{"K1S_HARDENED"}, Usage: "CIS hardening: restricted Pod Security, secrets encryption, EventRateLimit, kubelet protect-kernel-defaults, seccomp default, pod PID limit (see README)"},
	}
}

// flagIP parses an address flag when it is set.
func flagIP(c *cli.Context, name string) (net.IP, error) {
	if v := c.String(name); v != "" {
		return server.ParseIP(name, v)
	}
	return nil, nil
}

// dataDir is the data directory a command acts on: --data-dir (or K1S_DATA_DIR), else the
// config file's data-dir, else the default. Commands that act on a running server or node
// (killall, token, certificate, secrets-encrypt, check-config) read only that key of the
// config file: it holds the server's or agent's other flags too. The server and agent
// commands read the whole file (applyConfigFile), so all agree on the directory.
func dataDir(c *cli.Context) (layout.DataDir, error) {
	if c.IsSet("data-dir") {
		return layout.DataDir(c.String("data-dir")), nil
	}
	d, err := configFileValue(c, "data-dir")
	if err != nil {
		return "", err
	}
	if d != "" {
		return layout.DataDir(d), nil
	}
	return layout.DataDir(c.String("data-dir")), nil
}

// configFileValue is the value of one key of the config file (--config), "" when the file or
// the key is absent: for the commands that act on a running server, which share a few of its
// flags (its data directory, where its snapshots are).
func configFileValue(c *cli.Context, key string) (string, error) {
	path := c.String("config")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !c.IsSet("config") {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("cannot read config file %s: %w; give the --data-dir k1s ran with instead, or run as root", path, errors.Unwrap(err))
	}
	values, err := parseConfigFile(data)
	if err != nil {
		return "", fmt.Errorf("config file %s is malformed: %w", path, err)
	}
	if v := values[key]; len(v) == 1 {
		return v[0], nil
	}
	return "", nil
}

// argList is the value of a --*-arg flag: key=value items for an upstream component, one per
// occurrence. Unlike a StringSliceFlag it never splits at commas, which components' own list
// values hold (--kube-apiserver-arg enable-admission-plugins=A,B, --etcd-arg
// listen-client-urls=URL1,URL2, --kubelet-arg node-labels=a=b,c=d).
type argList []string

func (l *argList) Set(v string) error { *l = append(*l, v); return nil }
func (l *argList) String() string     { return strings.Join(*l, " ") }

// componentArgFlag is a repeatable --*-arg flag (see argList).
func componentArgFlag(name, usage string) *cli.GenericFlag {
	return &cli.GenericFlag{Name: name, Value: &argList{}, Usage: usage}
}

// componentArgs are the values of a componentArgFlag.
func componentArgs(c *cli.Context, name string) []string {
	if l, ok := c.Generic(name).(*argList); ok {
		return append([]string(nil), *l...)
	}
	return nil
}

// repeatable says whether a flag takes a list in the config file.
func repeatable(f cli.Flag) bool {
	switch f := f.(type) {
	case *cli.StringSliceFlag:
		return true
	case *cli.GenericFlag:
		_, ok := f.Value.(*argList)
		return ok
	}
	return false
}

// fileExists says whether path exists.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
