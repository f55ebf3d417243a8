package join

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/k1s-io/k1s/internal/fileutil"
)

// FieldManager owns what k1s applies to the cluster.
const FieldManager = "k1s"

// ManagedByLabel, set to FieldManager, marks the objects k1s creates.
const ManagedByLabel = "app.kubernetes.io/managed-by"

func managedBy() map[string]string { return map[string]string{ManagedByLabel: FieldManager} }

// NodeTokenGroup is the group nodes joining with the server's default token authenticate in
// (besides system:bootstrappers).
const NodeTokenGroup = "system:bootstrappers:k1s:default-node-token"

// anonymousPaths are the only requests the apiserver accepts without credentials: health
// checks, and the signed cluster-info a joining node reads before it trusts the server.
var anonymousPaths = []string{"/livez", "/readyz", "/healthz",
	"/api/v1/namespaces/" + metav1.NamespacePublic + "/configmaps/" + bootstrapapi.ConfigMapClusterInfo}

// AuthenticationConfig is the apiserver's structured AuthenticationConfiguration: discovery
// depends on it, since a joining node reads cluster-info before it has any credential.
func AuthenticationConfig() []byte {
	out := "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\nanonymous:\n  enabled: true\n  conditions:\n"
	for _, p := range anonymousPaths {
		out += "  - path: " + p + "\n"
	}
	return []byte(out)
}

// EnsureNodeTokenFile reads the server's default join token from path, or creates it. A token
// whose CA hash no longer matches caCert (a replaced CA) is rewritten with the current hash.
func EnsureNodeTokenFile(path string, caCert *x509.Certificate) (Token, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		token, err := ParseToken(string(data))
		if err != nil {
			return token, fmt.Errorf("%s: %w; remove it to create a new join token", path, err)
		}
		if want := CAHash(caCert); token.CAHash != want {
			token.CAHash = want
			return token, fileutil.WriteAtomic(path, []byte(token.String()+"\n"), 0o600)
		}
		return token, nil
	case errors.Is(err, fs.ErrNotExist):
		token, err := NewToken(caCert)
		if err != nil {
			return token, err
		}
		return token, fileutil.WriteAtomic(path, []byte(token.String()+"\n"), 0o600)
	default:
		return Token{}, fmt.Errorf("reading the join token: %w", err)
	}
}

// BootstrapTokenSecret is the Secret through which the apiserver authenticates a bootstrap
// token and the bootstrap signer signs cluster-info for it. A zero expiration never expires.
func BootstrapTokenSecret(token Token, description string, expiration metav1.Time) *corev1.Secret {
	data := map[string][]byte{
		bootstrapapi.BootstrapTokenIDKey:               []byte(token.ID),
		bootstrapapi.BootstrapTokenSecretKey:           []byte(token.Secret),
		bootstrapapi.BootstrapTokenUsageSigningKey:     []byte("true"),
		bootstrapapi.BootstrapTokenUsageAuthentication: []byte("true"),
		bootstrapapi.BootstrapTokenExtraGroupsKey:      []byte(NodeTokenGroup),
	}
	if description != "" {
		data[bootstrapapi.BootstrapTokenDescriptionKey] = []byte(description)
	}
	if !expiration.IsZero() {
		data[bootstrapapi.BootstrapTokenExpirationKey] = []byte(expiration.UTC().Format(time.RFC3339))
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      bootstrapapi.BootstrapTokenSecretPrefix + token.ID,
			Namespace: metav1.NamespaceSystem,
			Labels:    managedBy(),
		},
		Type: bootstrapapi.SecretTypeBootstrapToken,
		Data: data,
	}
}

// DefaultTokenDescription describes the Secret of the server's default join token.
const DefaultTokenDescription = "the server's default node join token (node-token)"

// EnsureTokenSecret creates the Secret of the server's default token (the node-token
// file's), which never expires, once: createdMarker records the token it was created for, and
// a Secret deleted since was revoked on purpose. It reports whether the token is usable.
func EnsureTokenSecret(ctx context.Context, client kubernetes.Interface, token Token, createdMarker string) (bool, error) {
	return ensureTokenSecret(ctx, client, token, createdMarker, BootstrapTokenSecret(token, DefaultTokenDescription, metav1.Time{}))
}

func ensureTokenSecret(ctx context.Context, client kubernetes.Interface, token Token, createdMarker string, secret *corev1.Secret) (bool, error) {
	if created, err := os.ReadFile(createdMarker); err == nil && strings.TrimSpace(string(created)) == token.ID {
		_, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, bootstrapapi.BootstrapTokenSecretPrefix+token.ID, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	}
	_, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, secret, metav1.CreateOptions{FieldManager: FieldManager})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return false, fmt.Errorf("creating the join token's Secret: %w", err)
	}
	return true, fileutil.WriteAtomic(createdMarker, []byte(token.ID+"\n"), 0o600)
}

// RotateDefaultToken replaces the server's default join token: a new token's Secret is
// created, the node-token file at path rewritten, and the old token's Secret deleted, in
// that order, so that a failure leaves a working token. createdMarker is EnsureTokenSecret's.
func RotateDefaultToken(ctx context.Context, client kubernetes.Interface, path, createdMarker string, caCert *x509.Certificate) (Token, error) {
	var old Token
	if data, err := os.ReadFile(path); err == nil {
		old, _ = ParseToken(string(data)) // a damaged file is replaced all the same
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Token{}, fmt.Errorf("reading the join token: %w", err)
	}
	token, err := NewToken(caCert)
	if err != nil {
		return token, err
	}
	secret := BootstrapTokenSecret(token, DefaultTokenDescription, metav1.Time{})
	if _, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, secret, metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
		return token, fmt.Errorf("creating the new join token: %w", err)
	}
	if err := fileutil.WriteAtomic(path, []byte(token.String()+"\n"), 0o600); err != nil {
		return token, err
	}
	if err := fileutil.WriteAtomic(createdMarker, []byte(token.ID+"\n"), 0o600); err != nil {
		return token, err
	}
	if old.ID != "" {
		err := client.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, bootstrapapi.BootstrapTokenSecretPrefix+old.ID, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return token, fmt.Errorf("deleting the old join token %s (delete it with 'k1s token delete %s'): %w", old.ID, old.ID, err)
		}
	}
	return token, nil
}

// PublishClusterInfo publishes the cluster CA and the apiserver's address as kubeadm does, in
// kube-public/cluster-info, which the bootstrap signer signs for every token and Discover reads.
func PublishClusterInfo(ctx context.Context, client kubernetes.Interface, serverURL string, caPEM []byte) error {
	kubeconfig := clientcmdapi.NewConfig()
	kubeconfig.Clusters[""] = &clientcmdapi.Cluster{Server: serverURL, CertificateAuthorityData: caPEM}
	data, err := clientcmd.Write(*kubeconfig)
	if err != nil {
		return err
	}
	cm := corev1ac.ConfigMap(bootstrapapi.ConfigMapClusterInfo, metav1.NamespacePublic).
		WithLabels(managedBy()).
		WithData(map[string]string{bootstrapapi.KubeConfigKey: string(data)})
	if _, err := client.CoreV1().ConfigMaps(metav1.NamespacePublic).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("applying the cluster-info ConfigMap: %w", err)
	}
	return nil
}

// PublishNodeConfig publishes the network settings every node needs (see FetchNodeConfig).
func PublishNodeConfig(ctx context.Context, client kubernetes.Interface, config NodeConfig) error {
	cm := corev1ac.ConfigMap(NodeConfigMap, metav1.NamespaceSystem).
		WithLabels(managedBy()).
		WithData(config.Data())
	if _, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("applying the %s ConfigMap: %w", NodeConfigMap, err)
	}
	return nil
}
