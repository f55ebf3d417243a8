package agent

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"

	"github.com/k1s-io/k1s/internal/component"
)

// kubeProxyConfigTemplate follows the field notes: node ports only on the node's own address
// (no route_localnet), conntrack sysctls left alone, health and metrics on loopback.
const kubeProxyConfigTemplate = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %q
hostnameOverride: %q
mode: %s
clusterCIDR: %q
nodePortAddresses: [%q]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
`

func (a *Agent) kubeProxyConfig() string {
	return fmt.Sprintf(kubeProxyConfigTemplate, a.node.KubeProxyKubeconfig, a.cfg.NodeName, a.proxyMode,
		a.cfg.ClusterCIDR, a.cfg.NodeIP.String()+"/32")
}

// newKubeProxy returns kube-proxy, configured from its config file (written before it starts:
// kube-proxy exits when its config file changes) plus the user's --kube-proxy-arg.
func (a *Agent) newKubeProxy(configFile string) (component.Component, error) {
	opts := proxyapp.NewOptions()
	fs := pflag.NewFlagSet("kube-proxy-arg", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	opts.AddFlags(fs)
	if err := fs.Parse(append([]string{"--config=" + configFile}, a.cfg.ExtraKubeProxyArgs...)); err != nil {
		return nil, fmt.Errorf("--kube-proxy-arg: %w", err)
	}
	run := func(ctx context.Context) error {
		ctx = klog.NewContext(ctx, klog.Background().WithValues("component", "kube-proxy"))
		if err := opts.Complete(fs); err != nil {
			return fmt.Errorf("kube-proxy configuration: %w", err)
		}
		if err := opts.Validate(); err != nil {
			return fmt.Errorf("kube-proxy configuration: %w", err)
		}
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
	return component.NewFunc("kube-proxy", run, component.HTTPReady("http://127.0.0.1:10256/healthz", false)), nil
}
