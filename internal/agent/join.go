package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	tokenjws "k8s.io/cluster-bootstrap/token/jws"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/kubelet/certificate/bootstrap"

	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/network"
	"github.com/k1s-io/k1s/internal/pki"
)

// ValidateServerURL checks --server.
func ValidateServerURL(server string) error {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("--server %q must be an https:// URL (like https://HOST:6443)", server)
	}
	return nil
}

// newJoin returns the component that gives the node its identity: with a valid identity in the
// data directory it does nothing; otherwise it authenticates the server from the join token
// (kubeadm's discovery), and has the kubelet's TLS bootstrap obtain a node client certificate.
// It then fetches the client CA the kubelet verifies the apiserver with.
func (a *Agent) newJoin() component.Component {
	var joined atomic.Bool
	var waiting atomic.Value
	waiting.Store("the server")
	run := func(ctx context.Context) error {
		ctx = klog.NewContext(ctx, klog.Background().WithValues("component", "kubelet-bootstrap"))
		if err := a.join(ctx, &waiting); err != nil {
			return err
		}
		joined.Store(true)
		<-ctx.Done()
		return nil
	}
	ready := func(context.Context) error {
		if !joined.Load() {
			return fmt.Errorf("joining: waiting for %s", waiting.Load())
		}
		return nil
	}
	return component.NewFunc("join", run, ready)
}

func (a *Agent) join(ctx context.Context, waiting *atomic.Value) error {
	cfg := a.cfg
	if !identityValid(cfg.kubeletKubeconfig()) {
		if cfg.Token.ID == "" {
			return fmt.Errorf("this node has no identity in %s yet: give --token (or --token-file) to join", cfg.DataDir)
		}
		waiting.Store("the server's cluster-info")
		caData, err := discover(ctx, cfg.Log, cfg.ServerURL, cfg.Token, cfg.InsecureSkipCAVerification)
		if err != nil {
			return err
		}
		if err := writeBootstrapKubeconfig(cfg.bootstrapKubeconfig(), cfg.ServerURL, caData, cfg.Token.Bootstrap()); err != nil {
			return err
		}
		waiting.Store("the node's client certificate (CSR)")
		if err := bootstrap.LoadClientCert(ctx, cfg.kubeletKubeconfig(), cfg.bootstrapKubeconfig(), cfg.kubeletCertDir(), types.NodeName(cfg.NodeName)); err != nil {
			if strings.Contains(err.Error(), "reason: "+pki.ReasonNodeNameTaken) {
				return errors.New(pki.NodeNameTakenMessage(cfg.NodeName))
			}
			if apierrors.IsUnauthorized(err) {
				return fmt.Errorf("the server did not accept the join token (unknown, expired or deleted): create one with 'k1s token create' on the server")
			}
			return fmt.Errorf("obtaining the node's client certificate: %w", err)
		}
		cfg.Log.Infof("joined the cluster at %s as node %s", cfg.ServerURL, cfg.NodeName)
	}
	waiting.Store("the cluster's client CA and settings")
	client, err := nodeClient(cfg.kubeletKubeconfig())
	if err != nil {
		return err
	}
	if err := fetchClientCA(ctx, client, cfg.clientCAFile()); err != nil {
		return err
	}
	cm, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, network.ClusterConfigMap, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the cluster's settings (%s/%s): %w", metav1.NamespaceSystem, network.ClusterConfigMap, err)
	}
	cluster, err := network.ParseCluster(cm.Data)
	if err != nil {
		return err
	}
	if cluster.ClusterCIDR.Contains(cfg.NodeIP) || cluster.ServiceCIDR.Contains(cfg.NodeIP) {
		return fmt.Errorf("--node-ip %s is inside the cluster's pod or service range (%s, %s): choose this host's own address", cfg.NodeIP, cluster.ClusterCIDR, cluster.ServiceCIDR)
	}
	a.cluster = cluster
	return nil
}

func nodeClient(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", kubeconfig, err)
	}
	return kubernetes.NewForConfig(cfg)
}

// identityValid reports whether the kubeconfig at path holds a client certificate that is
// valid now (what a restarting node joins with instead of a token).
func identityValid(path string) bool {
	kc, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return false
	}
	for _, user := range kc.AuthInfos {
		data := user.ClientCertificateData
		if len(data) == 0 && user.ClientCertificate != "" {
			if data, err = os.ReadFile(user.ClientCertificate); err != nil {
				return false
			}
		}
		certs, err := certutil.ParseCertsPEM(data)
		if err != nil || len(certs) == 0 {
			return false
		}
		now := time.Now()
		return now.After(certs[0].NotBefore) && now.Before(certs[0].NotAfter)
	}
	return false
}

// joinError is a join failure that retrying does not fix.
type joinError struct{ error }

// discover reads the signed cluster-info from server and returns the cluster CA (PEM) once the
// server is authenticated: the ConfigMap carries a JWS signature made with the token's secret
// (so only a server that knows the token could have signed it), and its CA must have the
// token's CA hash. Only then does the token's secret leave this node. Unreachable servers are
// retried with backoff until ctx ends.
func discover(ctx context.Context, log *logrus.Logger, server string, token pki.JoinToken, skipCA bool) ([]byte, error) {
	if token.CAHash == "" {
		if !skipCA {
			return nil, errors.New("the join token has no CA hash (a bare <id>.<secret>): use the full K10… token from the server's node-token file, or --insecure-skip-ca-verification to trust whatever server answers")
		}
		log.Warnf("--insecure-skip-ca-verification: the server at %s is authenticated only by the token's signature on cluster-info, not by a pinned CA", server)
	}
	backoff := time.Second
	for attempt := 1; ; attempt++ {
		ca, err := discoverOnce(ctx, server, token)
		if err == nil {
			return ca, nil
		}
		var fatal joinError
		if errors.As(err, &fatal) {
			return nil, fatal.error
		}
		log.Infof("waiting for the server at %s: %v (attempt %d, next in %s)", server, err, attempt, backoff)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 15*time.Second)
	}
}

// signatureWait is how long a join waits for the bootstrap signer to sign cluster-info for a
// token (it does so within moments of a token's creation) before it calls the token invalid.
const signatureWait = 20 * time.Second

func discoverOnce(ctx context.Context, server string, token pki.JoinToken) ([]byte, error) {
	insecure := &rest.Config{Host: server, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, Timeout: 10 * time.Second}
	var cm map[string]string
	deadline := time.Now().Add(signatureWait)
	for {
		var err error
		if cm, err = getClusterInfo(ctx, insecure); err != nil {
			return nil, err
		}
		if _, ok := cm[bootstrapapi.JWSSignatureKeyPrefix+token.ID]; ok || time.Now().After(deadline) {
			break
		}
		// On a server's first start its own node waits here for the first signature.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	kubeconfig := cm[bootstrapapi.KubeConfigKey]
	signature, ok := cm[bootstrapapi.JWSSignatureKeyPrefix+token.ID]
	if !ok {
		return nil, joinError{fmt.Errorf("the join token is not valid for this cluster: token id %q is unknown, expired or deleted; create one with 'k1s token create' on the server", token.ID)}
	}
	if !tokenjws.DetachedTokenIsValid(signature, kubeconfig, token.ID, token.Secret) {
		return nil, joinError{fmt.Errorf("the join token is not valid for this cluster: its secret does not match token id %q (copy the token again from the server)", token.ID)}
	}
	parsed, err := clientcmd.Load([]byte(kubeconfig))
	if err != nil {
		return nil, joinError{fmt.Errorf("the server's cluster-info holds a malformed kubeconfig: %w", err)}
	}
	var caData []byte
	for _, c := range parsed.Clusters {
		caData = c.CertificateAuthorityData
	}
	cas, err := certutil.ParseCertsPEM(caData)
	if err != nil {
		return nil, joinError{fmt.Errorf("the server's cluster-info holds no CA certificate: %w", err)}
	}
	if token.CAHash != "" {
		found := false
		for _, ca := range cas {
			found = found || pki.CAHash(ca) == token.CAHash
		}
		if !found {
			return nil, joinError{fmt.Errorf("the server's CA (hash %s) does not match the join token's CA hash %s: the token is for another cluster, or something intercepts the connection", pki.CAHash(cas[0]), token.CAHash)}
		}
	}
	// Again over TLS verified with that CA: the server must hold the CA's certificate, and say
	// the same thing.
	secure := &rest.Config{Host: server, TLSClientConfig: rest.TLSClientConfig{CAData: caData}, Timeout: 10 * time.Second}
	again, err := getClusterInfo(ctx, secure)
	if err != nil {
		var invalid x509.CertificateInvalidError
		if errors.As(err, &invalid) && invalid.Reason == x509.Expired {
			return nil, joinError{fmt.Errorf("the server's certificate is not valid at this host's time (%s): %v; set the clock (e.g. enable NTP) and retry", time.Now().UTC().Format(time.RFC3339), invalid)}
		}
		var unknown x509.UnknownAuthorityError
		var hostname x509.HostnameError
		if errors.As(err, &unknown) || errors.As(err, &hostname) {
			return nil, joinError{fmt.Errorf("the server at %s does not present a certificate of the cluster CA for that address: %w (add it to the server's --tls-san)", server, err)}
		}
		return nil, err
	}
	if again[bootstrapapi.KubeConfigKey] != kubeconfig {
		return nil, errors.New("cluster-info changed between the two reads; retrying")
	}
	return caData, nil
}

func getClusterInfo(ctx context.Context, cfg *rest.Config) (map[string]string, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cm, err := client.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
	switch {
	case apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err):
		return nil, joinError{fmt.Errorf("the server at %s does not publish cluster-info to joining nodes (%v): is it a k1s server?", cfg.Host, err)}
	case err != nil:
		return nil, err
	}
	return cm.Data, nil
}

func writeBootstrapKubeconfig(path, server string, caData []byte, token string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["default"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caData}
	kc.AuthInfos["default"] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts["default"] = &clientcmdapi.Context{Cluster: "default", AuthInfo: "default"}
	kc.CurrentContext = "default"
	data, err := clientcmd.Write(*kc)
	if err != nil {
		return err
	}
	return pki.WriteFileAtomic(path, data, 0o600)
}

// fetchClientCA writes the CA that signs the apiserver's client certificate, which the kubelet
// checks, as the apiserver publishes it.
func fetchClientCA(ctx context.Context, client kubernetes.Interface, path string) error {
	for {
		cm, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, "extension-apiserver-authentication", metav1.GetOptions{})
		if err == nil {
			data := []byte(cm.Data["client-ca-file"])
			if _, err := certutil.ParseCertsPEM(data); err != nil {
				return fmt.Errorf("the apiserver's client CA is unreadable: %w", err)
			}
			if old, _ := os.ReadFile(path); bytes.Equal(old, data) {
				return os.Chmod(path, pki.CertMode)
			}
			return pki.WriteFileAtomic(path, data, pki.CertMode)
		}
		// Right after the first start the RBAC that lets nodes read it may still be on its way.
		select {
		case <-ctx.Done():
			return fmt.Errorf("reading the cluster's client CA: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
