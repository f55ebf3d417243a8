// Package agent assembles a k1s node: containerd as a child process, the system and user
// images, the kubelet and kube-proxy in-process, and the pod network.
package agent

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k1s-io/k1s/internal/args"
	"github.com/k1s-io/k1s/internal/component"
	k1scontainerd "github.com/k1s-io/k1s/internal/containerd"
	"github.com/k1s-io/k1s/internal/network"
	"github.com/k1s-io/k1s/internal/payload"
	"github.com/k1s-io/k1s/internal/pki"
)

// Config is what a node is told.
type Config struct {
	DataDir  string
	NodeName string
	NodeIP   net.IP

	ClusterCIDR   *net.IPNet
	ServiceCIDR   *net.IPNet
	ClusterDNS    net.IP
	ClusterDomain string
	// ResolvConf is the resolv.conf pods with dnsPolicy Default (CoreDNS among them) get.
	ResolvConf string

	NodeLabels         []string
	NodeTaints         []string
	ExtraKubeletArgs   []string
	ExtraKubeProxyArgs []string

	Log *logrus.Logger
}

func (c *Config) agentDir() string         { return filepath.Join(c.DataDir, "agent") }
func (c *Config) imagesDir() string        { return filepath.Join(c.agentDir(), "images") }
func (c *Config) containerdSocket() string { return k1scontainerd.DefaultSocket }

// cgroupDriver is systemd only when k1s itself runs as a systemd service (field notes §6).
func (c *Config) cgroupDriver() string {
	if os.Getenv("INVOCATION_ID") != "" {
		if _, err := os.Stat("/run/systemd/system"); err == nil {
			return "systemd"
		}
	}
	return "cgroupfs"
}

// Agent is a node ready to start.
type Agent struct {
	cfg         *Config
	node        *pki.Node
	payload     *payload.Dir
	kubeletArgs []string
	proxyMode   string
	snapshotter string
	// runtime (containerd, images) needs nothing of the cluster; onNode (kubelet, network,
	// kube-proxy) needs the cluster and the runtime.
	runtime []component.Component
	onNode  []component.Component
}

// Prepare checks what the node needs from the host, extracts the payload and builds the
// node's components. node holds the node's credentials.
func Prepare(cfg *Config, node *pki.Node) (*Agent, error) {
	a := &Agent{cfg: cfg, node: node}
	var err error
	if a.proxyMode, err = proxyMode(); err != nil {
		return nil, err
	}
	defaults := map[string]string{}
	if len(cfg.NodeLabels) > 0 {
		defaults["node-labels"] = strings.Join(cfg.NodeLabels, ",")
	}
	if len(cfg.NodeTaints) > 0 {
		defaults["register-with-taints"] = strings.Join(cfg.NodeTaints, ",")
	}
	if a.kubeletArgs, err = args.Merge(defaults, cfg.ExtraKubeletArgs); err != nil {
		return nil, fmt.Errorf("--kubelet-arg: %w", err)
	}
	// The kubelet exits the whole process when its port is taken: check first.
	if err := network.CheckPortsFree([]network.ListenPort{
		{Host: cfg.NodeIP.String(), Port: "10250", Owner: "kubelet", Flag: "--kubelet-arg port=…"},
		{Host: "127.0.0.1", Port: "10248", Owner: "kubelet health", Flag: "--kubelet-arg healthz-port=…"},
		{Host: "127.0.0.1", Port: "10256", Owner: "kube-proxy health", Flag: "--kube-proxy-arg healthz-bind-address=…"},
		{Host: "127.0.0.1", Port: "10249", Owner: "kube-proxy metrics", Flag: "--kube-proxy-arg metrics-bind-address=…"},
		{Host: "127.0.0.1", Port: "10010", Owner: "containerd streaming", Flag: "a containerd config template"},
	}); err != nil {
		return nil, err
	}
	if err := recordHostSysctls(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("recording the host's kernel settings: %w", err)
	}
	if a.payload, err = payload.Extract(cfg.DataDir, []string{"k1s", "kubectl", "ctr", "containerd"}); err != nil {
		return nil, err
	}

	containerdRoot := filepath.Join(cfg.agentDir(), "containerd")
	a.snapshotter = "overlayfs"
	if err := k1scontainerd.OverlaySupported(containerdRoot); err != nil {
		cfg.Log.Warnf("overlayfs does not work under %s (%v): using the slower native snapshotter", containerdRoot, err)
		a.snapshotter = "native"
	}
	restrictOOM := !k1scontainerd.HasCapSysResource()
	if restrictOOM {
		cfg.Log.Info("no CAP_SYS_RESOURCE: containerd restricts oom_score_adj")
	}
	cniConfDir := filepath.Join(cfg.agentDir(), "etc", "cni", "net.d")
	containerd := k1scontainerd.NewProcess(k1scontainerd.Config{
		Root:                containerdRoot,
		State:               "/run/k1s/containerd",
		Socket:              cfg.containerdSocket(),
		BinDir:              a.payload.BinDir(),
		OptDir:              filepath.Join(cfg.agentDir(), "containerd-opt"),
		CNIConfDir:          cniConfDir,
		PauseImage:          a.payload.Images["pause"],
		Snapshotter:         a.snapshotter,
		RestrictOOMScoreAdj: restrictOOM,
		SystemdCgroup:       cfg.cgroupDriver() == "systemd",
		TemplateFile:        filepath.Join(cfg.agentDir(), "etc", "containerd", "config.toml.tmpl"),
	})
	systemImages, err := a.payload.ImageTarballs()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.imagesDir(), 0o700); err != nil {
		return nil, err
	}

	etcDir := filepath.Join(cfg.agentDir(), "etc")
	kubeletConfig := filepath.Join(etcDir, "kubelet.conf")
	if err := pki.WriteFileAtomic(kubeletConfig, []byte(a.kubeletConfig()), 0o600); err != nil {
		return nil, err
	}
	kubelet, err := a.newKubelet(kubeletConfig)
	if err != nil {
		return nil, err
	}
	proxyConfig := filepath.Join(etcDir, "kube-proxy.conf")
	if err := pki.WriteFileAtomic(proxyConfig, []byte(a.kubeProxyConfig()), 0o600); err != nil {
		return nil, err
	}
	kubeProxy, err := a.newKubeProxy(proxyConfig)
	if err != nil {
		return nil, err
	}
	restConfig, err := clientcmd.BuildConfigFromFlags("", node.KubeletKubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", node.KubeletKubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, err
	}
	net := network.New(network.Config{
		NodeName:    cfg.NodeName,
		ClusterCIDR: cfg.ClusterCIDR,
		ServiceCIDR: cfg.ServiceCIDR,
		ConfDir:     cniConfDir,
		IPAMDir:     filepath.Join(cfg.agentDir(), "cni", "networks"),
		Client:      client,
		Log:         cfg.Log,
	})
	a.runtime = []component.Component{containerd, a.newImageImport(containerd, systemImages)}
	a.onNode = []component.Component{kubelet, net, kubeProxy}
	return a, nil
}

// Components are the node's components in start order.
func (a *Agent) Components() []component.Component {
	return append(append([]component.Component(nil), a.runtime...), a.onNode...)
}

// ComponentsAround returns the node's components arranged around other components (the
// control plane of a server): containerd and the image import start first in the background,
// the others run, and the kubelet starts once containerd and the images are ready.
func (a *Agent) ComponentsAround(others []component.Component) []component.Component {
	var out []component.Component
	for _, c := range a.runtime {
		out = append(out, component.Background(c))
	}
	out = append(out, others...)
	for _, c := range a.runtime {
		out = append(out, component.Await(c))
	}
	return append(out, a.onNode...)
}

// proxyMode picks kube-proxy's mode from the tools the host has.
func proxyMode() (string, error) {
	if _, err := exec.LookPath("iptables"); err == nil {
		return "iptables", nil
	}
	if _, err := exec.LookPath("nft"); err == nil {
		return "nftables", nil
	}
	return "", fmt.Errorf("neither iptables nor nft is installed: kube-proxy needs one of them (e.g. apt-get install iptables)")
}
