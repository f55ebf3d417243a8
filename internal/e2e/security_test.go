//go:build e2e

package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecureDefaults checks what a k1s left alone enforces: Pod Security baseline outside
// kube-system, an audit log without request bodies, and TLS with ECDHE-AEAD suites only.
func TestSecureDefaults(t *testing.T) {
	s := newNode(t, nil)
	s.start()
	s.waitNodeReady(t)

	t.Run("pod security baseline by default", func(t *testing.T) {
		for name, spec := range map[string]string{
			"privileged": `containers: [{name: c, image: k1s.local/busybox:test, imagePullPolicy: Never, command: [sleep, "60"], securityContext: {privileged: true}}]`,
			"host-path": `containers: [{name: c, image: k1s.local/busybox:test, imagePullPolicy: Never, command: [sleep, "60"], volumeMounts: [{name: root, mountPath: /host}]}]
  volumes: [{name: root, hostPath: {path: /}}]`,
			"host-network": `hostNetwork: true
  containers: [{name: c, image: k1s.local/busybox:test, imagePullPolicy: Never, command: [sleep, "60"]}]`,
		} {
			manifest := fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: %s}\nspec:\n  %s\n", name, spec)
			out, err := s.kubectl("apply", "-f", writeTemp(t, name+".yaml", manifest))
			if err == nil || !strings.Contains(out, `violates PodSecurity "baseline:latest"`) {
				t.Errorf("%s pod in the default namespace: %v\n%s", name, err, out)
			}
			s.mustKubectl("create", "namespace", "trusted-"+name)
			s.mustKubectl("label", "namespace", "trusted-"+name, "pod-security.kubernetes.io/enforce=privileged")
			if out, err := s.kubectl("apply", "-n", "trusted-"+name, "-f", writeTemp(t, name+".yaml", manifest)); err != nil {
				t.Errorf("%s pod in a namespace labelled privileged: %v\n%s", name, err, out)
			}
		}
	})

	t.Run("audit log records metadata, never a Secret's data", func(t *testing.T) {
		s.mustKubectl("create", "secret", "generic", "audited", "--from-literal=password=audit-s3cret-value")
		log := filepath.Join(s.dataDir, "server", "logs", "audit.log")
		eventually(t, 30*time.Second, "the Secret's create in the audit log", func() error {
			data, err := os.ReadFile(log)
			if err != nil {
				return err
			}
			for _, line := range strings.Split(string(data), "\n") {
				if strings.Contains(line, `"verb":"create"`) && strings.Contains(line, `"name":"audited"`) {
					return nil
				}
			}
			return fmt.Errorf("no create of Secret audited in %s", log)
		})
		data, _ := os.ReadFile(log)
		if strings.Contains(string(data), "audit-s3cret-value") || strings.Contains(string(data), "YXVkaXQtczNjcmV0LXZhbHVl") {
			t.Error("the audit log holds the Secret's data")
		}
	})

	t.Run("TLS only with ECDHE and AEAD ciphers", func(t *testing.T) {
		nodeIP := s.mustKubectl("get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)
		for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", s.port), net.JoinHostPort(nodeIP, "10250")} {
			// The control first (the kubelet serves once its CSR-issued certificate is in):
			// the suite k1s's ECDSA certificates are made for is accepted.
			eventually(t, time.Minute, addr+" accepting ECDHE-ECDSA-AES128-GCM", func() error {
				return handshake(addr, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
			})
			for _, suite := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_128_CBC_SHA} {
				if err := handshake(addr, suite); err == nil {
					t.Errorf("%s accepted %s", addr, tls.CipherSuiteName(suite))
				}
			}
		}
	})
}

// handshake tries a TLS 1.2 handshake offering only suite (the server's certificate is not
// what is tested here).
func handshake(addr string, suite uint16) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{suite}})
	if err != nil {
		return err
	}
	return conn.Close()
}
