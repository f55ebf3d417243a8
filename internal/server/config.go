// Package server assembles a k1s control plane: embedded etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler running as goroutines of one process, plus the
// objects k1s bootstraps into the cluster.
package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/robfig/cron/v3"
	"github.com/sirupsen/logrus"
	"k8s.io/apimachinery/pkg/util/validation"
	netutils "k8s.io/utils/net"

	"github.com/k1s-io/k1s/internal/addons"
	"github.com/k1s-io/k1s/internal/encryption"
	"github.com/k1s-io/k1s/internal/etcd/snapshot"
	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/layout"
	"github.com/k1s-io/k1s/internal/network"
)

// Config is everything a k1s server is told: the options. Fill it, call Complete once, and
// give the CompletedConfig to Prepare.
type Config struct {
	DataDir string
	// NodeName defaults to the host name.
	NodeName string
	// WithoutNode is --disable-agent: no node of this server's own.
	WithoutNode bool
	// ClusterInit (--cluster-init) makes this server the first of a cluster that other servers
	// can join: etcd listens for peers on AdvertiseAddress with mutual TLS, and the server token
	// is written. JoinServer and JoinToken (--server, --token) join such a cluster; a server
	// with data needs neither again.
	ClusterInit bool
	JoinServer  string
	JoinToken   join.Token
	// NodeIP defaults to the address of the interface of the default route.
	NodeIP net.IP
	// BindAddress and HTTPSPort are where the apiserver listens.
	BindAddress net.IP
	HTTPSPort   int
	// MetricsServerPort is where the metrics-server add-on serves, on NodeIP.
	MetricsServerPort int
	// AdvertiseAddress is the apiserver address other nodes and the kubernetes Service use;
	// defaults to NodeIP.
	AdvertiseAddress net.IP
	// TLSSANs are extra names or addresses for the apiserver's serving certificate.
	TLSSANs []string

	ClusterCIDR   *net.IPNet
	ServiceCIDR   *net.IPNet
	ClusterDNS    net.IP
	ClusterDomain string

	// KubeconfigOutput is where the admin kubeconfig is written, with KubeconfigMode.
	KubeconfigOutput string
	KubeconfigMode   os.FileMode

	// ResolvConf lists the upstream resolvers CoreDNS forwards to.
	ResolvConf string
	// Disable lists add-ons not to deploy (and to remove): coredns.
	Disable []string
	// DisableHelmController turns off the HelmChart controller and its kinds.
	DisableHelmController bool
	// PodSecurityDefault is the Pod Security level enforced where a namespace sets none.
	PodSecurityDefault string
	// AuditPolicyFile replaces k1s's audit policy.
	AuditPolicyFile string
	// SecretsEncryption encrypts Secrets in etcd with a key k1s generates.
	SecretsEncryption bool
	// SecretsEncryptionProvider is the provider of a new configuration's key (secretbox or
	// aescbc; default secretbox); an existing configuration keeps its own.
	SecretsEncryptionProvider string
	// Hardened turns on what k3s's hardening guide asks users to set by hand (see
	// hardenedArgs); it implies SecretsEncryption and, unless set, restricted Pod Security.
	Hardened bool

	// EtcdSnapshotDir is where snapshots are kept (default <data-dir>/server/db/snapshots).
	EtcdSnapshotDir string
	// EtcdSnapshotCron is when scheduled snapshots are taken (five cron fields), and
	// EtcdSnapshotRetention how many of them are kept.
	EtcdSnapshotCron      string
	EtcdSnapshotRetention int
	// EtcdSnapshotCompress gzips snapshots.
	EtcdSnapshotCompress bool
	// EtcdDisableSnapshots turns the scheduled snapshots off.
	EtcdDisableSnapshots bool

	ExtraAPIServerArgs         []string
	ExtraControllerManagerArgs []string
	ExtraSchedulerArgs         []string
	ExtraEtcdArgs              []string

	Log *logrus.Logger
}

// Default values of the cluster's settings, as k3s users expect them. Paths and ports are
// layout's.
const (
	DefaultClusterCIDR   = "10.42.0.0/16"
	DefaultServiceCIDR   = "10.43.0.0/16"
	DefaultClusterDomain = "cluster.local"
	// DefaultEtcdSnapshotCron takes a snapshot twice a day, as k3s does.
	DefaultEtcdSnapshotCron = "0 */12 * * *"
	// DefaultEtcdSnapshotRetention is how many scheduled snapshots are kept.
	DefaultEtcdSnapshotRetention = 5
	// ServiceAccountIssuer is the issuer of service-account tokens.
	ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
)

// ParseCIDR parses a CIDR flag, naming the flag in its error.
func ParseCIDR(flag, value string) (*net.IPNet, error) {
	ip, cidr, err := net.ParseCIDR(value)
	if err != nil {
		return nil, fmt.Errorf("--%s %q is not a CIDR (like %s)", flag, value, map[string]string{"cluster-cidr": DefaultClusterCIDR, "service-cidr": DefaultServiceCIDR}[flag])
	}
	if !ip.Equal(cidr.IP) {
		return nil, fmt.Errorf("--%s %q has host bits set; did you mean %s?", flag, value, cidr)
	}
	return cidr, nil
}

// ParseIP parses an address flag, naming the flag in its error.
func ParseIP(flag, value string) (net.IP, error) {
	ip := netutils.ParseIPSloppy(value)
	if ip == nil {
		return nil, fmt.Errorf("--%s %q is not an IP address", flag, value)
	}
	return ip, nil
}

// completedConfig is a Config validated and with every default filled in.
type completedConfig struct {
	Config
	// dir and files name the data directory's files.
	dir   layout.DataDir
	files layout.Server
	// secretsProvider is SecretsEncryptionProvider, checked ("" when not given).
	secretsProvider encryption.Provider
	// snapshotSchedule is EtcdSnapshotCron, parsed.
	snapshotSchedule cron.Schedule
	// clustered says that etcd is a member of a cluster that can grow (see planCluster), and
	// join what a joining server received.
	clustered bool
	join      *joinState
}

// CompletedConfig is what Complete returns and Prepare takes: a server cannot be prepared from
// options that were not completed (as kube-apiserver's CompletedConfig).
type CompletedConfig struct{ *completedConfig }

// Complete validates the options once and fills in the defaults that depend on the host. It
// writes nothing and leaves o unchanged.
func (o *Config) Complete() (CompletedConfig, error) {
	c := &completedConfig{Config: *o}
	if err := c.complete(); err != nil {
		return CompletedConfig{}, err
	}
	c.dir = layout.DataDir(c.DataDir)
	c.files = c.dir.Server()
	if err := c.completeSnapshots(); err != nil {
		return CompletedConfig{}, err
	}
	return CompletedConfig{c}, nil
}

func (c *completedConfig) complete() error {
	if c.Log == nil {
		return errors.New("server config: no logger")
	}
	if c.DataDir == "" {
		c.DataDir = layout.DefaultDataDir
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("--data-dir %q: %w", c.DataDir, err)
	}
	c.DataDir = abs
	if c.HTTPSPort <= 0 || c.HTTPSPort > 65535 {
		return fmt.Errorf("--https-listen-port %d is not a port number (1-65535)", c.HTTPSPort)
	}
	if c.MetricsServerPort == 0 {
		c.MetricsServerPort = layout.MetricsServerPort
	}
	if c.MetricsServerPort < 0 || c.MetricsServerPort > 65535 {
		return fmt.Errorf("--metrics-server-port %d is not a port number (1-65535)", c.MetricsServerPort)
	}
	if c.BindAddress == nil {
		c.BindAddress = net.IPv4zero
	}
	if c.NodeName, err = network.NodeName(c.NodeName); err != nil {
		return err
	}
	if c.NodeIP == nil && c.WithoutNode && c.AdvertiseAddress != nil {
		// A server without a node has no other address than the one it advertises.
		c.NodeIP = c.AdvertiseAddress
	}
	if c.NodeIP, err = network.NodeIP(c.NodeIP); err != nil {
		return err
	}
	if c.AdvertiseAddress == nil {
		c.AdvertiseAddress = c.NodeIP
	}
	if c.AdvertiseAddress.IsLoopback() || c.AdvertiseAddress.IsUnspecified() {
		return fmt.Errorf("--advertise-address %s must be an address other hosts and pods can reach, not loopback or unspecified", c.AdvertiseAddress)
	}
	if c.ClusterCIDR == nil || c.ServiceCIDR == nil {
		return errors.New("server config: cluster and service CIDRs must be set")
	}
	if c.ClusterCIDR.Contains(c.ServiceCIDR.IP) || c.ServiceCIDR.Contains(c.ClusterCIDR.IP) {
		return fmt.Errorf("--cluster-cidr %s and --service-cidr %s overlap; choose ranges that do not", c.ClusterCIDR, c.ServiceCIDR)
	}
	// The node routes both ranges away (blackhole, service route): an address of the host's
	// inside them would cut the host off its own network.
	for _, addr := range []struct {
		flag string
		ip   net.IP
	}{{"--node-ip", c.NodeIP}, {"--advertise-address", c.AdvertiseAddress}} {
		for _, r := range []struct {
			flag string
			cidr *net.IPNet
		}{{"--cluster-cidr", c.ClusterCIDR}, {"--service-cidr", c.ServiceCIDR}} {
			if r.cidr.Contains(addr.ip) {
				return fmt.Errorf("%s %s is inside %s %s; choose a %s that does not contain this host's addresses", addr.flag, addr.ip, r.flag, r.cidr, r.flag)
			}
		}
	}
	if ones, bits := c.ClusterCIDR.Mask.Size(); bits == 32 && ones > 24 {
		return fmt.Errorf("--cluster-cidr %s is too small: each node gets a /24, so use a /24 or larger", c.ClusterCIDR)
	}
	if c.ClusterDNS == nil {
		ip, err := netutils.GetIndexedIP(c.ServiceCIDR, 10)
		if err != nil {
			return fmt.Errorf("--service-cidr %s is too small for the cluster DNS address: %w", c.ServiceCIDR, err)
		}
		c.ClusterDNS = ip
	}
	if !c.ServiceCIDR.Contains(c.ClusterDNS) {
		return fmt.Errorf("--cluster-dns %s is not inside --service-cidr %s", c.ClusterDNS, c.ServiceCIDR)
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = DefaultClusterDomain
	}
	if errs := validation.IsDNS1123Subdomain(c.ClusterDomain); len(errs) > 0 {
		return fmt.Errorf("--cluster-domain %q is not a DNS domain: %s", c.ClusterDomain, errs[0])
	}
	for _, san := range c.TLSSANs {
		if netutils.ParseIPSloppy(san) != nil {
			continue
		}
		if len(validation.IsDNS1123Subdomain(san)) > 0 && len(validation.IsWildcardDNS1123Subdomain(san)) > 0 {
			return fmt.Errorf("--tls-san %q is neither an IP address nor a DNS name", san)
		}
	}
	if err := addons.ValidateDisabled(c.Disable); err != nil {
		return err
	}
	if c.PodSecurityDefault == "" {
		c.PodSecurityDefault = DefaultPodSecurity
		if c.Hardened {
			c.PodSecurityDefault = PodSecurityRestricted
		}
	}
	if c.Hardened {
		c.SecretsEncryption = true
	}
	if c.SecretsEncryptionProvider != "" {
		if c.secretsProvider, err = encryption.ParseProvider("--secrets-encryption-provider", c.SecretsEncryptionProvider); err != nil {
			return err
		}
	}
	if err := validatePodSecurity(c.PodSecurityDefault); err != nil {
		return err
	}
	if c.AuditPolicyFile != "" {
		if c.AuditPolicyFile, err = filepath.Abs(c.AuditPolicyFile); err != nil {
			return err
		}
		if err := checkReadable("--audit-policy-file", c.AuditPolicyFile); err != nil {
			return err
		}
	}
	if c.KubeconfigOutput == "" {
		c.KubeconfigOutput = layout.DefaultKubeconfig
	}
	if c.KubeconfigMode == 0 {
		c.KubeconfigMode = layout.DefaultKubeconfigMode
	}
	return nil
}

// Dir names the files of the data directory the server runs on.
func (c CompletedConfig) Dir() layout.DataDir { return c.dir }

// LocalAPIServerURL is how processes on this host (the server's own node among them) reach
// the apiserver.
func (c CompletedConfig) LocalAPIServerURL() string { return c.localAPIServerURL() }

func (c *completedConfig) firstServiceIP() net.IP {
	ip, _ := netutils.GetIndexedIP(c.ServiceCIDR, 1)
	return ip
}

// localAPIServerURL is how processes on this host reach the apiserver.
func (c *completedConfig) localAPIServerURL() string {
	host := "127.0.0.1"
	if !c.BindAddress.IsUnspecified() && !c.BindAddress.IsLoopback() {
		host = c.BindAddress.String()
	}
	return "https://" + net.JoinHostPort(host, fmt.Sprint(c.HTTPSPort))
}

// advertisedAPIServerURL is how other nodes reach the apiserver (published in cluster-info).
func (c *completedConfig) advertisedAPIServerURL() string {
	return "https://" + net.JoinHostPort(c.AdvertiseAddress.String(), fmt.Sprint(c.HTTPSPort))
}

// apiServerSANs are the names and addresses the apiserver's certificate covers.
func (c *completedConfig) apiServerSANs() ([]net.IP, []string) {
	ips := []net.IP{net.ParseIP("127.0.0.1"), c.NodeIP, c.AdvertiseAddress, c.firstServiceIP()}
	if !c.BindAddress.IsUnspecified() {
		ips = append(ips, c.BindAddress)
	}
	names := []string{"localhost", c.NodeName, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc." + c.ClusterDomain}
	for _, san := range c.TLSSANs {
		if ip := netutils.ParseIPSloppy(san); ip != nil {
			ips = append(ips, ip)
		} else {
			names = append(names, san)
		}
	}
	return ips, names
}

// completeSnapshots checks the snapshot options and fills in their defaults.
func (c *completedConfig) completeSnapshots() error {
	if c.EtcdSnapshotDir == "" {
		c.EtcdSnapshotDir = c.files.SnapshotDir()
	}
	abs, err := filepath.Abs(c.EtcdSnapshotDir)
	if err != nil {
		return fmt.Errorf("--etcd-snapshot-dir %q: %w", c.EtcdSnapshotDir, err)
	}
	c.EtcdSnapshotDir = abs
	if c.EtcdSnapshotCron == "" {
		c.EtcdSnapshotCron = DefaultEtcdSnapshotCron
	}
	if c.snapshotSchedule, err = snapshot.ParseSchedule(c.EtcdSnapshotCron); err != nil {
		return err
	}
	if c.EtcdSnapshotRetention == 0 {
		c.EtcdSnapshotRetention = DefaultEtcdSnapshotRetention
	}
	if c.EtcdSnapshotRetention < 1 {
		return fmt.Errorf("--etcd-snapshot-retention %d: keep at least 1 snapshot (or turn them off with --etcd-disable-snapshots)", c.EtcdSnapshotRetention)
	}
	return nil
}
