package join

import (
	"context"
	"fmt"
	"net"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// NodeConfigMap (in kube-system) publishes the cluster's network settings to its nodes:
// an agent learns them through the API once it has joined, as the server's own node does.
const NodeConfigMap = "k1s-node-config"

// NodeConfig is what every node of a cluster shares: the network, and which packaged add-ons
// are disabled (their node-side parts do not run).
type NodeConfig struct {
	ClusterCIDR    *net.IPNet
	ServiceCIDR    *net.IPNet
	ClusterDNS     net.IP
	ClusterDomain  string
	DisabledAddons []string
}

// Data is the ConfigMap form of c.
func (c *NodeConfig) Data() map[string]string {
	return map[string]string{
		"cluster-cidr":    c.ClusterCIDR.String(),
		"service-cidr":    c.ServiceCIDR.String(),
		"cluster-dns":     c.ClusterDNS.String(),
		"cluster-domain":  c.ClusterDomain,
		"disabled-addons": strings.Join(c.DisabledAddons, ","),
	}
}

// ParseNodeConfig reads the ConfigMap form.
func ParseNodeConfig(data map[string]string) (*NodeConfig, error) {
	c := &NodeConfig{ClusterDomain: data["cluster-domain"]}
	var err error
	if _, c.ClusterCIDR, err = net.ParseCIDR(data["cluster-cidr"]); err != nil {
		return nil, fmt.Errorf("%s: cluster-cidr %q: %w", NodeConfigMap, data["cluster-cidr"], err)
	}
	if _, c.ServiceCIDR, err = net.ParseCIDR(data["service-cidr"]); err != nil {
		return nil, fmt.Errorf("%s: service-cidr %q: %w", NodeConfigMap, data["service-cidr"], err)
	}
	if c.ClusterDNS = net.ParseIP(data["cluster-dns"]); c.ClusterDNS == nil {
		return nil, fmt.Errorf("%s: cluster-dns %q is not an IP address", NodeConfigMap, data["cluster-dns"])
	}
	if c.ClusterDomain == "" {
		return nil, fmt.Errorf("%s: no cluster-domain", NodeConfigMap)
	}
	// Absent from what servers before the add-on registry published: nothing disabled.
	if d := data["disabled-addons"]; d != "" {
		c.DisabledAddons = strings.Split(d, ",")
	}
	return c, nil
}

// FetchNodeConfig reads the settings a server published with PublishNodeConfig, as a joined
// node (with its own credentials) may.
func FetchNodeConfig(ctx context.Context, client kubernetes.Interface) (*NodeConfig, error) {
	cm, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, NodeConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the cluster's settings (%s/%s): %w", metav1.NamespaceSystem, NodeConfigMap, err)
	}
	return ParseNodeConfig(cm.Data)
}
