package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

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
		if err := join.WriteBootstrapKubeconfig(cfg.files.BootstrapKubeconfig(), cfg.ServerURL, caData, cfg.Token); err != nil {
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
