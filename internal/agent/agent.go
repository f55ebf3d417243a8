// Package agent assembles a k1s node: containerd as a child process, the system and user
// images, the join (node identity through the Kubernetes API), the kubelet and kube-proxy
// in-process, and the pod network. A server's own node is an agent like any other.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/k1s-io/k1s/internal/addons"
	"github.com/k1s-io/k1s/internal/agent/loadbalancer"
	"github.com/k1s-io/k1s/internal/args"
	"github.com/k1s-io/k1s/internal/component"
	k1scontainerd "github.com/k1s-io/k1s/internal/containerd"
	"github.com/k1s-io/k1s/internal/containerd/registries"
	"github.com/k1s-io/k1s/internal/datadir"
	"github.com/k1s-io/k1s/internal/host"
	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/kubeclient"
	"github.com/k1s-io/k1s/internal/layout"
	"github.com/k1s-io/k1s/internal/network"
	"github.com/k1s-io/k1s/internal/payload"
)

// Config is what a node is told: the options. The cluster's own settings (CIDRs, DNS) it
// reads from the cluster once it has joined. Complete it once and give the CompletedConfig to
// Prepare.
type Config struct {
	DataDir  string
	NodeName string
	NodeIP   net.IP

	// ServerURL is the apiserver to join (https); Token authenticates the node and, through
	// its CA hash, the server.
	ServerURL string
	Token     join.Token
	// LBServerPort is where the node's API load balancer listens on 127.0.0.1.
	// WithoutLoadBalancer is for a single server's node: only its own apiserver to talk to.
	LBServerPort        int
	WithoutLoadBalancer bool
	// InsecureSkipCAVerification allows a token without CA hash.
	InsecureSkipCAVerification bool

	// ResolvConf is the resolv.conf pods with dnsPolicy Default (CoreDNS among them) get.
	ResolvConf string

	NodeLabels         []string
	NodeTaints         []string
	ExtraKubeletArgs   []string
	ExtraKubeProxyArgs []string

	// FlannelBackend is vxlan, host-gw or none; FlannelIface the interface between nodes
	// (default: the node IP's).
	FlannelBackend string
	FlannelIface   string

	// PrivateRegistry is registries.yaml (k3s's format): registry mirrors and credentials.
	// DisableDefaultRegistryEndpoint pulls a mirrored registry's images from its mirrors only.
	PrivateRegistry                string
	DisableDefaultRegistryEndpoint bool

	// LocalStorageDir keeps the node's local-storage volumes (default: <data-dir>/storage).
	LocalStorageDir string
	// ExternalIPs are addresses of the node that others reach it by (--node-external-ip),
	// which LoadBalancer Services get instead of its node IP.
	ExternalIPs []string

	// Hardened runs the kubelet with the k3s hardening guide's settings (hardenedKubelet),
	// the kernel parameters it needs set by k1s first.
	Hardened bool

	Log *logrus.Logger
}

// completedConfig is a Config validated and with every default filled in.
type completedConfig struct {
	Config
	dir   layout.DataDir
	files layout.Node
	// registries is PrivateRegistry's content.
	registries *registries.Registry
}

// CompletedConfig is what Complete returns and Prepare takes: a node cannot be prepared from
// options that were not completed.
type CompletedConfig struct{ *completedConfig }

// cgroupDriver is systemd only when k1s itself runs as a systemd service (field notes §6).
func (c *completedConfig) cgroupDriver() string {
	if os.Getenv("INVOCATION_ID") != "" {
		if _, err := os.Stat("/run/systemd/system"); err == nil {
			return "systemd"
		}
	}
	return "cgroupfs"
}

// maxSocketPath is the longest path a unix socket can be bound at (sun_path less its NUL).
const maxSocketPath = 107

// Complete validates the options once, checking what can be checked before anything is
// written, and fills in the defaults (node name and address from the host). It leaves o
// unchanged.
func (o *Config) Complete() (CompletedConfig, error) {
	c := &completedConfig{Config: *o}
	if err := c.complete(); err != nil {
		return CompletedConfig{}, err
	}
	return CompletedConfig{c}, nil
}

func (c *completedConfig) complete() error {
	if err := join.ValidateServerURL(c.ServerURL); err != nil {
		return err
	}
	if c.Log == nil {
		return fmt.Errorf("agent config: no logger")
	}
	var err error
	if c.NodeName, err = network.NodeName(c.NodeName); err != nil {
		return err
	}
	if c.NodeIP, err = network.NodeIP(c.NodeIP); err != nil {
		return err
	}
	if c.DataDir == "" {
		c.DataDir = layout.DefaultDataDir
	}
	if c.LBServerPort == 0 {
		c.LBServerPort = layout.LoadBalancerPort
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("--data-dir %q: %w", c.DataDir, err)
	}
	c.DataDir = abs
	c.dir = layout.DataDir(abs)
	c.files = c.dir.Node()
	// The kubelet listens on unix sockets under its directory (pod-resources/<random>), and
	// the kernel binds no socket path longer than 107 bytes: the kubelet would exit later.
	if n := len(filepath.Join(c.files.KubeletDir(), "pod-resources", "0123456789")); n > maxSocketPath {
		return fmt.Errorf("--data-dir %s is too long: the kubelet's sockets under it would take %d bytes, more than the kernel's %d; choose a shorter --data-dir", c.DataDir, n, maxSocketPath)
	}
	switch c.FlannelBackend {
	case "":
		c.FlannelBackend = network.BackendVXLAN
	case network.BackendVXLAN, network.BackendHostGW, network.BackendNone:
	default:
		return fmt.Errorf("--flannel-backend %q: choose vxlan, host-gw or none", c.FlannelBackend)
	}
	if _, err := os.Stat(c.ResolvConf); err != nil {
		return fmt.Errorf("--resolv-conf %s: %w", c.ResolvConf, err)
	}
	var ips []string
	for _, v := range c.ExternalIPs {
		for _, s := range strings.Split(v, ",") {
			ip := net.ParseIP(strings.TrimSpace(s))
			if ip == nil {
				return fmt.Errorf("--node-external-ip %q is not an IP address", s)
			}
			ips = append(ips, ip.String())
		}
	}
	c.ExternalIPs = ips
	if c.PrivateRegistry == "" {
		c.PrivateRegistry = layout.DefaultRegistries
	}
	if c.registries, err = registries.Load(c.PrivateRegistry); err != nil {
		return fmt.Errorf("--private-registry %w", err)
	}
	c.registries.DisableDefaultEndpoint = c.DisableDefaultRegistryEndpoint
	if c.LocalStorageDir == "" {
		c.LocalStorageDir = c.dir.LocalStorage()
	}
	if c.LocalStorageDir, err = filepath.Abs(c.LocalStorageDir); err != nil {
		return fmt.Errorf("--default-local-storage-path: %w", err)
	}
	return nil
}

// Agent is a node ready to start.
type Agent struct {
	cfg       *completedConfig
	payload   *payload.Dir
	kubelet   *kubelet
	proxyMode string
	// kubeProxyArgs is kube-proxy's command line before the cluster's settings are added.
	kubeProxyArgs []string
	snapshotter   string
	// cluster is what the node learned from the cluster at join; the components after the
	// join read it when they start.
	cluster *join.NodeConfig
	// runtime (containerd, images) needs nothing of the cluster; join needs only the
	// apiserver; onNode (kubelet, network, kube-proxy) needs both.
	runtime []component.Component
	joiner  component.Component
	onNode  []component.Component
	// lb is an agent's API load balancer (nil on a server's own node); lbFirst starts it
	// before the join, lbAfterJoin keeps its servers current.
	lb                   *loadbalancer.LoadBalancer
	lbFirst, lbAfterJoin []component.Component
}

// Prepare checks what the node needs from the host and the user's arguments, extracts the
// payload and builds the node's components. The caller holds the data directory's lock.
func Prepare(completed CompletedConfig) (*Agent, error) {
	cfg := completed.completedConfig
	if cfg == nil {
		return nil, errors.New("agent: Prepare needs a config from Complete")
	}
	// Without the memory controller the kubelet cannot limit pods (the usual case on a
	// Raspberry Pi): say so now, with the fix, rather than let the kubelet fail later.
	if ok, found := host.MemoryCgroupAvailable("", ""); !ok {
		return nil, fmt.Errorf("the memory cgroup controller is missing (%s): %s", found, host.MemoryCgroupFix)
	}
	a := &Agent{cfg: cfg}
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
	kubeletArgs, err := args.Merge(defaults, cfg.ExtraKubeletArgs)
	if err != nil {
		return nil, fmt.Errorf("--kubelet-arg: %w", err)
	}
	if a.kubelet, err = a.newKubelet(kubeletArgs); err != nil {
		return nil, err
	}
	kubeProxy, proxyHealth, err := a.newKubeProxy()
	if err != nil {
		return nil, err
	}
	lbPort, err := a.prepareLoadBalancer()
	if err != nil {
		return nil, err
	}
	a.lbFirst, a.lbAfterJoin = a.loadBalancerComponents()
	// The kubelet exits the whole process when its port is taken: check first, on the
	// ports the merged arguments give.
	ports := []network.ListenPort{
		{Host: cfg.NodeIP.String(), Port: strconv.Itoa(int(a.kubelet.scratch.Port)), Owner: "kubelet", Flag: "--kubelet-arg port=…"},
		{Host: a.kubelet.scratch.HealthzBindAddress, Port: strconv.Itoa(int(a.kubelet.scratch.HealthzPort)), Owner: "kubelet health", Flag: "--kubelet-arg healthz-port=…"},
		proxyHealth,
		{Host: "127.0.0.1", Port: strconv.Itoa(layout.ContainerdStreamingPort), Owner: "containerd streaming", Flag: "a containerd config template"},
	}
	if lbPort != nil {
		ports = append(ports, *lbPort)
	}
	if err := network.CheckPortsFree(ports); err != nil {
		return nil, err
	}
	if err := host.RecordSysctls(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("recording the host's kernel settings: %w", err)
	}
	if cfg.Hardened {
		if err := host.SetKubeletTunables(); err != nil {
			return nil, err
		}
	}
	for name, argv := range map[string][]string{"kubelet": kubeletArgs, "kube-proxy": a.kubeProxyArgs} {
		if err := datadir.RecordArgs(cfg.dir, layout.PartAgent, name, argv); err != nil {
			return nil, err
		}
	}
	if err := host.EnsureCgroupRoot(cfg.DataDir, a.kubelet.cgroupRoot()); err != nil {
		return nil, err
	}
	// The payload is extracted (at a first start, or after an upgrade: 0.2 s of a small box's
	// CPU) while the control plane starts; containerd runs the k1s binary itself, and only
	// the image import and the kubelet's pods need the payload's files.
	if a.payload, err = payload.Locate(cfg.dir.Root()); err != nil {
		return nil, err
	}
	extract := component.Task("payload", "extracting the payload (containerd shim, runc, CNI plugins, system images)",
		func(context.Context, component.Progress) error {
			_, err := payload.Extract(cfg.dir.Root(), []string{"k1s", "kubectl", "ctr", "containerd"})
			return err
		})

	containerdRoot := cfg.files.ContainerdRoot()
	a.snapshotter = "overlayfs"
	if err := k1scontainerd.OverlaySupported(containerdRoot); err != nil {
		cfg.Log.Warnf("overlayfs does not work under %s (%v): using the slower native snapshotter", containerdRoot, err)
		a.snapshotter = "native"
	}
	restrictOOM := !k1scontainerd.HasCapSysResource()
	if restrictOOM {
		cfg.Log.Info("no CAP_SYS_RESOURCE: containerd restricts oom_score_adj")
	}
	cniConfDir := cfg.files.CNIConfDir()
	registryProxy, registryConfig, err := prepareRegistries(cfg)
	if err != nil {
		return nil, err
	}
	containerd := k1scontainerd.NewProcess(k1scontainerd.Config{
		Registry:            registryConfig,
		Root:                containerdRoot,
		ConfigFile:          cfg.files.ContainerdConfig(),
		LogFile:             cfg.files.ContainerdLog(),
		State:               layout.ContainerdState,
		Socket:              layout.ContainerdSocket,
		BinDir:              a.payload.BinDir(),
		OptDir:              cfg.files.ContainerdOptDir(),
		CNIConfDir:          cniConfDir,
		PauseImage:          a.payload.Images["pause"],
		Snapshotter:         a.snapshotter,
		RestrictOOMScoreAdj: restrictOOM,
		SystemdCgroup:       cfg.cgroupDriver() == "systemd",
		StreamingPort:       layout.ContainerdStreamingPort,
		TemplateFile:        cfg.files.ContainerdTemplate(),
	})
	if err := os.MkdirAll(cfg.files.ImagesDir(), 0o700); err != nil {
		return nil, err
	}
	podNetwork := network.New(func() (network.Config, error) {
		return network.Config{
			NodeName:    cfg.NodeName,
			NodeIP:      cfg.NodeIP,
			ClusterCIDR: a.cluster.ClusterCIDR,
			ServiceCIDR: a.cluster.ServiceCIDR,
			Backend:     cfg.FlannelBackend,
			Iface:       cfg.FlannelIface,
			ConfList:    cfg.files.CNIConfList(),
			IPAMDir:     cfg.files.IPAMDir(),
			FlannelConf: cfg.files.FlannelConf(),
			Kubeconfig:  cfg.files.KubeletKubeconfig(),
			Firewall:    a.proxyMode,
			Log:         cfg.Log,
		}, nil
	})
	a.runtime = append([]component.Component{extract}, append(registryProxy, containerd,
		a.newImageImport(containerd, extract, a.payload.ImageTarballs()))...)
	a.joiner = a.newJoin()
	// The packaged add-ons' node-side parts, of those the cluster has not disabled (known
	// once the node has joined).
	nodeAddons := component.Group("add-ons on the node", func() ([]component.Component, error) {
		return addons.NodeComponents(addons.NodeSettings{NodeName: cfg.NodeName, Client: kubeclient.NewLazy(cfg.files.KubeletKubeconfig()).Client,
			LocalStorageDir: cfg.LocalStorageDir, ExternalIPs: cfg.ExternalIPs, Firewall: a.proxyMode, Log: cfg.Log},
			a.cluster.DisabledAddons), nil
	})
	// Neither the pod network nor kube-proxy needs the kubelet, only the joined cluster's
	// settings: they set up the host while the kubelet starts and registers the node (which
	// kube-proxy then finds at once) and the controller-manager gives it a pod CIDR.
	a.onNode = append(a.lbAfterJoin, component.Background(podNetwork), component.Background(kubeProxy),
		a.kubelet.component, component.Await(podNetwork), component.Await(kubeProxy), nodeAddons)
	return a, nil
}

// Components are the node's components in start order.
func (a *Agent) Components() []component.Component { return a.ComponentsAround(nil) }

// ComponentsAround returns the node's components arranged around other components (the
// control plane of a server): containerd and the image import start first in the background,
// the others run, the API load balancer starts and the node joins, and the kubelet starts once
// containerd and the images are ready too.
func (a *Agent) ComponentsAround(others []component.Component) []component.Component {
	var out []component.Component
	for _, c := range a.runtime {
		out = append(out, component.Background(c))
	}
	// The load balancer starts once a server's own apiserver (among others) serves.
	out = append(append(append(out, others...), a.lbFirst...), a.joiner)
	for _, c := range a.runtime {
		out = append(out, component.Await(c))
	}
	return append(out, a.onNode...)
}

// prepareRegistries writes containerd's registry hosts from registries.yaml and returns its
// registry configuration, and the proxy that rewrites repository names if a mirror asks for
// that (containerd cannot).
func prepareRegistries(cfg *completedConfig) ([]component.Component, string, error) {
	reg, dir := cfg.registries, cfg.files.ContainerdCertsDir()
	var proxyURL string
	var out []component.Component
	if reg.NeedsProxy() {
		proxy, err := registries.NewProxy(reg, 0, cfg.Log)
		if err != nil {
			return nil, "", fmt.Errorf("the registry proxy for %s: %w", cfg.PrivateRegistry, err)
		}
		proxyURL = proxy.URL()
		out = append(out, component.NewFunc("registry proxy", proxy.Serve, nil))
	}
	if err := reg.WriteHostsDir(dir, proxyURL); err != nil {
		return nil, "", err
	}
	return out, reg.CRIConfig(dir), nil
}

// proxyMode picks kube-proxy's mode from the tools the host has; the pod network uses the same
// firewall.
func proxyMode() (string, error) {
	if _, err := exec.LookPath("iptables"); err == nil {
		return network.FirewallIPTables, nil
	}
	if _, err := exec.LookPath("nft"); err == nil {
		return network.FirewallNFTables, nil
	}
	return "", fmt.Errorf("neither iptables nor nft is installed: kube-proxy needs one of them (e.g. apt-get install iptables)")
}
