package pki

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Users the control plane's own clients authenticate as.
const (
	AdminUser             = "system:admin"
	ControllerManagerUser = "system:kube-controller-manager"
	SchedulerUser         = "system:kube-scheduler"
	// APIServerKubeletUser is the apiserver's identity towards kubelets (logs, exec, port-forward);
	// it is bound to the system:kubelet-api-admin role rather than being a cluster admin.
	APIServerKubeletUser = "k1s:kube-apiserver"
	// AuthProxyUser is the name the apiserver's aggregation proxy presents to extension servers.
	AuthProxyUser = "system:auth-proxy"
	mastersGroup  = "system:masters"
)

// ControlPlaneSpec says what the control plane's certificates must cover.
type ControlPlaneSpec struct {
	// Dir holds certificates and keys (<data-dir>/server/tls).
	Dir string
	// CredDir holds the kubeconfigs of the control plane's clients (<data-dir>/server/cred).
	CredDir string
	// APIServerIPs and APIServerNames go into the apiserver's serving certificate.
	APIServerIPs   []net.IP
	APIServerNames []string
	// APIServerURL is what the local kubeconfigs point at.
	APIServerURL string
}

// ControlPlane is where the control plane's credentials are on disk.
type ControlPlane struct {
	ServerCA, ClientCA, RequestHeaderCA, EtcdCA *CA

	APIServerServing    Pair
	APIServerKubelet    Pair
	AuthProxyClient     Pair
	EtcdServing         Pair
	EtcdAPIServerClient Pair
	Admin               Pair
	// ServiceAccountKey signs and verifies service-account tokens.
	ServiceAccountKey string

	AdminKubeconfig             string
	ControllerManagerKubeconfig string
	SchedulerKubeconfig         string
}

// EnsureControlPlane creates what is missing of the control plane's PKI and reuses the rest.
func EnsureControlPlane(spec ControlPlaneSpec) (*ControlPlane, error) {
	if err := os.MkdirAll(filepath.Join(spec.Dir, "etcd"), 0o700); err != nil {
		return nil, fmt.Errorf("creating certificate directory: %w", err)
	}
	cp := &ControlPlane{}
	var err error
	for _, ca := range []struct {
		dst        **CA
		dir, name  string
		commonName string
	}{
		{&cp.ServerCA, spec.Dir, "server-ca", "k1s-server-ca"},
		{&cp.ClientCA, spec.Dir, "client-ca", "k1s-client-ca"},
		{&cp.RequestHeaderCA, spec.Dir, "request-header-ca", "k1s-request-header-ca"},
		{&cp.EtcdCA, filepath.Join(spec.Dir, "etcd"), "server-ca", "etcd-server-ca"},
	} {
		if *ca.dst, err = EnsureCA(ca.dir, ca.name, ca.commonName); err != nil {
			return nil, err
		}
	}

	localhost := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	for _, c := range []struct {
		dst  *Pair
		ca   *CA
		dir  string
		name string
		spec CertSpec
	}{
		{&cp.APIServerServing, cp.ServerCA, spec.Dir, "serving-kube-apiserver",
			CertSpec{CommonName: "kube-apiserver", DNSNames: spec.APIServerNames, IPs: spec.APIServerIPs, Server: true}},
		{&cp.APIServerKubelet, cp.ClientCA, spec.Dir, "client-kube-apiserver",
			CertSpec{CommonName: APIServerKubeletUser, Client: true}},
		{&cp.AuthProxyClient, cp.RequestHeaderCA, spec.Dir, "client-auth-proxy",
			CertSpec{CommonName: AuthProxyUser, Client: true}},
		{&cp.Admin, cp.ClientCA, spec.Dir, "client-admin",
			CertSpec{CommonName: AdminUser, Organization: []string{mastersGroup}, Client: true}},
		{nil, cp.ClientCA, spec.Dir, "client-controller",
			CertSpec{CommonName: ControllerManagerUser, Client: true}},
		{nil, cp.ClientCA, spec.Dir, "client-scheduler",
			CertSpec{CommonName: SchedulerUser, Client: true}},
		{&cp.EtcdServing, cp.EtcdCA, filepath.Join(spec.Dir, "etcd"), "server-client",
			CertSpec{CommonName: "etcd-server", DNSNames: []string{"localhost"}, IPs: localhost, Server: true, Client: true}},
		{&cp.EtcdAPIServerClient, cp.EtcdCA, filepath.Join(spec.Dir, "etcd"), "client",
			CertSpec{CommonName: "etcd-client", Client: true}},
	} {
		pair, _, err := c.ca.Ensure(c.dir, c.name, c.spec)
		if err != nil {
			return nil, err
		}
		if c.dst != nil {
			*c.dst = pair
		}
	}

	cp.ServiceAccountKey = filepath.Join(spec.Dir, "service.key")
	if err := EnsureKey(cp.ServiceAccountKey); err != nil {
		return nil, err
	}

	cp.AdminKubeconfig = filepath.Join(spec.CredDir, "admin.kubeconfig")
	cp.ControllerManagerKubeconfig = filepath.Join(spec.CredDir, "controller.kubeconfig")
	cp.SchedulerKubeconfig = filepath.Join(spec.CredDir, "scheduler.kubeconfig")
	for path, pair := range map[string]Pair{
		cp.AdminKubeconfig:             cp.Admin,
		cp.ControllerManagerKubeconfig: pairIn(spec.Dir, "client-controller"),
		cp.SchedulerKubeconfig:         pairIn(spec.Dir, "client-scheduler"),
	} {
		if err := WriteKubeconfig(path, spec.APIServerURL, cp.ServerCA.CertFile, pair, false, 0o600); err != nil {
			return nil, err
		}
	}
	return cp, nil
}

func pairIn(dir, name string) Pair {
	return Pair{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key")}
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
	return WriteFileAtomic(path, data, mode)
}
