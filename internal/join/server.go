package join

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/sirupsen/logrus"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
)

// What servers of one cluster share through the API. RBAC (manifests/rbac.yaml) lets the
// server token's group read these two objects, and nothing else beyond what every bootstrap
// token may do.
const (
	// ServerTokenGroup is the group of the server token (server/token), which joins servers.
	ServerTokenGroup = "system:bootstrappers:k1s:server-token"
	// BootstrapDataSecret holds the cluster's bootstrap data sealed with the server token
	// (package bootstrapdata), in its key BootstrapDataKey.
	BootstrapDataSecret = "k1s-server-bootstrap"
	BootstrapDataKey    = "sealed"
	// EtcdMembersConfigMap maps each server's etcd member name to its etcd client URL, for a
	// joining server to reach etcd.
	EtcdMembersConfigMap = "k1s-etcd-members"
	// ServerTokenDescription describes the server token's Secret.
	ServerTokenDescription = "the server token (server/token): joins servers to the cluster"
)

// ErrNotServerToken is the error of a server joining with a token that joins nodes only.
var ErrNotServerToken = errors.New("this token cannot join a server: it is not a server token (an agent's node-token or a 'k1s token create' token joins nodes only); use <data-dir>/server/token of a server started with --cluster-init")

// ServerTokenSecret is the Secret of a server token's authentication (Token.ServerAuth): a
// bootstrap token in ServerTokenGroup.
func ServerTokenSecret(auth Token) *corev1.Secret {
	s := BootstrapTokenSecret(auth, ServerTokenDescription, metav1.Time{})
	s.Data[bootstrapapi.BootstrapTokenExtraGroupsKey] = []byte(ServerTokenGroup)
	return s
}

// EnsureServerTokenSecret is EnsureTokenSecret for the server token: the cluster gets only
// its authentication (Token.ServerAuth), never its own secret.
func EnsureServerTokenSecret(ctx context.Context, client kubernetes.Interface, token Token, createdMarker string) (bool, error) {
	auth, err := token.ServerAuth()
	if err != nil {
		return false, err
	}
	return ensureTokenSecret(ctx, client, auth, createdMarker, ServerTokenSecret(auth))
}

// FetchBootstrapData reads, with the server token's authentication (Token.ServerAuth) and
// over TLS verified with caPEM (as Discover returned it), the cluster's sealed bootstrap data and its etcd members' client
// URLs. An agent token is refused here, before the joining server writes anything. While the
// first server is still publishing them (or its RBAC), it waits with progress in the log.
func FetchBootstrapData(ctx context.Context, log *logrus.Logger, server string, caPEM []byte, auth Token) (sealed []byte, etcdURLs []string, err error) {
	cfg := &rest.Config{Host: server, TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}, BearerToken: auth.Bootstrap(), Timeout: 10 * time.Second}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	backoff := time.Second
	for attempt := 1; ; attempt++ {
		sealed, etcdURLs, err := fetchBootstrapDataOnce(ctx, client, server)
		if err == nil {
			return sealed, etcdURLs, nil
		}
		var fatal joinError
		if errors.As(err, &fatal) {
			return nil, nil, fatal.error
		}
		log.Infof("waiting for the cluster's bootstrap data at %s: %v (attempt %d, next in %s)", server, err, attempt, backoff)
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func fetchBootstrapDataOnce(ctx context.Context, client kubernetes.Interface, server string) ([]byte, []string, error) {
	secret, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, BootstrapDataSecret, metav1.GetOptions{})
	switch {
	case apierrors.IsForbidden(err):
		// A server token is forbidden too until the first server has applied its RBAC.
		review, rerr := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if rerr != nil {
			return nil, nil, fmt.Errorf("reading the bootstrap data: %v; asking who this token is: %w", err, rerr)
		}
		if !slices.Contains(review.Status.UserInfo.Groups, ServerTokenGroup) {
			return nil, nil, joinError{ErrNotServerToken}
		}
		return nil, nil, fmt.Errorf("the server token may not read the bootstrap data yet (the first server is still applying its RBAC): %w", err)
	case apierrors.IsNotFound(err):
		return nil, nil, fmt.Errorf("the first server has not yet published kube-system/%s", BootstrapDataSecret)
	case err != nil:
		return nil, nil, fmt.Errorf("reading the cluster's bootstrap data from %s: %w", server, err)
	}
	sealed := secret.Data[BootstrapDataKey]
	if len(sealed) == 0 {
		return nil, nil, joinError{fmt.Errorf("the cluster's bootstrap data (kube-system/%s) is empty", BootstrapDataSecret)}
	}
	cm, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, EtcdMembersConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("reading the cluster's etcd members (kube-system/%s): %w", EtcdMembersConfigMap, err)
	}
	names := make([]string, 0, len(cm.Data))
	for name := range cm.Data {
		names = append(names, name)
	}
	sort.Strings(names)
	var etcdURLs []string
	for _, name := range names {
		etcdURLs = append(etcdURLs, cm.Data[name])
	}
	if len(etcdURLs) == 0 {
		return nil, nil, fmt.Errorf("kube-system/%s lists no etcd member yet", EtcdMembersConfigMap)
	}
	return sealed, etcdURLs, nil
}

// ReadBootstrapData returns the sealed bootstrap data in the cluster, nil when there is none.
func ReadBootstrapData(ctx context.Context, client kubernetes.Interface) ([]byte, error) {
	secret, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, BootstrapDataSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the cluster's bootstrap data: %w", err)
	}
	return secret.Data[BootstrapDataKey], nil
}

// PublishBootstrapData stores the sealed bootstrap data.
func PublishBootstrapData(ctx context.Context, client kubernetes.Interface, sealed []byte) error {
	secret := corev1ac.Secret(BootstrapDataSecret, metav1.NamespaceSystem).
		WithLabels(managedBy()).
		WithType(corev1.SecretTypeOpaque).
		WithData(map[string][]byte{BootstrapDataKey: sealed})
	if _, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Apply(ctx, secret, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("storing the cluster's bootstrap data: %w", err)
	}
	return nil
}

// PublishEtcdMember records this server's etcd client URL under its member name; each server
// owns its own key (a field manager of its own), so servers never overwrite each other.
func PublishEtcdMember(ctx context.Context, client kubernetes.Interface, name, clientURL string) error {
	cm := corev1ac.ConfigMap(EtcdMembersConfigMap, metav1.NamespaceSystem).
		WithLabels(managedBy()).
		WithData(map[string]string{name: clientURL})
	if _, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: FieldManager + "-etcd-" + name, Force: true}); err != nil {
		return fmt.Errorf("publishing this server's etcd member: %w", err)
	}
	return nil
}
