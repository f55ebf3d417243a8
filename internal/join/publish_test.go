package join

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstrapsecrets "k8s.io/cluster-bootstrap/util/secrets"
	"sigs.k8s.io/yaml"
)

func TestAuthenticationConfigAllowsAnonymousClusterInfoOnly(t *testing.T) {
	var cfg struct {
		APIVersion string
		Kind       string
		Anonymous  struct {
			Enabled    bool
			Conditions []struct{ Path string }
		}
	}
	if err := yaml.UnmarshalStrict(AuthenticationConfig(), &cfg); err != nil {
		t.Fatalf("%v:\n%s", err, AuthenticationConfig())
	}
	var paths []string
	for _, c := range cfg.Anonymous.Conditions {
		paths = append(paths, c.Path)
	}
	if cfg.Kind != "AuthenticationConfiguration" || !cfg.Anonymous.Enabled ||
		strings.Join(paths, " ") != "/livez /readyz /healthz "+clusterInfoPath {
		t.Fatalf("AuthenticationConfig:\n%s", AuthenticationConfig())
	}
}

func TestEnsureNodeTokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server", "node-token")
	ca := testCA(t)
	token, err := EnsureNodeTokenFile(path, ca)
	if err != nil {
		t.Fatal(err)
	}
	if token.CAHash != CAHash(ca) || token.ID == "" {
		t.Fatalf("new token %+v", token)
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != token.String()+"\n" {
		t.Fatalf("node-token holds %q (%v), want %q", data, err, token.String())
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("node-token mode %v, want 0600", fi.Mode())
	}
	again, err := EnsureNodeTokenFile(path, ca)
	if err != nil || again != token {
		t.Fatalf("read back %+v (%v), want %+v", again, err, token)
	}

	// A replaced CA keeps the token and updates its hash.
	replaced := testCA(t)
	rehashed, err := EnsureNodeTokenFile(path, replaced)
	if err != nil {
		t.Fatal(err)
	}
	if rehashed.CAHash != CAHash(replaced) || rehashed.ID != token.ID || rehashed.Secret != token.Secret {
		t.Fatalf("after a CA change: %+v", rehashed)
	}
	if data, _ := os.ReadFile(path); string(data) != rehashed.String()+"\n" {
		t.Fatalf("node-token not rewritten: %q", data)
	}

	if err := os.WriteFile(path, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = EnsureNodeTokenFile(path, ca)
	wantError(t, err, path+": the join token is malformed", "remove it to create a new join token")
}

func TestBootstrapTokenSecret(t *testing.T) {
	token := Token{ID: "abcdef", Secret: "0123456789abcdef"}
	expiration := metav1.NewTime(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	s := BootstrapTokenSecret(token, "for the lab", expiration)
	if s.Name != "bootstrap-token-abcdef" || s.Namespace != "kube-system" || s.Type != bootstrapapi.SecretTypeBootstrapToken ||
		s.Labels[ManagedByLabel] != FieldManager {
		t.Fatalf("secret %+v", s.ObjectMeta)
	}
	for key, want := range map[string]string{
		bootstrapapi.BootstrapTokenIDKey:               "abcdef",
		bootstrapapi.BootstrapTokenSecretKey:           "0123456789abcdef",
		bootstrapapi.BootstrapTokenUsageSigningKey:     "true",
		bootstrapapi.BootstrapTokenUsageAuthentication: "true",
		bootstrapapi.BootstrapTokenExtraGroupsKey:      NodeTokenGroup,
		bootstrapapi.BootstrapTokenDescriptionKey:      "for the lab",
		bootstrapapi.BootstrapTokenExpirationKey:       "2030-01-02T03:04:05Z",
	} {
		if got := bootstrapsecrets.GetData(s, key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	forever := BootstrapTokenSecret(token, "", metav1.Time{})
	if _, ok := forever.Data[bootstrapapi.BootstrapTokenExpirationKey]; ok {
		t.Error("a token without expiration expires")
	}
	if _, ok := forever.Data[bootstrapapi.BootstrapTokenDescriptionKey]; ok {
		t.Error("an empty description is set")
	}
}

// TestPublishedContractIsWhatNodesRead checks the two ends against each other: what the
// server publishes is what a node discovers and reads.
func TestPublishedContractIsWhatNodesRead(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	f := newFakeServer(t)
	token := serverToken(f)

	marker := filepath.Join(t.TempDir(), "node-token-created")
	for range 2 { // the server does this on every start
		if usable, err := EnsureTokenSecret(ctx, client, token, marker); err != nil || !usable {
			t.Fatalf("default token usable %v, %v", usable, err)
		}
		if err := PublishClusterInfo(ctx, client, f.URL, f.caPEM); err != nil {
			t.Fatal(err)
		}
		if err := PublishNodeConfig(ctx, client, testNodeConfig(t)); err != nil {
			t.Fatal(err)
		}
	}

	secret, err := client.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-"+token.ID, metav1.GetOptions{})
	if err != nil || bootstrapsecrets.GetData(secret, bootstrapapi.BootstrapTokenSecretKey) != token.Secret {
		t.Fatalf("token Secret %+v, %v", secret, err)
	}

	info, err := client.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// What the bootstrap signer adds.
	f.set(signed(t, info.Data[bootstrapapi.KubeConfigKey], token), 0)
	ca, err := discoverWithin(t, 10*time.Second, f.URL, token, false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca, f.caPEM) {
		t.Fatalf("discovered CA %q, want %q", ca, f.caPEM)
	}

	got, err := FetchNodeConfig(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	if want := testNodeConfig(t); got.ClusterCIDR.String() != want.ClusterCIDR.String() || got.ClusterDomain != want.ClusterDomain {
		t.Fatalf("node config %+v, want %+v", got, want)
	}
}

func TestFetchNodeConfigNamesTheConfigMap(t *testing.T) {
	_, err := FetchNodeConfig(context.Background(), fake.NewClientset())
	wantError(t, err, "reading the cluster's settings (kube-system/k1s-node-config)")
}

// TestDefaultTokenLifeCycle checks that a deleted default token is not created again at the
// next start, and that a rotation replaces the token, its Secret and the node-token file.
func TestDefaultTokenLifeCycle(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	dir := t.TempDir()
	path, marker := filepath.Join(dir, "node-token"), filepath.Join(dir, "node-token-created")
	f := newFakeServer(t)
	first, err := EnsureNodeTokenFile(path, f.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	if usable, err := EnsureTokenSecret(ctx, client, first, marker); err != nil || !usable {
		t.Fatalf("first start: usable %v, %v", usable, err)
	}
	secrets := client.CoreV1().Secrets("kube-system")
	if err := secrets.Delete(ctx, "bootstrap-token-"+first.ID, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if usable, err := EnsureTokenSecret(ctx, client, first, marker); err != nil || usable {
		t.Fatalf("restart after the token was deleted: usable %v, %v", usable, err)
	}
	if _, err := secrets.Get(ctx, "bootstrap-token-"+first.ID, metav1.GetOptions{}); err == nil {
		t.Fatal("a deleted default token was created again")
	}

	rotated, err := RotateDefaultToken(ctx, client, path, marker, f.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	again, err := RotateDefaultToken(ctx, client, path, marker, f.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := secrets.Get(ctx, "bootstrap-token-"+rotated.ID, metav1.GetOptions{}); err == nil {
		t.Error("the rotated-out token's Secret is still there")
	}
	if _, err := secrets.Get(ctx, "bootstrap-token-"+again.ID, metav1.GetOptions{}); err != nil {
		t.Errorf("the new token has no Secret: %v", err)
	}
	inFile, err := EnsureNodeTokenFile(path, f.Certificate())
	if err != nil || inFile != again {
		t.Errorf("node-token holds %v (%v), want the new token", inFile.ID, err)
	}
	if usable, err := EnsureTokenSecret(ctx, client, again, marker); err != nil || !usable {
		t.Errorf("restart after rotation: usable %v, %v", usable, err)
	}
}
