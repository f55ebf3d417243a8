package pki

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// NodeSpec says whose node credentials to issue.
type NodeSpec struct {
	// Dir holds the node's certificates and kubeconfigs (<data-dir>/agent).
	Dir      string
	NodeName string
	// IPs and Names go into the kubelet's serving certificate.
	IPs   []net.IP
	Names []string
	// APIServerURL is what the node's kubeconfigs point at.
	APIServerURL string
}

// Node is where a node's credentials are on disk.
type Node struct {
	KubeletKubeconfig   string
	KubeProxyKubeconfig string
	KubeletServing      Pair
	// ClientCAFile verifies clients of the kubelet (the apiserver).
	ClientCAFile string
}

// EnsureNode issues, with the control plane's CAs, the credentials of the server's own node:
// the kubelet's client certificate (system:node:<name> in system:nodes, which the Node
// authorizer scopes to this node), its serving certificate, and kube-proxy's client
// certificate (system:kube-proxy, bound to system:node-proxier by default).
func (cp *ControlPlane) EnsureNode(spec NodeSpec) (*Node, error) {
	if err := os.MkdirAll(spec.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", spec.Dir, err)
	}
	kubelet, _, err := cp.ClientCA.Ensure(spec.Dir, "client-kubelet", CertSpec{
		CommonName: "system:node:" + spec.NodeName, Organization: []string{"system:nodes"}, Client: true})
	if err != nil {
		return nil, err
	}
	serving, _, err := cp.ServerCA.Ensure(spec.Dir, "serving-kubelet", CertSpec{
		CommonName: spec.NodeName, DNSNames: spec.Names, IPs: spec.IPs, Server: true})
	if err != nil {
		return nil, err
	}
	proxy, _, err := cp.ClientCA.Ensure(spec.Dir, "client-kube-proxy", CertSpec{
		CommonName: "system:kube-proxy", Client: true})
	if err != nil {
		return nil, err
	}
	node := &Node{
		KubeletKubeconfig:   filepath.Join(spec.Dir, "kubelet.kubeconfig"),
		KubeProxyKubeconfig: filepath.Join(spec.Dir, "kubeproxy.kubeconfig"),
		KubeletServing:      serving,
		ClientCAFile:        cp.ClientCA.CertFile,
	}
	if err := WriteKubeconfig(node.KubeletKubeconfig, spec.APIServerURL, cp.ServerCA.CertFile, kubelet, false, 0o600); err != nil {
		return nil, err
	}
	if err := WriteKubeconfig(node.KubeProxyKubeconfig, spec.APIServerURL, cp.ServerCA.CertFile, proxy, false, 0o600); err != nil {
		return nil, err
	}
	return node, nil
}
