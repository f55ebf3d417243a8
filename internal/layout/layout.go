// Package layout names every file, directory, port and host object k1s owns: one source of
// truth for where things live. It is pure names: no I/O, no Kubernetes imports, so every
// package (and `k1s killall` on a broken host) can read it.
package layout

import (
	"path/filepath"
	"strings"
)

// Defaults of the files outside a data directory.
const (
	// DefaultDataDir holds all of a server's or agent's state (--data-dir).
	DefaultDataDir = "/var/lib/k1s"
	// ConfigDir holds k1s's host-wide configuration.
	ConfigDir = "/etc/k1s"
	// DefaultConfigFile is read when --config is not given; it may be absent.
	DefaultConfigFile = ConfigDir + "/config.yaml"
	// DefaultKubeconfig is the admin kubeconfig a server writes (--write-kubeconfig).
	DefaultKubeconfig = ConfigDir + "/k1s.yaml"
	// DefaultKubeconfigMode is its file mode (--write-kubeconfig-mode).
	DefaultKubeconfigMode = 0o600
	// DefaultRegistries is the registry mirrors and credentials file (--private-registry),
	// in k3s's registries.yaml format; it may be absent.
	DefaultRegistries = ConfigDir + "/registries.yaml"
)

// Default ports. The fixed local ones can be changed through the pass-through arguments
// (secure-port, listen-client-urls, listen-peer-urls, the kubelet's port).
const (
	APIServerPort         = 6443
	ControllerManagerPort = 10257
	SchedulerPort         = 10259
	EtcdClientPort        = 2379
	// EtcdHTTPPort serves etcd's HTTP endpoints on 127.0.0.1, apart from its gRPC (see
	// etcd.Config.HTTPPort).
	EtcdHTTPPort = 2382
	// EtcdPeerPort is in a single server's advertised peer URL only: it opens no peer
	// listener unless --etcd-arg listen-peer-urls=… asks for one.
	EtcdPeerPort = 2380
	KubeletPort  = 10250
	// MetricsServerPort is where the in-process metrics-server serves, on the node address of
	// the server holding the controllers' lease (kube-scheduler's old insecure port).
	MetricsServerPort = 10251
	// FlannelVXLANPort is the UDP port of the pod network's VXLAN backend (flannel's default).
	FlannelVXLANPort = 8472
	// LoadBalancerPort is where an agent's API load balancer listens, on 127.0.0.1 (k3s's
	// --lb-server-port).
	LoadBalancerPort = 6444
	// ContainerdStreamingPort is where containerd's CRI serves exec and attach streams
	// (on 127.0.0.1; the kubelet proxies them).
	ContainerdStreamingPort = 10010
)

// Run-time state of a node, outside the data directory: in an agent's private mount
// namespace, or the host's. `k1s killall` removes it.
const (
	// RunDir is the node's runtime directory.
	RunDir = "/run/k1s"
	// ContainerdState is containerd's state directory (task bundles, runc state).
	ContainerdState = RunDir + "/containerd"
	// ContainerdSocket is where containerd serves the CRI and its API.
	ContainerdSocket = ContainerdState + "/containerd.sock"
	// ContainerdTaskDir holds the running tasks' bundles.
	ContainerdTaskDir = ContainerdState + "/io.containerd.runtime.v2.task"
	// PodNetNSDir holds the pods' network namespaces (not /run/netns, other runtimes' place).
	PodNetNSDir = RunDir + "/netns"
)

// Host paths that upstream code fixes and other runtimes may share: k1s removes only its own
// entries there (see SharedHostDirs).
const (
	// ShimSocketDir is fixed in containerd (field notes §8).
	ShimSocketDir = "/run/containerd/s"
	// KubeletDevicePluginSocket is fixed in the kubelet.
	KubeletDevicePluginSocket = KubeletHostDir + "/device-plugins/kubelet.sock"
	// KubeletDeviceCheckpoint is the kubelet's device manager checkpoint, beside its socket.
	KubeletDeviceCheckpoint = KubeletHostDir + "/device-plugins/kubelet_internal_checkpoint"
	// CNIResultsDir is where the CNI library caches results.
	CNIResultsDir = CNIStateDir + "/results"
	// ContainerLogLinks holds the kubelet's /var/log/containers/*.log symlinks.
	ContainerLogLinks = "/var/log/containers"
	// PodLogsDir is the kubelet's fixed pod log root (k1s's kubelet logs under the data dir).
	PodLogsDir = "/var/log/pods"
)

// SharedHostDirs are the host directories upstream code creates for a node, deepest first:
// removed when a node's clean-up leaves them empty, never wholesale.
var SharedHostDirs = []string{
	KubeletHostDir + "/device-plugins", KubeletHostDir, CNIResultsDir, CNIStateDir,
	ShimSocketDir, "/run/containerd", ContainerLogLinks,
}

// Host objects a node creates; `k1s killall` removes them.
const (
	// BridgeName is the pods' bridge.
	BridgeName = "cni0"
	// ServiceDummy holds the service range's route.
	ServiceDummy = "k1s-svc"
	// FlannelLinkPrefix starts the names of flannel's interfaces (flannel.1).
	FlannelLinkPrefix = "flannel"
	MasqueradeChain   = "K1S-POSTROUTING"
	ForwardChain      = "K1S-FORWARD"
	// NFTablesTable is the nftables table of k1s's rules (kube-proxy's own tables are its).
	NFTablesTable = "k1s"
	// NetworkPolicyChain (mangle table) sends pod traffic to the network-policy add-on on
	// kernels whose nftables cannot queue packets to userspace.
	NetworkPolicyChain = "K1S-NETPOL"
	// NetworkPolicyNFTablesTable is the network-policy add-on's nftables table (inet family).
	NetworkPolicyNFTablesTable = "k1s-network-policies"
	// CNINetworkName is the CNI network's name; the CNI plugins cache results under it.
	CNINetworkName = "k1s"
	// CNIConfList is the file name of the CNI configuration.
	CNIConfList = "10-k1s.conflist"
	// RouteProtocol marks the routes k1s adds (ip route shows "proto 75"), so that killall
	// finds them whatever the CIDRs were.
	RouteProtocol = 75
)

// FirewallChainPrefixes start the iptables chains a node's components create (kube-proxy,
// the CNI plugins, k1s, flannel).
var FirewallChainPrefixes = []string{"KUBE-", "CNI-", "K1S-", "FLANNEL-"}

// Parts of a data directory: what a server keeps and what a node keeps.
const (
	PartServer = "server"
	PartAgent  = "agent"
)

// DataDir is a k1s data directory (absolute, as its users make it).
type DataDir string

// Root is the directory itself.
func (d DataDir) Root() string { return string(d) }

// Lock is the lock one k1s holds for its life, with its PID; it also marks the directory as
// k1s's.
func (d DataDir) Lock() string { return d.join("k1s.lock") }

// PayloadDir holds the extracted payloads (<hash>/bin, current, previous).
func (d DataDir) PayloadDir() string { return d.join("data") }

// LocalStorage is where the local-storage add-on keeps a node's volumes by default
// (--default-local-storage-path): inside the data dir, so that `k1s killall` keeps them and
// uninstalling removes them.
func (d DataDir) LocalStorage() string { return d.join("storage") }

// Server is the control plane's part.
func (d DataDir) Server() Server { return Server{dir: d.join(PartServer)} }

// Node is the node's part (agents, and a server's own node).
func (d DataDir) Node() Node { return Node{dir: d.join(PartAgent)} }

// ArgsFile is where the effective command line of an upstream component is recorded; part is
// PartServer or PartAgent.
func (d DataDir) ArgsFile(part, component string) string {
	return d.join(part, "etc", "args", component+".json")
}

func (d DataDir) join(elem ...string) string {
	return filepath.Join(append([]string{string(d)}, elem...)...)
}

// Pair is a certificate and its key.
type Pair struct {
	Cert string
	Key  string
}

func pair(dir, name string) Pair {
	return Pair{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
}

// Server names a server's files (<data-dir>/server).
type Server struct{ dir string }

// Dir is the server's part of the data directory.
func (s Server) Dir() string { return s.dir }

// TLSDir holds the control plane's certificates and keys.
func (s Server) TLSDir() string { return filepath.Join(s.dir, "tls") }

// CredDir holds the kubeconfigs of the control plane's clients and other secrets.
func (s Server) CredDir() string { return filepath.Join(s.dir, "cred") }

// ManifestsDir is the auto-deploy directory: every manifest in it (subdirectories too) is
// applied, and deleted with its file (k3s's server/manifests).
func (s Server) ManifestsDir() string { return filepath.Join(s.dir, "manifests") }

// StaticDir holds the files k3s serves under /static/: charts/NAME.tgz for HelmCharts.
func (s Server) StaticDir() string { return filepath.Join(s.dir, "static") }

// HelmCacheDir is Helm's cache of repository indexes and downloaded charts.
func (s Server) HelmCacheDir() string { return filepath.Join(s.dir, "helm") }

func (s Server) etc(name string) string { return filepath.Join(s.dir, "etc", name) }

func (s Server) etcdTLS() string { return filepath.Join(s.TLSDir(), "etcd") }

// Certificate authorities.
func (s Server) ServerCA() Pair        { return pair(s.TLSDir(), "server-ca") }
func (s Server) ClientCA() Pair        { return pair(s.TLSDir(), "client-ca") }
func (s Server) RequestHeaderCA() Pair { return pair(s.TLSDir(), "request-header-ca") }
func (s Server) EtcdCA() Pair          { return pair(s.etcdTLS(), "server-ca") }

// KubeletServingCA signs the kubelets' serving certificates. Only the apiserver and
// metrics-server trust it, so no node can obtain a certificate that the API's clients accept.
func (s Server) KubeletServingCA() Pair { return pair(s.TLSDir(), "kubelet-serving-ca") }

// KubeletCABundle is what the apiserver and metrics-server verify kubelets with: the
// kubelet-serving CA and, while nodes of earlier versions may still serve a certificate of it,
// the server CA.
func (s Server) KubeletCABundle() string { return filepath.Join(s.TLSDir(), "kubelet-ca-bundle.crt") }

// Leaf certificates.
func (s Server) APIServerServing() Pair { return pair(s.TLSDir(), "serving-kube-apiserver") }

// APIServerKubeletClient is the apiserver's client certificate towards kubelets.
func (s Server) APIServerKubeletClient() Pair { return pair(s.TLSDir(), "client-kube-apiserver") }
func (s Server) AuthProxyClient() Pair        { return pair(s.TLSDir(), "client-auth-proxy") }
func (s Server) AdminClient() Pair            { return pair(s.TLSDir(), "client-admin") }
func (s Server) SupervisorClient() Pair       { return pair(s.TLSDir(), "client-supervisor") }
func (s Server) BreakGlassClient() Pair       { return pair(s.TLSDir(), "client-break-glass") }
func (s Server) ControllerManagerClient() Pair {
	return pair(s.TLSDir(), "client-controller")
}
func (s Server) SchedulerClient() Pair { return pair(s.TLSDir(), "client-scheduler") }

// ControllerManagerServing and SchedulerServing are their secure ports' certificates (server
// CA), for 127.0.0.1; without them each would make an RSA key at every start.
func (s Server) ControllerManagerServing() Pair {
	return pair(s.TLSDir(), "serving-kube-controller-manager")
}
func (s Server) SchedulerServing() Pair { return pair(s.TLSDir(), "serving-kube-scheduler") }

// EtcdPeerCA signs the certificates etcd members authenticate each other with: a CA of its
// own, so that no etcd client certificate passes for a member.
func (s Server) EtcdPeerCA() Pair { return pair(s.etcdTLS(), "peer-ca") }

// EtcdPeer is this member's peer certificate (server and client), for its addresses.
func (s Server) EtcdPeer() Pair { return pair(s.etcdTLS(), "peer") }

// EtcdServing is etcd's serving (and peer-less client) certificate.
func (s Server) EtcdServing() Pair { return pair(s.etcdTLS(), "server-client") }

// EtcdAPIServerClient is the apiserver's client certificate towards etcd.
func (s Server) EtcdAPIServerClient() Pair { return pair(s.etcdTLS(), "client") }

// MetricsServerServing is the in-process metrics-server's serving certificate (server CA).
func (s Server) MetricsServerServing() Pair { return pair(s.TLSDir(), "serving-metrics-server") }

// MetricsServerClient is its client certificate (client CA), towards the apiserver and kubelets.
func (s Server) MetricsServerClient() Pair { return pair(s.TLSDir(), "client-metrics-server") }

// MetricsServerKubeconfig is its kubeconfig, with MetricsServerClient.
func (s Server) MetricsServerKubeconfig() string {
	return filepath.Join(s.CredDir(), "metrics-server.kubeconfig")
}

// ServiceAccountKey signs service-account tokens.
func (s Server) ServiceAccountKey() string { return filepath.Join(s.TLSDir(), "service.key") }

// ServiceAccountVerifyKeys holds the public keys service-account tokens are verified with: the
// signing key's and those of retired keys whose tokens may still be valid.
func (s Server) ServiceAccountVerifyKeys() string {
	return filepath.Join(s.TLSDir(), "service-account-keys.pub")
}

// ServiceAccountRetiredDir holds the public keys of rotated-out signing keys, each named by
// the Unix time after which no token it signed is valid any more (<unix>.pub).
func (s Server) ServiceAccountRetiredDir() string {
	return filepath.Join(s.TLSDir(), "service-account-retired")
}

// APIServerCertDir is the apiserver's --cert-dir (self-signed certificates it never uses).
func (s Server) APIServerCertDir() string { return filepath.Join(s.TLSDir(), "temporary-certs") }

// RotateRequest is where `k1s certificate rotate` asks a running server to rotate.
func (s Server) RotateRequest() string { return filepath.Join(s.TLSDir(), "rotate-request.json") }

// Kubeconfigs and secrets.
func (s Server) SupervisorKubeconfig() string {
	return filepath.Join(s.CredDir(), "supervisor.kubeconfig")
}
func (s Server) BreakGlassKubeconfig() string {
	return filepath.Join(s.CredDir(), "break-glass.kubeconfig")
}
func (s Server) ControllerManagerKubeconfig() string {
	return filepath.Join(s.CredDir(), "controller.kubeconfig")
}
func (s Server) SchedulerKubeconfig() string {
	return filepath.Join(s.CredDir(), "scheduler.kubeconfig")
}

// LegacyAdminKubeconfig is the system:masters admin kubeconfig earlier versions kept.
func (s Server) LegacyAdminKubeconfig() string {
	return filepath.Join(s.CredDir(), "admin.kubeconfig")
}

// AdminGranted records that k1s granted the admin kubeconfig its RBAC binding.
func (s Server) AdminGranted() string { return filepath.Join(s.CredDir(), "admin-granted") }

// EncryptionConfig is the apiserver's encryption provider configuration (with its keys).
func (s Server) EncryptionConfig() string {
	return filepath.Join(s.CredDir(), "encryption-config.json")
}

// EncryptionLock is the lock taken while the encryption configuration changes (see
// encryption.Lock): by rotate-keys, and by a starting server until its Secrets are rewritten.
func (s Server) EncryptionLock() string {
	return filepath.Join(s.CredDir(), "encryption-config.lock")
}

// NodeToken holds the server's default join token.
func (s Server) NodeToken() string { return filepath.Join(s.dir, "node-token") }

// NodeTokenCreated records that k1s created the default join token's Secret: one deleted
// afterwards was revoked on purpose and is not created again.
func (s Server) NodeTokenCreated() string { return filepath.Join(s.CredDir(), "node-token-created") }

// ServerToken holds the token other servers join this server's cluster with (--cluster-init
// writes it; a joined server keeps the one it joined with).
func (s Server) ServerToken() string { return filepath.Join(s.dir, "token") }

// ServerTokenCreated records that k1s created the server token's Secret (as NodeTokenCreated).
func (s Server) ServerTokenCreated() string { return filepath.Join(s.CredDir(), "token-created") }

// EtcdClustered records that this server's etcd is a member of a cluster that can grow
// (--cluster-init, or a join): it listens for peers, with mutual TLS, at every start.
func (s Server) EtcdClustered() string { return filepath.Join(s.dir, "db", "clustered") }

// Rel is path (one of the server's) relative to the server's directory.
func (s Server) Rel(path string) string {
	return strings.TrimPrefix(path, s.dir+string(filepath.Separator))
}

// BootstrapData are what every server of a cluster shares, relative to the server's directory:
// the files (those that exist) and directories whose files are shared. A joining server
// receives them sealed with the server token and issues its own leaf certificates.
func (s Server) BootstrapData() (files, dirs []string) {
	rel := s.Rel
	for _, ca := range []Pair{s.ServerCA(), s.ClientCA(), s.RequestHeaderCA(), s.EtcdCA(), s.EtcdPeerCA(), s.KubeletServingCA()} {
		files = append(files, rel(ca.Cert), rel(ca.Key))
	}
	files = append(files, rel(s.ServiceAccountKey()), rel(s.EncryptionConfig()), rel(s.NodeToken()), rel(s.NodeTokenCreated()))
	return files, []string{rel(s.ServiceAccountRetiredDir())}
}

// Configuration files k1s writes for the apiserver.
func (s Server) AdmissionConfig() string      { return s.etc("admission-config.yaml") }
func (s Server) AuditPolicy() string          { return s.etc("audit-policy.yaml") }
func (s Server) AuthenticationConfig() string { return s.etc("authentication-config.yaml") }

// AuditLog is where the apiserver writes its audit log.
func (s Server) AuditLog() string { return filepath.Join(s.dir, "logs", "audit.log") }

// EtcdDataDir is the embedded etcd's data directory.
func (s Server) EtcdDataDir() string { return filepath.Join(s.dir, "db", "etcd") }

// EtcdTombstone marks etcd data of a member that was removed from its cluster: a server with
// it refuses to start (k3s's tombstone). It lives in the data it condemns.
func (s Server) EtcdTombstone() string { return filepath.Join(s.EtcdDataDir(), "tombstone") }

// SnapshotDir is where etcd snapshots are kept by default (--etcd-snapshot-dir).
func (s Server) SnapshotDir() string { return filepath.Join(s.dir, "db", "snapshots") }

// EtcdRestoreStaging is where a snapshot is restored before it replaces EtcdDataDir.
func (s Server) EtcdRestoreStaging() string { return filepath.Join(s.dir, "db", "restoring") }

// EtcdDataDirAside is where a restore moves the etcd data it replaces (never deleted); stamp
// says when (like 20260102T150405Z).
func (s Server) EtcdDataDirAside(stamp string) string {
	return filepath.Join(s.dir, "db", "etcd-old-"+stamp)
}

// VolumePluginDir is the controller-manager's FlexVolume directory (not /usr/libexec).
func (s Server) VolumePluginDir() string { return filepath.Join(s.dir, "volume-plugins") }

// Node names a node's files (<data-dir>/agent).
type Node struct{ dir string }

// Dir is the node's part of the data directory; its existence means a node ran there.
func (n Node) Dir() string { return n.dir }

func (n Node) etc(elem ...string) string {
	return filepath.Join(append([]string{n.dir, "etc"}, elem...)...)
}

// ImagesDir is where image tarballs are dropped to be imported at start.
func (n Node) ImagesDir() string { return filepath.Join(n.dir, "images") }

// KubeletKubeconfig is the node's own credential (the kubelet's, used by kube-proxy and the
// pod network too).
func (n Node) KubeletKubeconfig() string { return filepath.Join(n.dir, "kubelet.kubeconfig") }

// BootstrapKubeconfig holds the join token while the node obtains its certificate.
func (n Node) BootstrapKubeconfig() string { return filepath.Join(n.dir, "bootstrap.kubeconfig") }

// LoadBalancerServers keeps the servers the node's API load balancer learned, for its next
// start.
func (n Node) LoadBalancerServers() string { return n.etc("loadbalancer-servers.json") }

// IdentityKey is the key a node joins with. The server binds the node's name to it at the
// first join, so that only this data directory can join under that name again.
func (n Node) IdentityKey() string { return filepath.Join(n.dir, "node-identity.key") }

// ClientCA is the CA the kubelet verifies the apiserver's client certificate with.
func (n Node) ClientCA() string { return filepath.Join(n.dir, "client-ca.crt") }

// KubeletDir is the kubelet's root directory.
func (n Node) KubeletDir() string { return filepath.Join(n.dir, "kubelet") }

// KubeletCertDir holds the kubelet's client and serving certificates.
func (n Node) KubeletCertDir() string { return filepath.Join(n.KubeletDir(), "pki") }

// KubeletVolumePluginDir is the kubelet's FlexVolume directory.
func (n Node) KubeletVolumePluginDir() string { return filepath.Join(n.KubeletDir(), "volume-plugins") }

// KubeletConfig is the KubeletConfiguration file k1s writes.
func (n Node) KubeletConfig() string { return n.etc("kubelet.conf") }

// PodLogsDir is where the kubelet keeps the pods' logs.
func (n Node) PodLogsDir() string { return filepath.Join(n.dir, "pod-logs") }

// ContainerdRoot is containerd's root (content, snapshots, its config and log).
func (n Node) ContainerdRoot() string { return filepath.Join(n.dir, "containerd") }

// ContainerdConfig is the config.toml k1s writes for containerd.
func (n Node) ContainerdConfig() string { return filepath.Join(n.ContainerdRoot(), "config.toml") }

// ContainerdLog is containerd's log file.
func (n Node) ContainerdLog() string { return filepath.Join(n.ContainerdRoot(), "containerd.log") }

// ImportedImages records the image tarballs imported and what they held.
func (n Node) ImportedImages() string { return filepath.Join(n.ContainerdRoot(), "imported.json") }

// ContainerdOptDir is containerd's opt plugin directory.
func (n Node) ContainerdOptDir() string { return filepath.Join(n.dir, "containerd-opt") }

// ContainerdCertsDir is containerd's config_path: a hosts.toml per registry, written from
// registries.yaml at every start.
func (n Node) ContainerdCertsDir() string { return n.etc("containerd", "certs.d") }

// ContainerdTemplate replaces k1s's containerd configuration when present.
func (n Node) ContainerdTemplate() string { return n.etc("containerd", "config.toml.tmpl") }

// CNIConfDir holds the CNI configuration.
func (n Node) CNIConfDir() string { return n.etc("cni", "net.d") }

// CNIConfList is the node's CNI configuration file.
func (n Node) CNIConfList() string { return filepath.Join(n.CNIConfDir(), CNIConfList) }

// IPAMDir holds host-local's address allocations.
func (n Node) IPAMDir() string { return filepath.Join(n.dir, "cni", "networks") }

// FlannelConf is flannel's network configuration.
func (n Node) FlannelConf() string { return n.etc("flannel", "net-conf.json") }

// CgroupRootRecord records the kubelet's cgroup root, so that killall removes that tree only.
func (n Node) CgroupRootRecord() string { return filepath.Join(n.dir, "cgroup-root") }

// SysctlRecord records the host's kernel settings before a node first changed them.
func (n Node) SysctlRecord() string { return filepath.Join(n.dir, "host-sysctls.json") }
