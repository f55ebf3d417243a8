// Package addons is the registry of k1s's packaged add-ons: for each, its name (the --disable
// key), its manifest, the payload images it uses, and its cluster-side and node-side
// components. The server deploys every entry through the one deployer (internal/deploy), and
// removes those the user disabled.
package addons

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/k1s-io/k1s/internal/addons/coredns"
	"github.com/k1s-io/k1s/internal/addons/localstorage"
	"github.com/k1s-io/k1s/internal/addons/metrics"
	"github.com/k1s-io/k1s/internal/addons/netpol"
	"github.com/k1s-io/k1s/internal/addons/servicelb"
	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/controllers"
	"github.com/k1s-io/k1s/internal/deploy"
	"github.com/k1s-io/k1s/internal/layout"
	"github.com/k1s-io/k1s/internal/pki"
)

// Settings are the cluster's settings add-ons are rendered with.
type Settings struct {
	ClusterDNS    net.IP
	ClusterDomain string
	// ResolvConf lists the upstream resolvers of the server's node.
	ResolvConf string
	// Images are the payload's image references by name (pause, coredns).
	Images map[string]string
	// Client reaches the API server as the cluster's controllers do.
	Client func() (kubernetes.Interface, error)
	// APIServerPort is where the servers' apiservers listen (--https-listen-port),
	// MetricsServerPort where metrics-server does (--metrics-server-port).
	APIServerPort, MetricsServerPort int
	// NodeIP is the server's node address, where its in-process add-on servers listen.
	NodeIP net.IP
	// Files names the server's certificates and kubeconfigs.
	Files layout.Server
	// APIServerClientAuth are the apiserver's client-ca-file and requestheader-* flags as it
	// runs with them (pki.ClientAuthArgs and the user's --kube-apiserver-arg).
	APIServerClientAuth map[string]string
	Log                 logrus.FieldLogger
}

// NodeSettings are what a node-side component of an add-on is built with.
type NodeSettings struct {
	NodeName string
	// Client is the node's own client, one for all its add-ons' components.
	Client func() (kubernetes.Interface, error)
	// LocalStorageDir is where the node keeps local-storage volumes.
	LocalStorageDir string
	// ExternalIPs are the node's --node-external-ip.
	ExternalIPs []string
	// Firewall is kube-proxy's mode (network.FirewallIPTables or FirewallNFTables).
	Firewall string
	Log      logrus.FieldLogger
}

// Addon is one packaged add-on.
type Addon struct {
	// Name is the --disable key and the manifest's file name (Name.yaml in manifests/).
	Name string
	// NoManifest: the add-on is only controllers, and has no objects to deploy.
	NoManifest bool
	// Images are the payload images its manifests use.
	Images []string
	// Values fills its manifest's %{NAME}% placeholders.
	Values func(Settings) (map[string]string, error)
	// Cluster, if set, returns its cluster-side controllers, run by the server that holds the
	// controllers' lease.
	Cluster func(Settings) []controllers.Controller
	// Node, if set, returns its node-side components, run on every node.
	Node func(NodeSettings) []component.Component
	// Removal, if set, returns the controllers that undo what the add-on did beyond its
	// manifest's objects, run instead of Cluster while it is disabled.
	Removal func(Settings) []controllers.Controller
}

// Registry lists k1s's packaged add-ons.
func Registry() []Addon {
	return []Addon{
		{
			Name:   "coredns",
			Images: []string{"coredns"},
			Values: func(s Settings) (map[string]string, error) {
				values, forwardless, err := coredns.Values(s.ClusterDNS, s.ClusterDomain, s.ResolvConf, s.Images["coredns"])
				if err == nil && forwardless && s.Log != nil {
					s.Log.Warnf("%s names no resolver CoreDNS can forward to (loopback resolvers are the pod's own): cluster names resolve, others do not", s.ResolvConf)
				}
				return values, err
			},
		},
		{
			Name: "local-storage",
			Cluster: func(s Settings) []controllers.Controller {
				return []controllers.Controller{&localstorage.Provisioner{Client: s.Client}}
			},
			Node: func(s NodeSettings) []component.Component {
				n := &localstorage.Node{NodeName: s.NodeName, Dir: s.LocalStorageDir, Client: s.Client, Log: s.Log}
				return []component.Component{component.NewFunc(n.Name(), n.Run, n.Ready)}
			},
		},
		{
			Name: "metrics-server",
			Values: func(Settings) (map[string]string, error) {
				return map[string]string{"METRICS_SERVER_USER": pki.MetricsServerUser}, nil
			},
			Cluster: func(s Settings) []controllers.Controller {
				return []controllers.Controller{metrics.New(metrics.Config{
					NodeIP: s.NodeIP, Port: s.MetricsServerPort,
					Kubeconfig: s.Files.MetricsServerKubeconfig(), Serving: s.Files.MetricsServerServing(),
					KubeletClient: s.Files.MetricsServerClient(), ServerCA: s.Files.ServerCA().Cert,
					KubeletServingCA: s.Files.KubeletCABundle(),
					ClientAuth:       s.APIServerClientAuth,
					Client:           s.Client, Log: s.Log,
				})}
			},
		},
		{
			Name:       "servicelb",
			NoManifest: true,
			Cluster: func(s Settings) []controllers.Controller {
				return []controllers.Controller{&servicelb.Controller{Client: s.Client, Reserved: reservedPorts(s), Log: s.Log}}
			},
			Removal: func(s Settings) []controllers.Controller {
				return []controllers.Controller{&servicelb.Cleanup{Client: s.Client, Log: s.Log}}
			},
			Node: func(s NodeSettings) []component.Component {
				return []component.Component{component.Task("servicelb node address", "publishing --node-external-ip", func(ctx context.Context, _ component.Progress) error {
					return servicelb.PublishExternalIP(ctx, s.Client, s.NodeName, s.ExternalIPs, s.Log)
				})}
			},
		},
		{
			Name: "network-policy",
			Node: func(s NodeSettings) []component.Component {
				n := &netpol.Node{NodeName: s.NodeName, Firewall: s.Firewall, Client: s.Client, Log: s.Log}
				return []component.Component{component.NewFunc(n.Name(), n.Run, n.Ready)}
			},
		},
	}
}

// reservedPorts are the ports k1s listens on at a node's addresses, which a LoadBalancer
// Service would shadow there (kube-proxy's rules come first).
func reservedPorts(s Settings) map[servicelb.Port]string {
	return map[servicelb.Port]string{
		{Protocol: corev1.ProtocolTCP, Port: int32(s.APIServerPort)}:     "the kube-apiserver",
		{Protocol: corev1.ProtocolTCP, Port: layout.EtcdPeerPort}:        "etcd",
		{Protocol: corev1.ProtocolTCP, Port: int32(s.MetricsServerPort)}: "metrics-server",
		{Protocol: corev1.ProtocolTCP, Port: layout.KubeletPort}:         "the kubelet",
		{Protocol: corev1.ProtocolUDP, Port: layout.FlannelVXLANPort}:    "the pod network (VXLAN)",
	}
}

// Names are the add-ons' names, the values --disable takes.
func Names() []string {
	var names []string
	for _, a := range Registry() {
		names = append(names, a.Name)
	}
	return names
}

// ValidateDisabled checks the names given to --disable.
func ValidateDisabled(disabled []string) error {
	names := Names()
	for _, d := range disabled {
		if !slices.Contains(names, d) {
			return fmt.Errorf("--disable %q: unknown add-on; k1s ships: %s", d, strings.Join(names, ", "))
		}
	}
	return nil
}

// Enabled are the registry's add-ons that are not disabled.
func Enabled(disabled []string) []Addon {
	var out []Addon
	for _, a := range Registry() {
		if !slices.Contains(disabled, a.Name) {
			out = append(out, a)
		}
	}
	return out
}

// Manifests are what the deployer applies: every add-on, rendered with s, and marked for
// removal when disabled (its placeholders need no values then).
func Manifests(s Settings, disabled []string) ([]deploy.Addon, error) {
	var out []deploy.Addon
	for _, a := range Registry() {
		if a.NoManifest {
			continue
		}
		d := deploy.Addon{Name: a.Name, Disabled: slices.Contains(disabled, a.Name)}
		if !d.Disabled && a.Values != nil {
			values, err := a.Values(s)
			if err != nil {
				return nil, fmt.Errorf("add-on %s: %w", a.Name, err)
			}
			d.Values = values
		}
		out = append(out, d)
	}
	return out, nil
}

// NodeComponents are the node-side components of the enabled add-ons, for one node.
func NodeComponents(s NodeSettings, disabled []string) []component.Component {
	return collect(disabled, func(a Addon) []component.Component {
		if a.Node == nil {
			return nil
		}
		return a.Node(s)
	})
}

// ClusterControllers are the cluster-side controllers of the enabled add-ons, and the removal
// controllers of the disabled ones.
func ClusterControllers(s Settings, disabled []string) []controllers.Controller {
	var out []controllers.Controller
	for _, a := range Registry() {
		parts := a.Cluster
		if slices.Contains(disabled, a.Name) {
			parts = a.Removal
		}
		if parts != nil {
			out = append(out, parts(s)...)
		}
	}
	return out
}

func collect[T any](disabled []string, parts func(Addon) []T) []T {
	var out []T
	for _, a := range Enabled(disabled) {
		out = append(out, parts(a)...)
	}
	return out
}
