package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/network"
	"github.com/k1s-io/k1s/internal/pki"
)

// fieldManager owns what k1s applies to the cluster.
const fieldManager = "k1s"

// NodeTokenGroup is the group nodes joining with the server's default token authenticate in
// (besides system:bootstrappers).
const NodeTokenGroup = "system:bootstrappers:k1s:default-node-token"

// anonymousPaths are the only requests the apiserver accepts without credentials: health
// checks, and the signed cluster-info a joining node reads before it trusts the server.
var anonymousPaths = []string{"/livez", "/readyz", "/healthz",
	"/api/v1/namespaces/" + metav1.NamespacePublic + "/configmaps/" + bootstrapapi.ConfigMapClusterInfo}

// authenticationConfig is the apiserver's structured AuthenticationConfiguration.
func authenticationConfig() []byte {
	out := "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\nanonymous:\n  enabled: true\n  conditions:\n"
	for _, p := range anonymousPaths {
		out += "  - path: " + p + "\n"
	}
	return []byte(out)
}

// ensureNodeToken reads the server's default join token from path, or creates it. A token
// whose CA hash no longer matches ca (a replaced CA) is rewritten with the current hash.
func ensureNodeToken(path string, ca *pki.CA) (pki.JoinToken, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		token, err := pki.ParseJoinToken(string(data))
		if err != nil {
			return token, fmt.Errorf("%s: %w; remove it to create a new join token", path, err)
		}
		if want := pki.CAHash(ca.Cert); token.CAHash != want {
			token.CAHash = want
			return token, pki.WriteFileAtomic(path, []byte(token.String()+"\n"), 0o600)
		}
		return token, nil
	case errors.Is(err, fs.ErrNotExist):
		token, err := pki.NewJoinToken(ca.Cert)
		if err != nil {
			return token, err
		}
		return token, pki.WriteFileAtomic(path, []byte(token.String()+"\n"), 0o600)
	default:
		return pki.JoinToken{}, fmt.Errorf("reading the join token: %w", err)
	}
}

// BootstrapTokenSecret is the Secret through which the apiserver authenticates a bootstrap
// token and the bootstrap signer signs cluster-info for it. A zero expiration never expires.
func BootstrapTokenSecret(token pki.JoinToken, description string, expiration metav1.Time) *corev1.Secret {
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
			Labels:    map[string]string{"app.kubernetes.io/managed-by": fieldManager},
		},
		Type: bootstrapapi.SecretTypeBootstrapToken,
		Data: data,
	}
}

// newBootstrap returns the component that puts into the cluster what nodes join with: the
// server's default bootstrap token (created when missing, so that the node-token file keeps
// working) and the cluster-info ConfigMap the bootstrap signer signs for every token.
func (s *Server) newBootstrap(admin *adminClient) component.Component {
	var done atomic.Bool
	run := func(ctx context.Context) error {
		client, err := admin.get()
		if err != nil {
			return err
		}
		if err := ensureTokenSecret(ctx, client, s.NodeToken); err != nil {
			return err
		}
		if err := s.applyClusterInfo(ctx, client); err != nil {
			return err
		}
		if err := s.applyNodeConfig(ctx, client); err != nil {
			return err
		}
		if err := s.grantAdmin(ctx, client); err != nil {
			return err
		}
		if err := s.writeAdminKubeconfig(); err != nil {
			return err
		}
		// Clusters of earlier k1s versions let the upstream approver approve every bootstrap
		// CSR, bypassing the check that a joining node's name is not taken.
		err = client.RbacV1().ClusterRoleBindings().Delete(ctx, "k1s:node-autoapprove-bootstrap", metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("removing the old bootstrap auto-approval: %w", err)
		}
		done.Store(true)
		<-ctx.Done()
		return nil
	}
	ready := func(context.Context) error {
		if !done.Load() {
			return errors.New("creating the join token and cluster-info")
		}
		return nil
	}
	return component.NewFunc("k1s bootstrap", run, ready)
}

// AdminBinding makes the admin kubeconfig's group cluster-admin.
const AdminBinding = "k1s:cluster-admins"

// grantAdmin binds the admin kubeconfig's group to cluster-admin once per data directory: an
// admin who deletes the binding has revoked every admin kubeconfig, and a restart must not
// grant them again. The break-glass kubeconfig (system:masters) can create it anew.
func (s *Server) grantAdmin(ctx context.Context, client kubernetes.Interface) error {
	marker := s.cfg.adminGrantedFile()
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: AdminBinding, Labels: map[string]string{"app.kubernetes.io/managed-by": fieldManager}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: pki.AdminGroup}},
	}
	_, err := client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{FieldManager: fieldManager})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("granting the admin kubeconfig cluster-admin: %w", err)
	}
	return pki.WriteFileAtomic(marker, []byte("the "+AdminBinding+" ClusterRoleBinding was created; k1s will not create it again\n"), 0o600)
}

func ensureTokenSecret(ctx context.Context, client kubernetes.Interface, token pki.JoinToken) error {
	secret := BootstrapTokenSecret(token, "the server's default node join token (node-token)", metav1.Time{})
	_, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, secret, metav1.CreateOptions{FieldManager: fieldManager})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the join token's Secret: %w", err)
	}
	return nil
}

// applyNodeConfig publishes the network settings every node needs.
func (s *Server) applyNodeConfig(ctx context.Context, client kubernetes.Interface) error {
	cluster := network.Cluster{ClusterCIDR: s.cfg.ClusterCIDR, ServiceCIDR: s.cfg.ServiceCIDR, ClusterDNS: s.cfg.ClusterDNS, ClusterDomain: s.cfg.ClusterDomain}
	cm := corev1ac.ConfigMap(network.ClusterConfigMap, metav1.NamespaceSystem).
		WithLabels(map[string]string{"app.kubernetes.io/managed-by": fieldManager}).
		WithData(cluster.Data())
	if _, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("applying the %s ConfigMap: %w", network.ClusterConfigMap, err)
	}
	return nil
}

// applyClusterInfo publishes the cluster CA and the apiserver's address as kubeadm does.
func (s *Server) applyClusterInfo(ctx context.Context, client kubernetes.Interface) error {
	caData, err := os.ReadFile(s.PKI.ServerCA.CertFile)
	if err != nil {
		return err
	}
	kubeconfig := clientcmdapi.NewConfig()
	kubeconfig.Clusters[""] = &clientcmdapi.Cluster{Server: s.cfg.advertisedAPIServerURL(), CertificateAuthorityData: caData}
	data, err := clientcmd.Write(*kubeconfig)
	if err != nil {
		return err
	}
	cm := corev1ac.ConfigMap(bootstrapapi.ConfigMapClusterInfo, metav1.NamespacePublic).
		WithLabels(map[string]string{"app.kubernetes.io/managed-by": fieldManager}).
		WithData(map[string]string{bootstrapapi.KubeConfigKey: string(data)})
	if _, err := client.CoreV1().ConfigMaps(metav1.NamespacePublic).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("applying the cluster-info ConfigMap: %w", err)
	}
	return nil
}
