package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/kubelet/certificate/bootstrap"

	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/fileutil"
	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/kubeclient"
	"github.com/k1s-io/k1s/internal/pki"
)

// newJoin returns the component that gives the node its identity: with a valid identity in the
// data directory it does nothing; otherwise it authenticates the server from the join token
// (kubeadm's discovery), and has the kubelet's TLS bootstrap obtain a node client certificate.
// It then fetches the client CA the kubelet verifies the apiserver with.
func (a *Agent) newJoin() component.Component {
	return component.Task("join", "joining", func(ctx context.Context, progress component.Progress) error {
		progress("the server")
		ctx = klog.NewContext(ctx, klog.Background().WithValues("component", "kubelet-bootstrap"))
		return a.join(ctx, progress)
	})
}

func (a *Agent) join(ctx context.Context, progress component.Progress) error {
	cfg := a.cfg
	if !identityValid(cfg.files.KubeletKubeconfig()) {
		if cfg.Token.ID == "" {
			return fmt.Errorf("this node has no identity in %s yet: give --token (or --token-file) to join", cfg.DataDir)
		}
		progress("the server's cluster-info")
		caData, err := join.Discover(ctx, cfg.Log, cfg.ServerURL, cfg.Token, cfg.InsecureSkipCAVerification)
		if err != nil {
			return err
		}
		if err := join.WriteBootstrapKubeconfig(cfg.files.BootstrapKubeconfig(), a.apiURL(), caData, cfg.Token); err != nil {
			return err
		}
		if err := a.useIdentityKey(); err != nil {
			return err
		}
		progress("the node's client certificate (CSR)")
		if err := bootstrap.LoadClientCert(ctx, cfg.files.KubeletKubeconfig(), cfg.files.BootstrapKubeconfig(), cfg.files.KubeletCertDir(), types.NodeName(cfg.NodeName)); err != nil {
			if strings.Contains(err.Error(), "reason: "+join.ReasonNodeNameTaken) {
				return errors.New(join.NodeNameTakenMessage(cfg.NodeName))
			}
			if apierrors.IsUnauthorized(err) {
				return fmt.Errorf("the server did not accept the join token (unknown, expired or deleted): create one with 'k1s token create' on the server")
			}
			return fmt.Errorf("obtaining the node's client certificate: %w", err)
		}
		cfg.Log.Infof("joined the cluster at %s as node %s", cfg.ServerURL, cfg.NodeName)
	}
	if err := pointKubeconfigAt(cfg.files.KubeletKubeconfig(), a.apiURL()); err != nil {
		return err
	}
	// The token is of no more use to this node: keep it nowhere on disk.
	if err := os.Remove(cfg.files.BootstrapKubeconfig()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the bootstrap kubeconfig: %w", err)
	}
	if err := dropServingCertOfOtherCA(cfg.files.KubeletKubeconfig(), cfg.files.KubeletCertDir(), cfg.Log); err != nil {
		return err
	}
	progress("the cluster's client CA and settings")
	client, err := kubeclient.New(cfg.files.KubeletKubeconfig())
	if err != nil {
		return err
	}
	if err := fetchClientCA(ctx, client, cfg.files.ClientCA()); err != nil {
		return err
	}
	cluster, err := join.FetchNodeConfig(ctx, client)
	if err != nil {
		return err
	}
	if cluster.ClusterCIDR.Contains(cfg.NodeIP) || cluster.ServiceCIDR.Contains(cfg.NodeIP) {
		return fmt.Errorf("--node-ip %s is inside the cluster's pod or service range (%s, %s): choose this host's own address", cfg.NodeIP, cluster.ClusterCIDR, cluster.ServiceCIDR)
	}
	a.cluster = cluster
	return nil
}

// useIdentityKey has the kubelet's TLS bootstrap ask its certificate for the node's identity
// key, to which the server binds the node's name at the first join: the bootstrap takes the
// key it finds in its temporary key file (kubelet-client.key.tmp), or the key of a current
// certificate, which a node without a valid identity has no use for.
func (a *Agent) useIdentityKey() error {
	files := a.cfg.files
	if err := pki.EnsureKey(files.IdentityKey(), "the node loses its name: free it on the server to join under it again"); err != nil {
		return fmt.Errorf("the node's identity key: %w", err)
	}
	key, err := os.ReadFile(files.IdentityKey())
	if err != nil {
		return err
	}
	certDir := files.KubeletCertDir()
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(certDir, "kubelet-client-current.pem")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return fileutil.WriteAtomic(filepath.Join(certDir, "kubelet-client.key.tmp"), key, 0o600)
}

// dropServingCertOfOtherCA removes the kubelet's serving certificate when the cluster CA in
// kubeconfig signed it (earlier versions did; now a CA that only the API server trusts does),
// so that the kubelet asks for a new one.
func dropServingCertOfOtherCA(kubeconfig, certDir string, log logrus.FieldLogger) error {
	current := filepath.Join(certDir, "kubelet-server-current.pem")
	certs, err := certutil.CertsFromFile(current)
	if err != nil {
		return nil // none yet, or unreadable: the kubelet asks for one
	}
	kc, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		return fmt.Errorf("reading %s: %w", kubeconfig, err)
	}
	for _, cluster := range kc.Clusters {
		cas, err := certutil.ParseCertsPEM(cluster.CertificateAuthorityData)
		if err != nil {
			continue
		}
		for _, ca := range cas {
			if certs[0].CheckSignatureFrom(ca) != nil {
				continue
			}
			log.Infof("the kubelet's serving certificate was issued by the cluster CA: asking for one of the kubelet-serving CA")
			matches, _ := filepath.Glob(filepath.Join(certDir, "kubelet-server-*.pem"))
			for _, m := range matches {
				if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			return nil
		}
	}
	return nil
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
			return fileutil.WriteAtomic(path, data, pki.CertMode)
		}
		// Right after the first start the RBAC that lets nodes read it may still be on its way.
		select {
		case <-ctx.Done():
			return fmt.Errorf("reading the cluster's client CA: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
