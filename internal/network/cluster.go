package network

import (
	"fmt"
	"net"
)

// ClusterConfigMap (in kube-system) publishes the cluster's network settings to its nodes:
// an agent learns them through the API once it has joined, as the server's own node does.
const ClusterConfigMap = "k1s-node-config"

// Cluster is the network every node of a cluster shares.
type Cluster struct {
	ClusterCIDR   *net.IPNet
	ServiceCIDR   *net.IPNet
	ClusterDNS    net.IP
	ClusterDomain string
}

// Data is the ConfigMap form of c.
func (c *Cluster) Data() map[string]string {
	return map[string]string{
		"cluster-cidr":   c.ClusterCIDR.String(),
		"service-cidr":   c.ServiceCIDR.String(),
		"cluster-dns":    c.ClusterDNS.String(),
		"cluster-domain": c.ClusterDomain,
	}
}

// ParseCluster reads the ConfigMap form.
func ParseCluster(data map[string]string) (*Cluster, error) {
	c := &Cluster{ClusterDomain: data["cluster-domain"]}
	var err error
	if _, c.ClusterCIDR, err = net.ParseCIDR(data["cluster-cidr"]); err != nil {
		return nil, fmt.Errorf("%s: cluster-cidr %q: %w", ClusterConfigMap, data["cluster-cidr"], err)
	}
	if _, c.ServiceCIDR, err = net.ParseCIDR(data["service-cidr"]); err != nil {
		return nil, fmt.Errorf("%s: service-cidr %q: %w", ClusterConfigMap, data["service-cidr"], err)
	}
	if c.ClusterDNS = net.ParseIP(data["cluster-dns"]); c.ClusterDNS == nil {
		return nil, fmt.Errorf("%s: cluster-dns %q is not an IP address", ClusterConfigMap, data["cluster-dns"])
	}
	if c.ClusterDomain == "" {
		return nil, fmt.Errorf("%s: no cluster-domain", ClusterConfigMap)
	}
	return c, nil
}
