package pki

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"

	"github.com/k1s-io/k1s/internal/fileutil"
	"github.com/k1s-io/k1s/internal/layout"
)

// Users the control plane's own clients authenticate as.
const (
	// AdminUserPrefix starts the admin kubeconfig's identity (--write-kubeconfig):
	// k1s:admin:<random>, new at each rotation, in no group. It is a cluster admin only through
	// an RBAC binding of that one user, so a rotation revokes every earlier admin kubeconfig,
	// and deleting the binding revokes the current one.
	AdminUserPrefix = "k1s:admin:"
	// SupervisorUser is k1s's own identity (bootstrap, add-ons, CSR approval, token and
	// secrets-encrypt commands): in system:masters, so no RBAC change can lock k1s out.
	SupervisorUser = "k1s:supervisor"
	// BreakGlassUser is the emergency admin whose kubeconfig stays under the data directory.
	BreakGlassUser        = "k1s:break-glass"
	ControllerManagerUser = "system:kube-controller-manager"
	SchedulerUser         = "system:kube-scheduler"
	// APIServerKubeletUser is the apiserver's identity towards kubelets (logs, exec, port-forward);
	// it is bound to the system:kubelet-api-admin role rather than being a cluster admin.
	APIServerKubeletUser = "k1s:kube-apiserver"
	// MetricsServerUser is the in-process metrics-server's identity towards the apiserver and
	// kubelets; the metrics-server add-on's RBAC grants it what upstream's ServiceAccount has.
	MetricsServerUser = "k1s:metrics-server"
	// AuthProxyUser is the name the apiserver's aggregation proxy presents to extension servers.
	AuthProxyUser = "system:auth-proxy"
	mastersGroup  = "system:masters"
)

// ControlPlaneSpec says what the control plane's certificates must cover.
type ControlPlaneSpec struct {
	// Files names the server's certificates, keys and kubeconfigs.
	Files layout.Server
	// APIServerIPs and APIServerNames go into the apiserver's serving certificate.
	APIServerIPs   []net.IP
	APIServerNames []string
	// APIServerURL is what the local kubeconfigs point at.
	APIServerURL string
	// Rotate names services (see Services) whose certificates are issued again, with new
	// keys, whatever they hold.
	Rotate []string
	// EtcdPeerIPs are this server's addresses for etcd's peers and remote clients (the other
	// servers): set on a server of a cluster that can grow, which then gets a peer certificate
	// and an etcd serving certificate for them too. Empty on a single server.
	EtcdPeerIPs []net.IP
	// ServiceAccountKeyRetention is how long a rotated-out service-account key still
	// verifies tokens: the longest a token it signed can be valid.
	ServiceAccountKeyRetention time.Duration
}

// ServiceAccountService is the Services entry that rotates the service-account signing key.
const ServiceAccountService = "service-account"

// Services are the names `k1s certificate rotate --service` takes, each with the
// certificates it renews (by the names Renewed reports).
var Services = map[string][]string{
	"api-server":          {"serving-kube-apiserver", "client-kube-apiserver"},
	"auth-proxy":          {"client-auth-proxy"},
	"admin":               {"client-admin"},
	"supervisor":          {"client-supervisor"},
	"break-glass":         {"client-break-glass"},
	"controller-manager":  {"client-controller", "serving-kube-controller-manager"},
	"scheduler":           {"client-scheduler", "serving-kube-scheduler"},
	"etcd":                {"etcd/server-client", "etcd/client", "etcd/peer"},
	"metrics-server":      {"serving-metrics-server", "client-metrics-server"},
	ServiceAccountService: {ServiceAccountService},
}

// ControlPlane is where the control plane's credentials are on disk.
type ControlPlane struct {
	ServerCA, ClientCA, RequestHeaderCA, EtcdCA, EtcdPeerCA, KubeletServingCA *CA

	APIServerServing Pair
	APIServerKubelet Pair
	AuthProxyClient  Pair
	EtcdServing      Pair
	// EtcdPeer is empty without spec.EtcdPeerIPs.
	EtcdPeer            Pair
	EtcdAPIServerClient Pair
	Admin               Pair
	Supervisor          Pair
	BreakGlass          Pair
	// AdminUser is the identity of the current admin certificate.
	AdminUser string
	// Renewed lists the certificates this call issued again (by their name under Dir), and
	// "service-account" when the service-account key was rotated.
	Renewed []string
	// ServiceAccount signs and verifies service-account tokens.
	ServiceAccount ServiceAccountKeys

	SupervisorKubeconfig        string
	BreakGlassKubeconfig        string
	ControllerManagerKubeconfig string
	SchedulerKubeconfig         string
}

// EnsureControlPlane creates what is missing of the control plane's PKI and reuses the rest.
func EnsureControlPlane(spec ControlPlaneSpec) (*ControlPlane, error) {
	f := spec.Files
	cp := &ControlPlane{}
	var err error
	for _, ca := range []struct {
		dst        **CA
		files      layout.Pair
		name       string
		commonName string
	}{
		{&cp.ServerCA, f.ServerCA(), "server-ca", "k1s-server-ca"},
		{&cp.ClientCA, f.ClientCA(), "client-ca", "k1s-client-ca"},
		{&cp.RequestHeaderCA, f.RequestHeaderCA(), "request-header-ca", "k1s-request-header-ca"},
		{&cp.EtcdCA, f.EtcdCA(), "etcd/server-ca", "etcd-server-ca"},
		{&cp.EtcdPeerCA, f.EtcdPeerCA(), "etcd/peer-ca", "etcd-peer-ca"},
		{&cp.KubeletServingCA, f.KubeletServingCA(), "kubelet-serving-ca", "k1s-kubelet-serving-ca"},
	} {
		if *ca.dst, err = EnsureCA(ca.files, ca.name, ca.commonName); err != nil {
			return nil, err
		}
	}

	// Nodes of earlier versions served certificates of the server CA until their next start;
	// the apiserver still accepts those from kubelets (never the other way round).
	bundle := slices.Concat(pemOf(cp.KubeletServingCA), pemOf(cp.ServerCA))
	if old, err := os.ReadFile(f.KubeletCABundle()); err != nil || !bytes.Equal(old, bundle) {
		if err := fileutil.WriteAtomic(f.KubeletCABundle(), bundle, CertMode); err != nil {
			return nil, err
		}
	}

	rotate := map[string]bool{}
	for _, service := range spec.Rotate {
		names, ok := Services[service]
		if !ok {
			return nil, fmt.Errorf("unknown service %q to rotate", service)
		}
		for _, name := range names {
			rotate[name] = true
		}
	}
	if cp.AdminUser, err = adminIdentity(f.AdminClient().Cert, rotate["client-admin"]); err != nil {
		return nil, err
	}
	localhost := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	etcdIPs := slices.Concat(localhost, spec.EtcdPeerIPs)
	for _, c := range []struct {
		dst   *Pair
		ca    *CA
		files layout.Pair
		name  string
		spec  CertSpec
	}{
		{&cp.APIServerServing, cp.ServerCA, f.APIServerServing(), "serving-kube-apiserver",
			CertSpec{CommonName: "kube-apiserver", DNSNames: spec.APIServerNames, IPs: spec.APIServerIPs, Server: true}},
		{&cp.APIServerKubelet, cp.ClientCA, f.APIServerKubeletClient(), "client-kube-apiserver",
			CertSpec{CommonName: APIServerKubeletUser, Client: true}},
		{&cp.AuthProxyClient, cp.RequestHeaderCA, f.AuthProxyClient(), "client-auth-proxy",
			CertSpec{CommonName: AuthProxyUser, Client: true}},
		{&cp.Admin, cp.ClientCA, f.AdminClient(), "client-admin",
			CertSpec{CommonName: cp.AdminUser, Client: true}},
		{&cp.Supervisor, cp.ClientCA, f.SupervisorClient(), "client-supervisor",
			CertSpec{CommonName: SupervisorUser, Organization: []string{mastersGroup}, Client: true}},
		{&cp.BreakGlass, cp.ClientCA, f.BreakGlassClient(), "client-break-glass",
			CertSpec{CommonName: BreakGlassUser, Organization: []string{mastersGroup}, Client: true}},
		{nil, cp.ClientCA, f.ControllerManagerClient(), "client-controller",
			CertSpec{CommonName: ControllerManagerUser, Client: true}},
		{nil, cp.ClientCA, f.SchedulerClient(), "client-scheduler",
			CertSpec{CommonName: SchedulerUser, Client: true}},
		{nil, cp.ServerCA, f.ControllerManagerServing(), "serving-kube-controller-manager",
			CertSpec{CommonName: "kube-controller-manager", DNSNames: []string{"localhost"}, IPs: localhost, Server: true}},
		{nil, cp.ServerCA, f.SchedulerServing(), "serving-kube-scheduler",
			CertSpec{CommonName: "kube-scheduler", DNSNames: []string{"localhost"}, IPs: localhost, Server: true}},
		// The aggregator verifies the name <service>.<namespace>.svc, whatever address it dials.
		{nil, cp.ServerCA, f.MetricsServerServing(), "serving-metrics-server",
			CertSpec{CommonName: "metrics-server", DNSNames: []string{"metrics-server.kube-system.svc"}, Server: true}},
		{nil, cp.ClientCA, f.MetricsServerClient(), "client-metrics-server",
			CertSpec{CommonName: MetricsServerUser, Client: true}},
		{&cp.EtcdServing, cp.EtcdCA, f.EtcdServing(), "etcd/server-client",
			CertSpec{CommonName: "etcd-server", DNSNames: []string{"localhost"}, IPs: etcdIPs, Server: true, Client: true}},
		{&cp.EtcdAPIServerClient, cp.EtcdCA, f.EtcdAPIServerClient(), "etcd/client",
			CertSpec{CommonName: "etcd-client", Client: true}},
	} {
		pair, wrote, err := c.ca.Ensure(c.files, c.spec, rotate[c.name])
		if err != nil {
			return nil, err
		}
		if wrote {
			cp.Renewed = append(cp.Renewed, c.name)
		}
		if c.dst != nil {
			*c.dst = pair
		}
	}

	if len(spec.EtcdPeerIPs) > 0 {
		pair, wrote, err := cp.EtcdPeerCA.Ensure(f.EtcdPeer(), CertSpec{CommonName: "etcd-peer", DNSNames: []string{"localhost"}, IPs: etcdIPs, Server: true, Client: true}, rotate["etcd/peer"])
		if err != nil {
			return nil, err
		}
		if wrote {
			cp.Renewed = append(cp.Renewed, "etcd/peer")
		}
		cp.EtcdPeer = pair
	}

	cp.ServiceAccount = ServiceAccountKeys{SigningKey: f.ServiceAccountKey(), VerifyKeys: f.ServiceAccountVerifyKeys(), RetiredDir: f.ServiceAccountRetiredDir()}
	rotated, err := EnsureServiceAccountKeys(cp.ServiceAccount, rotate[ServiceAccountService], spec.ServiceAccountKeyRetention, time.Now())
	if err != nil {
		return nil, err
	}
	if rotated {
		cp.Renewed = append(cp.Renewed, ServiceAccountService)
	}

	cp.SupervisorKubeconfig = f.SupervisorKubeconfig()
	cp.BreakGlassKubeconfig = f.BreakGlassKubeconfig()
	cp.ControllerManagerKubeconfig = f.ControllerManagerKubeconfig()
	cp.SchedulerKubeconfig = f.SchedulerKubeconfig()
	// The in-process clients read their certificates from the files (and so see renewed
	// ones); the break-glass kubeconfig carries its own, to work wherever it is copied.
	for _, k := range []struct {
		path  string
		pair  Pair
		embed bool
	}{
		{cp.SupervisorKubeconfig, cp.Supervisor, false},
		{cp.BreakGlassKubeconfig, cp.BreakGlass, true},
		{cp.ControllerManagerKubeconfig, pairOf(f.ControllerManagerClient()), false},
		{cp.SchedulerKubeconfig, pairOf(f.SchedulerClient()), false},
		{f.MetricsServerKubeconfig(), pairOf(f.MetricsServerClient()), false},
	} {
		if err := WriteKubeconfig(k.path, spec.APIServerURL, cp.ServerCA.CertFile, k.pair, k.embed, 0o600); err != nil {
			return nil, err
		}
	}
	// Earlier versions kept a system:masters admin kubeconfig here.
	if err := os.Remove(f.LegacyAdminKubeconfig()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return cp, nil
}

func pemOf(ca *CA) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

func pairOf(p layout.Pair) Pair { return Pair{CertFile: p.Cert, KeyFile: p.Key} }

// adminIdentity is the user the admin certificate at certFile is for, or a new one when it
// has none of k1s:admin:<random> (a new cluster, a rotation, or an earlier version's shared
// k1s:admin in the group k1s:cluster-admins).
func adminIdentity(certFile string, rotate bool) (string, error) {
	if !rotate {
		if certs, err := certutil.CertsFromFile(certFile); err == nil {
			if cn := certs[0].Subject.CommonName; strings.HasPrefix(cn, AdminUserPrefix) && len(certs[0].Subject.Organization) == 0 {
				return cn, nil
			}
		}
	}
	id := make([]byte, 6)
	if _, err := rand.Read(id); err != nil {
		return "", fmt.Errorf("generating the admin identity: %w", err)
	}
	return AdminUserPrefix + hex.EncodeToString(id), nil
}

// WriteKubeconfig writes a kubeconfig for server with the client certificate pair. With embed
// the certificates are copied into the file, so that it can be moved elsewhere on its own.
func WriteKubeconfig(path, server, caFile string, pair Pair, embed bool, mode os.FileMode) error {
	cluster := &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	user := &clientcmdapi.AuthInfo{ClientCertificate: pair.CertFile, ClientKey: pair.KeyFile}
	if embed {
		var err error
		if cluster.CertificateAuthorityData, err = os.ReadFile(caFile); err != nil {
			return fmt.Errorf("writing kubeconfig %s: %w", path, err)
		}
		if user.ClientCertificateData, err = os.ReadFile(pair.CertFile); err != nil {
			return fmt.Errorf("writing kubeconfig %s: %w", path, err)
		}
		if user.ClientKeyData, err = os.ReadFile(pair.KeyFile); err != nil {
			return fmt.Errorf("writing kubeconfig %s: %w", path, err)
		}
		cluster.CertificateAuthority, user.ClientCertificate, user.ClientKey = "", "", ""
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["default"] = cluster
	cfg.AuthInfos["default"] = user
	cfg.Contexts["default"] = &clientcmdapi.Context{Cluster: "default", AuthInfo: "default"}
	cfg.CurrentContext = "default"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("encoding kubeconfig %s: %w", path, err)
	}
	return fileutil.WriteAtomic(path, data, mode)
}
