package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	nodeutil "k8s.io/component-helpers/node/util"
	"k8s.io/klog/v2"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"

	"github.com/k1s-io/k1s/internal/args"
	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/kubeclient"
	"github.com/k1s-io/k1s/internal/network"
)

// kubeProxyDefaults follow the field notes: node ports only on the node's own address (no
// route_localnet), conntrack sysctls left alone, health and metrics on loopback. They are
// flags, not a config file: kube-proxy ignores flags when it is given a file, and every
// --kube-proxy-arg must reach it. Rule syncs are at most 100 ms apart, not upstream's 1 s
// (sized for clusters with thousands of Services): at start the Service, then each new
// endpoint, waited up to a second for its rules — CoreDNS answered ~0.7 s later.
// (The flag sets the minimum sync period of the nftables mode too.)
func (a *Agent) kubeProxyDefaults() map[string]string {
	return map[string]string{
		"kubeconfig":                        a.cfg.files.KubeletKubeconfig(),
		"hostname-override":                 a.cfg.NodeName,
		"proxy-mode":                        a.proxyMode,
		"nodeport-addresses":                a.cfg.NodeIP.String() + "/32",
		"conntrack-max-per-core":            "0",
		"conntrack-min":                     "0",
		"conntrack-tcp-timeout-established": "0s",
		"conntrack-tcp-timeout-close-wait":  "0s",
		"healthz-bind-address":              "127.0.0.1:10256",
		"metrics-bind-address":              "127.0.0.1:10249",
		"iptables-min-sync-period":          "100ms",
	}
}

func parseKubeProxyFlags(argv []string) (*proxyapp.Options, *pflag.FlagSet, error) {
	opts := proxyapp.NewOptions()
	fs := pflag.NewFlagSet("kube-proxy-arg", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	opts.AddFlags(fs)
	if err := fs.Parse(argv); err != nil {
		return nil, nil, fmt.Errorf("--kube-proxy-arg: %w", err)
	}
	return opts, fs, nil
}

// newKubeProxy checks the user's --kube-proxy-arg now and returns kube-proxy, whose command
// line is completed with the cluster CIDR when it starts, and the ports it will listen on.
func (a *Agent) newKubeProxy() (component.Component, network.ListenPort, error) {
	argv, err := args.Merge(a.kubeProxyDefaults(), a.cfg.ExtraKubeProxyArgs)
	if err != nil {
		return nil, network.ListenPort{}, fmt.Errorf("--kube-proxy-arg: %w", err)
	}
	if _, _, err := parseKubeProxyFlags(argv); err != nil {
		return nil, network.ListenPort{}, err
	}
	a.kubeProxyArgs = argv
	healthz, _ := args.Value(argv, "healthz-bind-address")
	host, port, err := net.SplitHostPort(healthz)
	if err != nil {
		return nil, network.ListenPort{}, fmt.Errorf("--kube-proxy-arg healthz-bind-address %q is not host:port", healthz)
	}
	listen := network.ListenPort{Host: host, Port: port, Owner: "kube-proxy health", Flag: "--kube-proxy-arg healthz-bind-address=…"}
	run := func(ctx context.Context) error {
		ctx = klog.NewContext(ctx, klog.Background().WithValues("component", "kube-proxy"))
		defaults := a.kubeProxyDefaults()
		defaults["cluster-cidr"] = a.cluster.ClusterCIDR.String()
		argv, err := args.Merge(defaults, a.cfg.ExtraKubeProxyArgs)
		if err != nil {
			return err
		}
		opts, fs, err := parseKubeProxyFlags(argv)
		if err != nil {
			return err
		}
		if err := opts.Complete(fs); err != nil {
			return fmt.Errorf("kube-proxy configuration: %w", err)
		}
		if err := opts.Validate(); err != nil {
			return fmt.Errorf("kube-proxy configuration: %w", err)
		}
		waitNodeAddresses(ctx, argv)
		errCh := make(chan error, 1)
		go func() { errCh <- opts.Run(ctx) }()
		select {
		case err := <-errCh:
			return err
		case <-ctx.Done():
			// kube-proxy's Run does not return when its context ends; its informers and
			// sync loop do stop with the context, the rest ends with the process.
			return nil
		}
	}
	health := "http://" + net.JoinHostPort(loopbackFor(host), port) + "/healthz"
	return component.NewFunc("kube-proxy", run, component.HTTPReady(health, false)), listen, nil
}

// nodeAddressesWait bounds waitNodeAddresses as kube-proxy bounds its own wait, after which it
// runs without the node's addresses.
const nodeAddressesWait = 30 * time.Second

// waitNodeAddresses waits, watching, until the kubelet has registered kube-proxy's node with its
// addresses. kube-proxy's own wait (its NodeManager) looks once a second, so on a new node it
// wrote the Services' rules up to a second after the node registered, and a pod started
// meanwhile (CoreDNS on a first start) had its first connections to a Service dropped. Errors
// are kube-proxy's to report: it makes the same client.
func waitNodeAddresses(ctx context.Context, argv []string) {
	kubeconfig, _ := args.Value(argv, "kubeconfig")
	override, _ := args.Value(argv, "hostname-override")
	node, err := nodeutil.GetHostname(override) // as kube-proxy names its node
	if err != nil {
		return
	}
	client, err := kubeclient.New(kubeconfig)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, nodeAddressesWait)
	defer cancel()
	_ = kubeclient.WaitNode(ctx, client, node, func(n *corev1.Node) (bool, error) {
		return len(n.Status.Addresses) > 0, nil
	})
}
