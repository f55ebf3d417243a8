package join

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	tokenjws "k8s.io/cluster-bootstrap/token/jws"

	"github.com/k1s-io/k1s/internal/fileutil"
)

// ValidateServerURL checks --server.
func ValidateServerURL(server string) error {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("--server %q must be an https:// URL (like https://HOST:6443)", server)
	}
	return nil
}

// joinError is a join failure that retrying does not fix.
type joinError struct{ error }

// Discover reads the signed cluster-info from server and returns the cluster CA (PEM) once the
// server is authenticated: the ConfigMap carries a JWS signature made with the token's secret
// (so only a server that knows the token could have signed it), and its CA must have the
// token's CA hash. Only then does the token's secret leave this node. Unreachable servers are
// retried with backoff until ctx ends.
func Discover(ctx context.Context, log *logrus.Logger, server string, token Token, skipCA bool) (caPEM []byte, err error) {
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

// How long a join waits for the bootstrap signer to sign cluster-info for its token before it
// calls the token invalid. The signer signs a new token within moments, so once cluster-info
// carries any signature (the signer runs) a short wait suffices and a wrong token is reported
// quickly; before that (a server's own node at its first start) the controller-manager may
// still be starting. Variables so that tests need not wait as long.
var (
	signatureWait     = 20 * time.Second
	runningSignerWait = 5 * time.Second
)

// signerRunning reports whether cluster-info carries a signature for any token.
func signerRunning(cm map[string]string) bool {
	for k := range cm {
		if strings.HasPrefix(k, bootstrapapi.JWSSignatureKeyPrefix) {
			return true
		}
	}
	return false
}

func discoverOnce(ctx context.Context, server string, token Token) ([]byte, error) {
	insecure := &rest.Config{Host: server, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, Timeout: 10 * time.Second}
	var cm map[string]string
	start := time.Now()
	for {
		var err error
		if cm, err = getClusterInfo(ctx, insecure); err != nil {
			return nil, err
		}
		wait := signatureWait
		if signerRunning(cm) {
			wait = runningSignerWait
		}
		if _, ok := cm[bootstrapapi.JWSSignatureKeyPrefix+token.ID]; ok || time.Since(start) > wait {
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
		// Only the pinned CA is trusted from here on, not whatever else came with it.
		pinned, err := pinnedCA(cas, token.CAHash)
		if err != nil {
			return nil, joinError{err}
		}
		caData = pinned
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

// pinnedCA returns, PEM-encoded, the one certificate of cas whose key has the hash hash.
func pinnedCA(cas []*x509.Certificate, hash string) ([]byte, error) {
	for _, ca := range cas {
		if CAHash(ca) == hash {
			return certutil.EncodeCertificates(ca)
		}
	}
	return nil, fmt.Errorf("the server's CA (hash %s) does not match the join token's CA hash %s: the token is for another cluster, or something intercepts the connection", CAHash(cas[0]), hash)
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

// WriteBootstrapKubeconfig writes the kubeconfig the kubelet's TLS bootstrap authenticates
// with: the server, its CA (as Discover returned it) and the bootstrap token.
func WriteBootstrapKubeconfig(path, server string, caPEM []byte, token Token) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["default"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	kc.AuthInfos["default"] = &clientcmdapi.AuthInfo{Token: token.Bootstrap()}
	kc.Contexts["default"] = &clientcmdapi.Context{Cluster: "default", AuthInfo: "default"}
	kc.CurrentContext = "default"
	data, err := clientcmd.Write(*kc)
	if err != nil {
		return err
	}
	return fileutil.WriteAtomic(path, data, 0o600)
}
