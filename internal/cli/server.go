package cli

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/addons"
	"github.com/k1s-io/k1s/internal/agent"
	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/gotune"
	"github.com/k1s-io/k1s/internal/layout"
	"github.com/k1s-io/k1s/internal/logging"
	"github.com/k1s-io/k1s/internal/profiling"
	"github.com/k1s-io/k1s/internal/server"
	"github.com/k1s-io/k1s/internal/version"
)

func serverCommand() *cli.Command {
	return &cli.Command{
		Name:         "server",
		Usage:        "Run a control plane (and, unless --disable-agent, a node)",
		OnUsageError: usageError,
		Before:       applyConfigFile,
		Action:       runServer,
		Flags: append(append(append([]cli.Flag{configFlag()}, logFlags()...),
			dataDirFlag("directory for all state"),
			&cli.StringFlag{Name: "bind-address", Value: "0.0.0.0", Usage: "address the apiserver listens on"},
			&cli.IntFlag{Name: "https-listen-port", Value: layout.APIServerPort, Usage: "apiserver port"},
			&cli.IntFlag{Name: "metrics-server-port", Value: layout.MetricsServerPort, Usage: "port of the metrics-server add-on on the node IP (the servers' apiservers reach it there)"},
			&cli.StringFlag{Name: "advertise-address", Usage: "apiserver address for other nodes and the kubernetes Service (default: node IP)"},
			&cli.StringSliceFlag{Name: "tls-san", Usage: "extra host name or IP for the apiserver certificate (repeatable)"},
			&cli.StringFlag{Name: "cluster-cidr", Value: server.DefaultClusterCIDR, Usage: "pod network; each node gets a /24 of it"},
			&cli.StringFlag{Name: "service-cidr", Value: server.DefaultServiceCIDR, Usage: "service ClusterIP range"},
			&cli.StringFlag{Name: "cluster-dns", Usage: "cluster DNS service address (default: the 10th address of --service-cidr)"},
			&cli.StringFlag{Name: "cluster-domain", Value: server.DefaultClusterDomain, Usage: "cluster DNS domain"},
			writeKubeconfigFlag("where to write the admin kubeconfig"),
			&cli.StringFlag{Name: "write-kubeconfig-mode", Value: "0600", EnvVars: []string{"K1S_KUBECONFIG_MODE"}, Usage: "file mode of the admin kubeconfig (octal)"},
			componentArgFlag("kube-apiserver-arg", "key=value for kube-apiserver (repeatable; replaces k1s's default)"),
			componentArgFlag("kube-controller-manager-arg", "key=value for kube-controller-manager (repeatable)"),
			componentArgFlag("kube-scheduler-arg", "key=value for kube-scheduler (repeatable)"),
			componentArgFlag("etcd-arg", "key=value for etcd (repeatable)"),
			&cli.BoolFlag{Name: "disable-agent", Usage: "run only the control plane, no node"},
			&cli.StringSliceFlag{Name: "disable", Usage: "do not deploy this packaged add-on, and remove it if deployed (repeatable): " + strings.Join(addons.Names(), ", ")},
			&cli.BoolFlag{Name: "disable-network-policy", Usage: "do not enforce NetworkPolicies (the same as --disable network-policy)"},
			&cli.BoolFlag{Name: "disable-helm-controller", Usage: "do not install HelmCharts (helm.cattle.io/v1); their kinds are not served"},
			&cli.StringFlag{Name: "pod-security-default", Usage: "Pod Security level enforced in namespaces that set none (privileged, baseline, restricted; default baseline, restricted with --hardened); kube-system is exempt"},
			&cli.BoolFlag{Name: "secrets-encryption", EnvVars: []string{"K1S_SECRETS_ENCRYPTION"}, Usage: "encrypt Secrets in etcd with a generated key, existing ones too (stays on once enabled; see 'k1s secrets-encrypt')"},
			&cli.StringFlag{Name: "secrets-encryption-provider", EnvVars: []string{"K1S_SECRETS_ENCRYPTION_PROVIDER"}, Usage: "provider of the key --secrets-encryption generates: secretbox (default) or aescbc; a cluster that has a key keeps its provider"},
			&cli.StringFlag{Name: "audit-policy-file", Usage: "audit policy replacing k1s's (metadata of every request, no bodies)"},
			&cli.StringFlag{Name: "etcd-snapshot-schedule-cron", Value: server.DefaultEtcdSnapshotCron, Usage: "when to take scheduled etcd snapshots (five cron fields: minute hour day month weekday)"},
			&cli.IntFlag{Name: "etcd-snapshot-retention", Value: server.DefaultEtcdSnapshotRetention, Usage: "how many scheduled etcd snapshots to keep"},
			etcdSnapshotDirFlag(),
			etcdSnapshotCompressFlag(),
			&cli.BoolFlag{Name: "etcd-disable-snapshots", Usage: "take no scheduled etcd snapshots"},
			&cli.BoolFlag{Name: "cluster-reset", Usage: "on the stopped server: make its etcd a cluster of this one member, keeping its data (when the other servers are lost for good), then exit; start k1s again without this flag"},
			&cli.StringFlag{Name: "cluster-reset-restore-path", Usage: "restore this etcd snapshot on the stopped server (the current database is moved aside), then exit; start k1s again without this flag"},
			&cli.BoolFlag{Name: "cluster-init", EnvVars: []string{"K1S_CLUSTER_INIT"}, Usage: "make this the first server of a cluster other servers can join (etcd listens for peers on --advertise-address:2380 with mutual TLS; writes <data-dir>/server/token); converts a single server in place"},
			&cli.StringFlag{Name: "server", Aliases: []string{"s"}, EnvVars: []string{"K1S_URL"}, Usage: "join the cluster of this server (https://HOST:6443) as another server; a server with data ignores it"},
			&cli.StringFlag{Name: "token", Aliases: []string{"t"}, EnvVars: []string{"K1S_TOKEN"}, Usage: "with --server: the server token (the first server's <data-dir>/server/token; an agent's node-token does not join servers)"},
			&cli.StringFlag{Name: "token-file", EnvVars: []string{"K1S_TOKEN_FILE"}, Usage: "file holding the server token"},
			&cli.StringFlag{Name: "debug-profile", Usage: "serve Go's pprof for the k1s process on this loopback host:port (e.g. 127.0.0.1:6060); off by default"},
		),
			nodeFlags()...),
	}
}

// disabledAddons are --disable's add-ons and those of k3s's --disable-* aliases.
func disabledAddons(c *cli.Context) []string {
	disabled := c.StringSlice("disable")
	if c.Bool("disable-network-policy") && !slices.Contains(disabled, "network-policy") {
		disabled = append(disabled, "network-policy")
	}
	return disabled
}

// serverConfig turns flags into a server.Config; Complete validates it.
func serverConfig(c *cli.Context) (*server.Config, error) {
	cfg := &server.Config{
		DataDir:                    c.String("data-dir"),
		NodeName:                   c.String("node-name"),
		WithoutNode:                c.Bool("disable-agent"),
		ClusterInit:                c.Bool("cluster-init"),
		JoinServer:                 c.String("server"),
		HTTPSPort:                  c.Int("https-listen-port"),
		MetricsServerPort:          c.Int("metrics-server-port"),
		TLSSANs:                    c.StringSlice("tls-san"),
		ClusterDomain:              c.String("cluster-domain"),
		KubeconfigOutput:           c.String("write-kubeconfig"),
		ExtraAPIServerArgs:         componentArgs(c, "kube-apiserver-arg"),
		ExtraControllerManagerArgs: componentArgs(c, "kube-controller-manager-arg"),
		ExtraSchedulerArgs:         componentArgs(c, "kube-scheduler-arg"),
		ExtraEtcdArgs:              componentArgs(c, "etcd-arg"),
		ResolvConf:                 c.String("resolv-conf"),
		Disable:                    disabledAddons(c),
		DisableHelmController:      c.Bool("disable-helm-controller"),
		PodSecurityDefault:         c.String("pod-security-default"),
		AuditPolicyFile:            c.String("audit-policy-file"),
		SecretsEncryption:          c.Bool("secrets-encryption"),
		SecretsEncryptionProvider:  c.String("secrets-encryption-provider"),
		Hardened:                   c.Bool("hardened"),
		EtcdSnapshotDir:            c.String("etcd-snapshot-dir"),
		EtcdSnapshotCron:           c.String("etcd-snapshot-schedule-cron"),
		EtcdSnapshotRetention:      c.Int("etcd-snapshot-retention"),
		EtcdSnapshotCompress:       c.Bool("etcd-snapshot-compress"),
		EtcdDisableSnapshots:       c.Bool("etcd-disable-snapshots"),
	}
	if cfg.EtcdSnapshotRetention < 1 {
		return nil, fmt.Errorf("--etcd-snapshot-retention %d: keep at least 1 snapshot (or turn them off with --etcd-disable-snapshots)", cfg.EtcdSnapshotRetention)
	}
	var err error
	if cfg.JoinToken, err = joinToken(c); err != nil {
		return nil, err
	}
	// Read once: containerd and every other child inherit k1s's environment.
	if err := os.Unsetenv("K1S_TOKEN"); err != nil {
		return nil, err
	}
	for _, ip := range []struct {
		flag string
		dst  *net.IP
	}{{"node-ip", &cfg.NodeIP}, {"bind-address", &cfg.BindAddress}, {"advertise-address", &cfg.AdvertiseAddress}, {"cluster-dns", &cfg.ClusterDNS}} {
		if *ip.dst, err = flagIP(c, ip.flag); err != nil {
			return nil, err
		}
	}
	if cfg.ClusterCIDR, err = server.ParseCIDR("cluster-cidr", c.String("cluster-cidr")); err != nil {
		return nil, err
	}
	if cfg.ServiceCIDR, err = server.ParseCIDR("service-cidr", c.String("service-cidr")); err != nil {
		return nil, err
	}
	mode, err := strconv.ParseUint(c.String("write-kubeconfig-mode"), 8, 32)
	if err != nil || mode > 0o777 {
		return nil, fmt.Errorf("--write-kubeconfig-mode %q is not a file mode (like 0600)", c.String("write-kubeconfig-mode"))
	}
	cfg.KubeconfigMode = os.FileMode(mode)
	return cfg, nil
}

func runServer(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see 'k1s server --help')", c.Args().First())
	}
	cfg, err := serverConfig(c)
	if err != nil {
		return err
	}
	profile := c.String("debug-profile")
	if profile != "" {
		if err := profiling.ValidateAddress("debug-profile", profile); err != nil {
			return err
		}
	}
	gotune.Apply()
	logs, err := logging.Setup(logging.Options{Debug: c.Bool("debug"), Verbosity: c.Int("v"), Output: c.App.ErrWriter})
	if err != nil {
		return err
	}
	log := logs.Logger
	cfg.Log = log
	completed, err := cfg.Complete()
	if err != nil {
		return err
	}
	if file := c.String("cluster-reset-restore-path"); file != "" {
		return restoreSnapshot(c, completed, file)
	}
	if c.Bool("cluster-reset") {
		return resetCluster(c, completed)
	}
	// The server's own node is an agent like any other, joining this server through its
	// loopback address with the server's default token; its options are checked before the
	// server writes anything.
	withNode := !c.Bool("disable-agent")
	var node agent.CompletedConfig
	if withNode {
		if node, err = nodeConfig(c, completed.Dir().Root(), completed.NodeName, completed.NodeIP, completed.LocalAPIServerURL(), log).Complete(); err != nil {
			return err
		}
	}
	keepClusterTrafficLocal(completed)
	log.Infof("starting k1s %s server (kubernetes %s) on node %s (%s), data in %s", version.Version, version.Kubernetes(), completed.NodeName, completed.NodeIP, completed.Dir().Root())
	ctx, stop := signalContext()
	srv, err := server.Prepare(ctx, completed)
	stop()
	if err != nil {
		return err
	}
	defer srv.Close()
	components := srv.Components()
	if withNode {
		node.Token = srv.NodeToken
		// A single server's node has only its own apiserver to talk to; a node of a server
		// that can be joined fails over to the others through its load balancer.
		node.WithoutLoadBalancer = !srv.Clustered()
		agentNode, err := agent.Prepare(node)
		if err != nil {
			return err
		}
		components = agentNode.ComponentsAround(components)
	}
	if profile != "" {
		// First, so that the profiles cover the whole start.
		components = append([]component.Component{profiling.New("debug-profile", profile)}, components...)
	}
	return runComponents(logs, components)
}

// restoreSnapshot restores a snapshot on the stopped server and exits, as k3s does: the
// flag stays on the command line (a unit, the config file) until someone removes it, and a
// server that went on to start would restore again at every restart, losing what was written
// since.
func restoreSnapshot(c *cli.Context, completed server.CompletedConfig, file string) error {
	abs, err := filepath.Abs(file)
	if err != nil {
		return fmt.Errorf("--cluster-reset-restore-path %q: %w", file, err)
	}
	completed.Log.Infof("restoring etcd snapshot %s into %s", abs, completed.Dir().Server().EtcdDataDir())
	ctx, stop := signalContext()
	defer stop()
	aside, err := server.RestoreSnapshot(ctx, completed, abs, completed.JoinToken)
	if err != nil {
		return err
	}
	if aside != "" {
		fmt.Fprintf(c.App.Writer, "restored etcd snapshot %s; the previous database is in %s (delete it once the cluster is as expected)\n", abs, aside)
	} else {
		fmt.Fprintf(c.App.Writer, "restored etcd snapshot %s\n", abs)
	}
	fmt.Fprintln(c.App.Writer, "now start k1s again without --cluster-reset-restore-path (remove it from the config file or unit if it is there)")
	return nil
}

// resetCluster turns the stopped server's etcd into a cluster of one member with its data, and
// exits, saying what to do next (as restoreSnapshot does, for the same reason).
func resetCluster(c *cli.Context, completed server.CompletedConfig) error {
	ctx, stop := signalContext()
	defer stop()
	completed.Log.Infof("resetting the etcd cluster of %s to this one member", completed.Dir().Root())
	if err := server.ResetCluster(ctx, completed); err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer, "etcd is now a cluster of this one member, with this server's data")
	fmt.Fprintln(c.App.Writer, "now start k1s again without --cluster-reset (remove it from the config file or unit if it is there);")
	fmt.Fprintf(c.App.Writer, "on each other server: stop k1s, move <data-dir>/server/db aside, and start it with --server https://%s:%d and the server token to join again\n", completed.AdvertiseAddress, completed.HTTPSPort)
	return nil
}

// keepClusterTrafficLocal adds the cluster's own addresses to NO_PROXY when a proxy is
// configured (as on many systemd hosts): the in-process clients, the apiserver's calls to
// kubelets and containerd must never go through it.
func keepClusterTrafficLocal(cfg server.CompletedConfig) {
	proxied := false
	for _, v := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"} {
		if os.Getenv(v) != "" {
			proxied = true
		}
	}
	if !proxied {
		return
	}
	local := []string{"127.0.0.1", "localhost", "::1", cfg.NodeIP.String(), cfg.AdvertiseAddress.String(),
		cfg.ClusterCIDR.String(), cfg.ServiceCIDR.String(), ".svc", "." + cfg.ClusterDomain}
	for _, v := range []string{"NO_PROXY", "no_proxy"} {
		list := os.Getenv(v)
		if list != "" {
			list += ","
		}
		os.Setenv(v, list+strings.Join(local, ","))
	}
}
