package cli

import (
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/agent"
	"github.com/k1s-io/k1s/internal/datadir"
	"github.com/k1s-io/k1s/internal/logging"
	"github.com/k1s-io/k1s/internal/network"
	"github.com/k1s-io/k1s/internal/pki"
	"github.com/k1s-io/k1s/internal/server"
	"github.com/k1s-io/k1s/internal/version"
)

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:         "agent",
		Usage:        "Run a node that joins a k1s server",
		OnUsageError: usageError,
		Before:       applyConfigFile,
		Action:       runAgent,
		Flags: append(append([]cli.Flag{configFlag()}, logFlags()...), append([]cli.Flag{
			&cli.StringFlag{Name: "server", Aliases: []string{"s"}, EnvVars: []string{"K1S_URL"}, Usage: "the server to join: https://HOST:6443"},
			&cli.StringFlag{Name: "token", Aliases: []string{"t"}, EnvVars: []string{"K1S_TOKEN"}, Usage: "join token (the server's <data-dir>/server/node-token, or 'k1s token create'); not needed once the node has joined"},
			&cli.StringFlag{Name: "token-file", EnvVars: []string{"K1S_TOKEN_FILE"}, Usage: "file holding the join token"},
			&cli.BoolFlag{Name: "insecure-skip-ca-verification", Usage: "accept a bare <id>.<secret> token without CA hash (the server is then not authenticated by a pinned CA)"},
			&cli.StringFlag{Name: "data-dir", Aliases: []string{"d"}, Value: server.DefaultDataDir, EnvVars: []string{"K1S_DATA_DIR"}, Usage: "directory for all state"},
			&cli.StringFlag{Name: "node-name", EnvVars: []string{"K1S_NODE_NAME"}, Usage: "node name (default: host name)"},
			&cli.StringFlag{Name: "node-ip", Usage: "this node's address (default: the address of the default route's interface)"},
		}, nodeFlags()...)...),
	}
}

func runAgent(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see 'k1s agent --help')", c.Args().First())
	}
	serverURL := c.String("server")
	if serverURL == "" {
		return fmt.Errorf("--server is required: the https://HOST:6443 address of a k1s server")
	}
	if err := agent.ValidateServerURL(serverURL); err != nil {
		return err
	}
	token, err := joinToken(c)
	if err != nil {
		return err
	}
	var nodeIP net.IP
	if v := c.String("node-ip"); v != "" {
		if nodeIP, err = server.ParseIP("node-ip", v); err != nil {
			return err
		}
	}
	if nodeIP, err = network.NodeIP(nodeIP); err != nil {
		return err
	}
	nodeName, err := network.NodeName(c.String("node-name"))
	if err != nil {
		return err
	}
	frugalGC()
	logs, err := logging.Setup(logging.Options{Debug: c.Bool("debug"), Verbosity: c.Int("v"), Output: c.App.ErrWriter})
	if err != nil {
		return err
	}
	log := logs.Logger
	cfg := nodeConfig(c, c.String("data-dir"), nodeName, nodeIP, serverURL, token, log)
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := datadir.EnsureWritable(cfg.DataDir); err != nil {
		return err
	}
	lock, err := datadir.Acquire(cfg.DataDir)
	if err != nil {
		return err
	}
	defer lock.Release()
	log.Infof("starting k1s %s agent (kubernetes %s) on node %s (%s), joining %s, data in %s", version.Version, version.Kubernetes(), nodeName, nodeIP, serverURL, cfg.DataDir)
	node, err := agent.Prepare(cfg)
	if err != nil {
		return err
	}
	return runComponents(logs, node.Components())
}

// joinToken reads --token or --token-file; both empty is allowed (a node that has joined
// before restarts with its own identity).
func joinToken(c *cli.Context) (pki.JoinToken, error) {
	raw := c.String("token")
	if file := c.String("token-file"); file != "" {
		if raw != "" {
			return pki.JoinToken{}, fmt.Errorf("give --token or --token-file, not both")
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return pki.JoinToken{}, fmt.Errorf("--token-file: %w", err)
		}
		raw = string(data)
	}
	if strings.TrimSpace(raw) == "" {
		return pki.JoinToken{}, nil
	}
	token, err := pki.ParseJoinToken(raw)
	if err != nil {
		return token, err
	}
	if token.CAHash == "" && !c.Bool("insecure-skip-ca-verification") {
		return token, fmt.Errorf("the join token has no CA hash (a bare <id>.<secret>): use the full K10… token from the server's node-token file, or add --insecure-skip-ca-verification")
	}
	return token, nil
}

// nodeFlags are the flags of a node, in `agent` and in the node half of `server`.
func nodeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "resolv-conf", EnvVars: []string{"K1S_RESOLV_CONF"}, Value: "/etc/resolv.conf", Usage: "resolv.conf for the kubelet (and so for CoreDNS's upstream)"},
		&cli.StringSliceFlag{Name: "node-label", Usage: "key=value label to register the node with (repeatable)"},
		&cli.StringSliceFlag{Name: "node-taint", Usage: "key=value:Effect taint to register the node with (repeatable)"},
		&cli.StringSliceFlag{Name: "kubelet-arg", Usage: "key=value for the kubelet (repeatable)"},
		&cli.StringSliceFlag{Name: "kube-proxy-arg", Usage: "key=value for kube-proxy (repeatable)"},
		&cli.StringFlag{Name: "flannel-backend", Value: network.BackendVXLAN, Usage: "pod network between nodes: vxlan, host-gw (nodes on one L2 network) or none"},
		&cli.StringFlag{Name: "flannel-iface", Usage: "interface the pod network between nodes uses (default: the node IP's)"},
		&cli.BoolFlag{Name: "hardened", EnvVars: []string{"K1S_HARDENED"}, Usage: "CIS hardening: restricted Pod Security, secrets encryption, EventRateLimit, kubelet protect-kernel-defaults, seccomp default, pod PID limit (see README)"},
	}
}

// nodeConfig is the node half of server and agent: the same join, the same components.
func nodeConfig(c *cli.Context, dataDir, nodeName string, nodeIP net.IP, serverURL string, token pki.JoinToken, log *logrus.Logger) *agent.Config {
	return &agent.Config{
		DataDir:                    dataDir,
		NodeName:                   nodeName,
		NodeIP:                     nodeIP,
		ServerURL:                  serverURL,
		Token:                      token,
		InsecureSkipCAVerification: c.Bool("insecure-skip-ca-verification"),
		ResolvConf:                 c.String("resolv-conf"),
		NodeLabels:                 c.StringSlice("node-label"),
		NodeTaints:                 c.StringSlice("node-taint"),
		ExtraKubeletArgs:           c.StringSlice("kubelet-arg"),
		ExtraKubeProxyArgs:         c.StringSlice("kube-proxy-arg"),
		FlannelBackend:             c.String("flannel-backend"),
		FlannelIface:               c.String("flannel-iface"),
		Hardened:                   c.Bool("hardened"),
		Log:                        log,
	}
}
