package pki

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"

	"github.com/k1s-io/k1s/internal/layout"
)

func testSpec(dir string) ControlPlaneSpec {
	return ControlPlaneSpec{
		Files:          layout.DataDir(dir).Server(),
		APIServerIPs:   []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.43.0.1"), net.ParseIP("192.0.2.7")},
		APIServerNames: []string{"kubernetes", "kubernetes.default.svc.cluster.local", "node1"},
		APIServerURL:   "https://127.0.0.1:6443",
		// A server of a cluster that can grow: every leaf, etcd's peer certificate included.
		EtcdPeerIPs: []net.IP{net.ParseIP("192.0.2.7")},
	}
}

func mustCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := certutil.CertsFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func TestControlPlaneCertificatesVerifyAndCoverSANs(t *testing.T) {
	spec := testSpec(t.TempDir())
	cp, err := EnsureControlPlane(spec)
	if err != nil {
		t.Fatal(err)
	}
	serving := mustCert(t, cp.APIServerServing.CertFile)
	roots := x509.NewCertPool()
	roots.AddCert(cp.ServerCA.Cert)
	for _, name := range append(spec.APIServerNames, "127.0.0.1", "10.43.0.1", "192.0.2.7") {
		if _, err := serving.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("serving certificate does not verify for %s: %v", name, err)
		}
	}
	if _, err := serving.Verify(x509.VerifyOptions{DNSName: "other.example", Roots: roots}); err == nil {
		t.Error("serving certificate verifies for a name it was not issued for")
	}

	admin := mustCert(t, cp.Admin.CertFile)
	clientRoots := x509.NewCertPool()
	clientRoots.AddCert(cp.ClientCA.Cert)
	if _, err := admin.Verify(x509.VerifyOptions{Roots: clientRoots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin certificate does not verify against the client CA: %v", err)
	}
	// The admin is an admin through RBAC only (revocable), as a user of its own and in no
	// group; the supervisor and break-glass credentials are in system:masters.
	if len(admin.Subject.Organization) != 0 || admin.Subject.CommonName != cp.AdminUser || !strings.HasPrefix(cp.AdminUser, AdminUserPrefix) {
		t.Errorf("admin certificate is %s in %v, want %s… in no group", admin.Subject.CommonName, admin.Subject.Organization, AdminUserPrefix)
	}
	// Kubelet serving certificates come from a CA of their own, which the API's clients do
	// not trust.
	if cp.KubeletServingCA.Cert.Equal(cp.ServerCA.Cert) || publicKeysEqual(cp.KubeletServingCA.Cert.PublicKey, cp.ServerCA.Cert.PublicKey) {
		t.Error("the kubelet-serving CA is the server CA")
	}
	for _, pair := range []Pair{cp.Supervisor, cp.BreakGlass} {
		if c := mustCert(t, pair.CertFile); !slices.Equal(c.Subject.Organization, []string{mastersGroup}) {
			t.Errorf("%s groups = %v, want [%s]", pair.CertFile, c.Subject.Organization, mastersGroup)
		}
	}
	if _, err := admin.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("admin certificate verifies against the server CA")
	}
}

func TestPrivateKeysAreOwnerOnly(t *testing.T) {
	spec := testSpec(t.TempDir())
	if _, err := EnsureControlPlane(spec); err != nil {
		t.Fatal(err)
	}
	keys := 0
	err := filepath.Walk(filepath.Dir(spec.Files.TLSDir()), func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if filepath.Ext(path) == ".key" || filepath.Ext(path) == ".kubeconfig" {
			keys++
			if info.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", path, info.Mode().Perm())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys < 10 {
		t.Fatalf("found only %d keys and kubeconfigs", keys)
	}
}

func TestReusedOnRestart(t *testing.T) {
	spec := testSpec(t.TempDir())
	first, err := EnsureControlPlane(spec)
	if err != nil {
		t.Fatal(err)
	}
	before := readAll(t, spec.Files.TLSDir())
	second, err := EnsureControlPlane(spec)
	if err != nil {
		t.Fatal(err)
	}
	after := readAll(t, spec.Files.TLSDir())
	for name, data := range before {
		if !bytes.Equal(data, after[name]) {
			t.Errorf("%s changed on restart", name)
		}
	}
	if !first.ServerCA.Cert.Equal(second.ServerCA.Cert) {
		t.Error("server CA changed on restart")
	}
}

func TestServingCertificateReissuedForNewSAN(t *testing.T) {
	spec := testSpec(t.TempDir())
	cp, err := EnsureControlPlane(spec)
	if err != nil {
		t.Fatal(err)
	}
	oldKey, _ := os.ReadFile(cp.APIServerServing.KeyFile)
	oldCA, _ := os.ReadFile(cp.ServerCA.CertFile)
	spec.APIServerNames = append(spec.APIServerNames, "api.example.test")
	if cp, err = EnsureControlPlane(spec); err != nil {
		t.Fatal(err)
	}
	serving := mustCert(t, cp.APIServerServing.CertFile)
	if !slices.Contains(serving.DNSNames, "api.example.test") {
		t.Fatalf("new SAN missing: %v", serving.DNSNames)
	}
	if newKey, _ := os.ReadFile(cp.APIServerServing.KeyFile); !bytes.Equal(oldKey, newKey) {
		t.Error("reissuing the serving certificate replaced its key")
	}
	if newCA, _ := os.ReadFile(cp.ServerCA.CertFile); !bytes.Equal(oldCA, newCA) {
		t.Error("reissuing the serving certificate replaced the CA")
	}
}

func TestKubeconfigEmbedsCredentials(t *testing.T) {
	dir := t.TempDir()
	cp, err := EnsureControlPlane(testSpec(dir))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out", "k1s.yaml")
	if err := WriteKubeconfig(out, "https://127.0.0.1:7443", cp.ServerCA.CertFile, cp.Admin, true, 0o640); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", info.Mode().Perm())
	}
	cfg, err := clientcmd.LoadFromFile(out)
	if err != nil {
		t.Fatal(err)
	}
	cluster := cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster]
	if cluster.Server != "https://127.0.0.1:7443" || len(cluster.CertificateAuthorityData) == 0 {
		t.Errorf("cluster = %+v", cluster)
	}
	if len(cfg.AuthInfos["default"].ClientKeyData) == 0 {
		t.Error("client key not embedded")
	}
}

func TestDamagedCAIsNotReplaced(t *testing.T) {
	spec := testSpec(t.TempDir())
	cp, err := EnsureControlPlane(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cp.ClientCA.KeyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureControlPlane(spec); err == nil {
		t.Fatal("a damaged CA key was silently replaced")
	}
	if data, _ := os.ReadFile(cp.ClientCA.KeyFile); string(data) != "garbage" {
		t.Fatal("the damaged CA key was overwritten")
	}
}

func readAll(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		files[path] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestCAWithMissingKeyIsNotReplaced(t *testing.T) {
	spec := testSpec(t.TempDir())
	cp, err := EnsureControlPlane(spec)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(cp.ServerCA.CertFile)
	if err := os.Remove(cp.ServerCA.KeyFile); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureControlPlane(spec); err == nil {
		t.Fatal("a CA whose key is missing was replaced")
	}
	if after, _ := os.ReadFile(cp.ServerCA.CertFile); !bytes.Equal(before, after) {
		t.Fatal("the CA certificate was overwritten")
	}
}

func TestRotateIssuesOnlyTheServiceAgainWithNewKeys(t *testing.T) {
	spec := testSpec(t.TempDir())
	first, err := EnsureControlPlane(spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Renewed) != leaves() {
		t.Errorf("first start issued %v, want all %d leaves", first.Renewed, leaves())
	}
	before := readAll(t, spec.Files.TLSDir())
	spec.Rotate = []string{"api-server"}
	cp, err := EnsureControlPlane(spec)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cp.Renewed, Services["api-server"]) {
		t.Errorf("renewed %v, want %v", cp.Renewed, Services["api-server"])
	}
	after := readAll(t, spec.Files.TLSDir())
	for name, data := range before {
		base := filepath.Base(name)
		rotated := strings.HasPrefix(base, "serving-kube-apiserver.") || strings.HasPrefix(base, "client-kube-apiserver.")
		if changed := !bytes.Equal(data, after[name]); changed != rotated {
			t.Errorf("%s changed=%v, want %v", name, changed, rotated)
		}
	}
	spec.Rotate = []string{"kubelet"}
	if _, err := EnsureControlPlane(spec); err == nil {
		t.Error("rotating an unknown service did not fail")
	}
}

func TestCertificatesOwnerOnlyAndExpiry(t *testing.T) {
	spec := testSpec(t.TempDir())
	cp, err := EnsureControlPlane(spec)
	if err != nil {
		t.Fatal(err)
	}
	// A certificate written 0644 by an earlier version is made owner-only at the next start.
	if err := os.Chmod(cp.APIServerServing.CertFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureControlPlane(spec); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{cp.APIServerServing.CertFile, cp.ServerCA.CertFile} {
		if info, err := os.Stat(f); err != nil || info.Mode().Perm() != CertMode {
			t.Errorf("%s: mode %v %v, want %v", f, info.Mode().Perm(), err, CertMode)
		}
	}
	// Leaves last a year, CAs ten: none is due within 90 days, all are within two years.
	if soon, err := ExpiringWithin(spec.Files.TLSDir(), RenewBefore); err != nil || len(soon) != 0 {
		t.Errorf("expiring within 90 days: %v %v", soon, err)
	}
	if soon, err := ExpiringWithin(spec.Files.TLSDir(), 2*365*24*time.Hour); err != nil || len(soon) != leaves() {
		t.Errorf("expiring within two years: %d %v, want the %d leaves", len(soon), err, leaves())
	}
}

// leaves counts the control plane's leaf certificates: every one belongs to a service (the
// service-account key is a key, not a certificate).
func leaves() int {
	n := 0
	for service, names := range Services {
		if service != ServiceAccountService {
			n += len(names)
		}
	}
	return n
}

// TestAdminIdentity checks that the admin identity survives a restart and a renewal, and that
// a rotation gives a new one (which revokes the old through RBAC).
func TestAdminIdentity(t *testing.T) {
	spec := testSpec(t.TempDir())
	first, err := EnsureControlPlane(spec)
	if err != nil {
		t.Fatal(err)
	}
	again, err := EnsureControlPlane(spec)
	if err != nil {
		t.Fatal(err)
	}
	if again.AdminUser != first.AdminUser || slices.Contains(again.Renewed, "client-admin") {
		t.Errorf("a restart changed the admin identity %s to %s (renewed %v)", first.AdminUser, again.AdminUser, again.Renewed)
	}
	spec.Rotate = []string{"admin"}
	rotated, err := EnsureControlPlane(spec)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.AdminUser == first.AdminUser || !slices.Contains(rotated.Renewed, "client-admin") {
		t.Errorf("rotation kept the admin identity %s (renewed %v)", rotated.AdminUser, rotated.Renewed)
	}
	if c := mustCert(t, rotated.Admin.CertFile); c.Subject.CommonName != rotated.AdminUser {
		t.Errorf("admin certificate is for %s, want %s", c.Subject.CommonName, rotated.AdminUser)
	}
}

// TestServiceAccountKeyRotation checks that a rotated-out key verifies tokens until its
// retention ends, and only then is dropped.
func TestServiceAccountKeyRotation(t *testing.T) {
	dir := t.TempDir()
	keys := ServiceAccountKeys{SigningKey: filepath.Join(dir, "service.key"), VerifyKeys: filepath.Join(dir, "verify.pub"), RetiredDir: filepath.Join(dir, "retired")}
	now := time.Unix(1_800_000_000, 0)
	verifyKeys := func() []any {
		t.Helper()
		pubs, err := keyutil.PublicKeysFromFile(keys.VerifyKeys)
		if err != nil {
			t.Fatal(err)
		}
		return pubs
	}
	signing := func() any {
		t.Helper()
		key, err := keyutil.PrivateKeyFromFile(keys.SigningKey)
		if err != nil {
			t.Fatal(err)
		}
		return key.(crypto.Signer).Public()
	}
	if rotated, err := EnsureServiceAccountKeys(keys, false, time.Hour, now); err != nil || rotated {
		t.Fatalf("first ensure: rotated %v, %v", rotated, err)
	}
	old := signing()
	if pubs := verifyKeys(); len(pubs) != 1 || !publicKeysEqual(pubs[0], old) {
		t.Fatalf("verification keys %d, want the signing key alone", len(pubs))
	}
	if rotated, err := EnsureServiceAccountKeys(keys, true, time.Hour, now); err != nil || !rotated {
		t.Fatalf("rotation: rotated %v, %v", rotated, err)
	}
	current := signing()
	if publicKeysEqual(current, old) {
		t.Fatal("rotation kept the signing key")
	}
	pubs := verifyKeys()
	if len(pubs) != 2 || !publicKeysEqual(pubs[0], current) || !publicKeysEqual(pubs[1], old) {
		t.Fatalf("after rotation the verification keys are %d, want the new and the old", len(pubs))
	}
	// Within the retention the old key stays; after it, it goes.
	if _, err := EnsureServiceAccountKeys(keys, false, time.Hour, now.Add(59*time.Minute)); err != nil || len(verifyKeys()) != 2 {
		t.Fatalf("the old key was dropped within its retention (%v)", err)
	}
	if _, err := EnsureServiceAccountKeys(keys, false, time.Hour, now.Add(61*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if pubs := verifyKeys(); len(pubs) != 1 || !publicKeysEqual(pubs[0], current) {
		t.Errorf("after the retention the verification keys are %d, want the signing key alone", len(pubs))
	}
}

// etcd members authenticate each other with a CA of their own: no etcd client certificate
// passes for a member, and a member's certificate covers its address.
func TestEtcdPeerCertificate(t *testing.T) {
	spec := testSpec(t.TempDir())
	cp, err := EnsureControlPlane(spec)
	if err != nil {
		t.Fatal(err)
	}
	peer := mustCert(t, cp.EtcdPeer.CertFile)
	peers, clients := x509.NewCertPool(), x509.NewCertPool()
	peers.AddCert(cp.EtcdPeerCA.Cert)
	clients.AddCert(cp.EtcdCA.Cert)
	if _, err := peer.Verify(x509.VerifyOptions{Roots: peers, DNSName: "192.0.2.7", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("the peer certificate for 192.0.2.7: %v", err)
	}
	client := mustCert(t, cp.EtcdAPIServerClient.CertFile)
	if _, err := client.Verify(x509.VerifyOptions{Roots: peers, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("an etcd client certificate verifies as a peer")
	}
	serving := mustCert(t, cp.EtcdServing.CertFile)
	if _, err := serving.Verify(x509.VerifyOptions{Roots: clients, DNSName: "192.0.2.7"}); err != nil {
		t.Errorf("etcd's serving certificate for the other servers at 192.0.2.7: %v", err)
	}
	single := testSpec(t.TempDir())
	single.EtcdPeerIPs = nil
	cp, err = EnsureControlPlane(single)
	if err != nil {
		t.Fatal(err)
	}
	if cp.EtcdPeer.CertFile != "" {
		t.Error("a single server got a peer certificate")
	}
}
