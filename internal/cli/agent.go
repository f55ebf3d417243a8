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
	"github.com/k1s-io/k1s/internal/gotune"
	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/logging"
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
			dataDirFlag("directory for all state"),
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
	token, err := joinToken(c)
	if err != nil {
		return err
	}
	// Read once: containerd, the shims and every other child inherit k1s's environment, and
	// must not inherit a secret they have no use for.
	if err := os.Unsetenv("K1S_TOKEN"); err != nil {
		return err
	}
	nodeIP, err := flagIP(c, "node-ip")
	if err != nil {
		return err
	}
	gotune.Apply()
	logs, err := logging.Setup(logging.Options{Debug: c.Bool("debug"), Verbosity: c.Int("v"), Output: c.App.ErrWriter})
	if err != nil {
		return err
	}
	log := logs.Logger
	cfg, err := nodeConfig(c, c.String("data-dir"), c.String("node-name"), nodeIP, serverURL, log).Complete()
	if err != nil {
		return err
	}
	cfg.Token = token
	lock, err := datadir.Acquire(cfg.DataDir)
	if err != nil {
		return err
	}
	defer lock.Release()
	log.Infof("starting k1s %s agent (kubernetes %s) on node %s (%s), joining %s, data in %s", version.Version, version.Kubernetes(), cfg.NodeName, cfg.NodeIP, serverURL, cfg.DataDir)
	node, err := agent.Prepare(cfg)
	if err != nil {
		return err
	}
	return runComponents(logs, node.Components())
}

// joinToken reads --token or --token-file; both empty is allowed (a node that has joined
// before restarts with its own identity).
func joinToken(c *cli.Context) (join.Token, error) {
	raw := c.String("token")
	if file := c.String("token-file"); file != "" {
		if raw != "" {
			return join.Token{}, fmt.Errorf("give --token or --token-file, not both")
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return join.Token{}, fmt.Errorf("--token-file: %w", err)
		}
		raw = string(data)
	}
	if strings.TrimSpace(raw) == "" {
		return join.Token{}, nil
	}
	token, err := join.ParseToken(raw)
	if err != nil {
		return token, err
	}
	if token.CAHash == "" && !c.Bool("insecure-skip-ca-verification") {
		return token, fmt.Errorf("the join token has no CA hash (a bare <id>.<secret>): use the full K10… token from the server's node-token file, or add --insecure-skip-ca-verification")
	}
	return token, nil
}

// nodeConfig is the node half of server and agent: the same join, the same components. The
// join token is set on the completed config: a server's own exists only once the server is
// prepared.
func nodeConfig(c *cli.Context, dataDir, nodeName string, nodeIP net.IP, serverURL string, log *logrus.Logger) *agent.Config {
	return &agent.Config{
		DataDir:                        dataDir,
		NodeName:                       nodeName,
		NodeIP:                         nodeIP,
		ServerURL:                      serverURL,
		LBServerPort:                   c.Int("lb-server-port"),
		InsecureSkipCAVerification:     c.Bool("insecure-skip-ca-verification"),
		ResolvConf:                     c.String("resolv-conf"),
		NodeLabels:                     c.StringSlice("node-label"),
		NodeTaints:                     c.StringSlice("node-taint"),
		ExtraKubeletArgs:               componentArgs(c, "kubelet-arg"),
		ExtraKubeProxyArgs:             componentArgs(c, "kube-proxy-arg"),
		FlannelBackend:                 c.String("flannel-backend"),
		FlannelIface:                   c.String("flannel-iface"),
		LocalStorageDir:                c.String("default-local-storage-path"),
		PrivateRegistry:                c.String("private-registry"),
		DisableDefaultRegistryEndpoint: c.Bool("disable-default-registry-endpoint"),
		ExternalIPs:                    c.StringSlice("node-external-ip"),
		Hardened:                       c.Bool("hardened"),
		Log:                            log,
	}
}
