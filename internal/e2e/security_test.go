//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"

	"github.com/k1s-io/k1s/internal/encryption"
)

// TestSecureDefaults checks what a k1s left alone enforces: Pod Security baseline outside
// kube-system, an audit log without request bodies, and TLS with ECDHE-AEAD suites only.
func TestSecureDefaults(t *testing.T) {
	s := prepareCluster(t, clusterSpec{Servers: 1}).server()
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

	t.Run("a node cannot get a certificate the API's clients trust", func(t *testing.T) {
		node := s.mustKubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
		nodeIP := s.mustKubectl("get", "node", node, "-o", `jsonpath={.status.addresses[?(@.type=="InternalIP")].address}`)
		serviceIP := s.mustKubectl("get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}")
		nodeKubeconfig := filepath.Join(s.dataDir, "agent", "kubelet.kubeconfig")
		asNode := func(args ...string) (string, error) {
			return runK1s(append([]string{"kubectl", "--kubeconfig", nodeKubeconfig}, args...)...)
		}
		// The node names the API server's Service IP and name among its own addresses (a
		// PATCH of nodes/status, which its credentials allow, unlike kubectl's GET first) ...
		config, err := clientcmd.BuildConfigFromFlags("", nodeKubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		nodeClient, err := kubernetes.NewForConfig(config)
		if err != nil {
			t.Fatal(err)
		}
		// (Addresses merge by type: these types are new, so the node's own stay.)
		patch := fmt.Sprintf(`{"status":{"addresses":[{"type":"ExternalIP","address":%q},{"type":"InternalDNS","address":"kubernetes.default.svc"}]}}`, serviceIP)
		if _, err := nodeClient.CoreV1().Nodes().PatchStatus(t.Context(), node, []byte(patch)); err != nil {
			t.Fatalf("the node patching its addresses: %v", err)
		}
		// ... and asks for a serving certificate for them.
		request := servingCSRPEM(t, node, []string{"kubernetes.default.svc", node}, []string{serviceIP, nodeIP})
		manifest := fmt.Sprintf("apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {name: pose-as-apiserver}\nspec:\n  request: %s\n  signerName: kubernetes.io/kubelet-serving\n  usages: [digital signature, server auth]\n",
			base64.StdEncoding.EncodeToString(request))
		if out, err := asNode("create", "-f", writeTemp(t, "csr.yaml", manifest)); err != nil {
			t.Fatalf("the node filing its CSR: %v\n%s", err, out)
		}
		eventually(t, time.Minute, "the CSR denied", func() error {
			if got := s.mustKubectl("get", "csr", "pose-as-apiserver", "-o", "jsonpath={.status.conditions[*].type}"); got != "Denied" {
				return fmt.Errorf("conditions %q", got)
			}
			return nil
		})
		// The certificate the kubelet does serve verifies against the kubelet-serving CA (the
		// control), never against the CA the admin kubeconfig trusts for the API server.
		kubeletCA, err := certutil.CertsFromFile(filepath.Join(s.dataDir, "server", "tls", "kubelet-serving-ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		kc, err := clientcmd.LoadFromFile(s.kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		apiRoots := x509.NewCertPool()
		for _, cluster := range kc.Clusters {
			apiRoots.AppendCertsFromPEM(cluster.CertificateAuthorityData)
		}
		var served *x509.Certificate
		eventually(t, time.Minute, "the kubelet's serving certificate", func() error {
			conn, err := tls.Dial("tcp", net.JoinHostPort(nodeIP, "10250"), &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				return err
			}
			defer conn.Close()
			served = conn.ConnectionState().PeerCertificates[0]
			return served.CheckSignatureFrom(kubeletCA[0])
		})
		if _, err := served.Verify(x509.VerifyOptions{Roots: apiRoots, DNSName: nodeIP}); err == nil {
			t.Error("the kubelet's serving certificate verifies against the admin kubeconfig's CA")
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

// TestSecureDefaultsCredentials checks the control plane's credentials and listeners: no etcd
// peer listener, certificates rotated under a running server, the CIS report of the default
// profile, and an admin kubeconfig that deleting its RBAC binding revokes.
func TestSecureDefaultsCredentials(t *testing.T) {
	// A snapshot a minute: the last subtest waits for one.
	s := newServer(t, "--kube-apiserver-arg", "enable-admission-plugins+=AlwaysPullImages", "--etcd-snapshot-schedule-cron", "* * * * *")
	s.start()
	s.waitReady(2 * time.Minute)

	t.Run("enable-admission-plugins+= keeps NodeRestriction", func(t *testing.T) {
		if args := recordedArgs(t, s, "kube-apiserver"); !strings.Contains(args, `"--enable-admission-plugins=NodeRestriction,AlwaysPullImages"`) {
			t.Errorf("the apiserver's admission plugins: %s", args)
		}
		// The appended plugin is really on: it rewrites the pull policy.
		pod := `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pulled"}, "spec": {"containers": [{"name": "c", "image": "k1s.local/busybox:test", "imagePullPolicy": "Never"}]}}`
		eventually(t, time.Minute, "a pod created", func() error {
			out, err := s.kubectl("create", "-f", writeTemp(t, "pulled.json", pod))
			if err != nil {
				return fmt.Errorf("%v %s", err, out) // the default ServiceAccount may not exist yet
			}
			return nil
		})
		if policy := s.mustKubectl("get", "pod", "pulled", "-o", "jsonpath={.spec.containers[0].imagePullPolicy}"); policy != "Always" {
			t.Errorf("AlwaysPullImages is not on: imagePullPolicy %q", policy)
		}
	})

	t.Run("no etcd peer listener", func(t *testing.T) {
		if conn, err := net.DialTimeout("tcp", "127.0.0.1:2380", 2*time.Second); err == nil {
			conn.Close()
			t.Error("something answers on 127.0.0.1:2380")
		}
		if args := recordedArgs(t, s, "etcd"); !strings.Contains(args, `"--listen-peer-urls="`) {
			t.Errorf("etcd's recorded arguments give a peer listener: %s", args)
		}
	})

	t.Run("certificate rotate while running", func(t *testing.T) {
		addr := fmt.Sprintf("127.0.0.1:%d", s.port)
		before := servingSerial(t, addr)
		if out, err := runK1s("certificate", "rotate", "--data-dir", s.dataDir, "--service", "api-server"); err != nil {
			t.Fatalf("certificate rotate: %v\n%s", err, out)
		}
		// The apiserver reloads its serving certificate from the file, without a restart.
		eventually(t, 2*time.Minute, "a new serving certificate", func() error {
			if after := servingSerial(t, addr); after == before {
				return fmt.Errorf("still serial %s", before)
			}
			return nil
		})
		s.mustKubectl("get", "namespaces")
		if out, err := runK1s("certificate", "rotate", "--data-dir", s.dataDir, "--service", "kubelet"); err == nil || !strings.Contains(out, "the kubelet renews its own") {
			t.Errorf("rotate --service kubelet: %v %s", err, out)
		}
	})

	t.Run("CIS report of the default profile", func(t *testing.T) {
		out, err := runK1s("check-config", "--cis", "--data-dir", s.dataDir, "--write-kubeconfig", s.kubeconfig)
		failed := regexp.MustCompile(`(?m)^\[FAIL\] (\S+)`).FindAllStringSubmatch(out, -1)
		var ids []string
		for _, f := range failed {
			ids = append(ids, f[1])
		}
		// The README explains each failure of the default profile.
		if fmt.Sprint(ids) != "[1.2.30]" || err == nil {
			t.Errorf("failed checks %v (exit %v), want [1.2.30]:\n%s", ids, err, out)
		}
		if !strings.Contains(out, "[PASS] 2.4") || !strings.Contains(out, "[PASS] 1.2.15") {
			t.Errorf("report lacks the etcd peer and profiling checks:\n%s", out)
		}
		// A running node records everything the checks read.
		if strings.Contains(out, "[UNVERIFIED]") {
			t.Errorf("checks the report cannot verify:\n%s", out)
		}
	})

	t.Run("secrets encryption enabled on a running cluster; its configuration lost", func(t *testing.T) {
		s.mustKubectl("create", "secret", "generic", "before-encryption", "--from-literal=password=clear-s3cret-value")
		key := "/registry/secrets/default/before-encryption"
		if raw := etcdGet(t, s, key); bytes.HasPrefix(raw, []byte("k8s:enc:")) {
			t.Fatalf("the Secret is encrypted before encryption is on: %q", raw[:min(len(raw), 60)])
		}
		restart := func() {
			t.Helper()
			if err, _ := s.stop(); err != nil {
				t.Fatalf("stopping the server: %v", err)
			}
			s.start()
		}
		// Enabling it rewrites the Secrets stored in the clear, with the provider asked for.
		s.args = append(s.args, "--secrets-encryption", "--secrets-encryption-provider", "aescbc")
		restart()
		s.waitReady(2 * time.Minute)
		eventually(t, time.Minute, "the Secret of before encryption encrypted in etcd", func() error {
			if raw := etcdGet(t, s, key); !bytes.HasPrefix(raw, []byte("k8s:enc:aescbc:v1:")) || bytes.Contains(raw, []byte("clear-s3cret-value")) {
				return fmt.Errorf("stored as %q", raw[:min(len(raw), 60)])
			}
			return nil
		})
		if out, err := runK1s("secrets-encrypt", "status", "--data-dir", s.dataDir); err != nil || !strings.Contains(out, "Provider: aescbc") {
			t.Errorf("status: %v\n%s", err, out)
		}

		// Without its configuration the server stops with the fix, and makes no new key.
		config := filepath.Join(s.dataDir, "server", "cred", "encryption-config.json")
		if err := os.Rename(config, config+".saved"); err != nil {
			t.Fatal(err)
		}
		restart()
		select {
		case <-s.exited:
		case <-time.After(2 * time.Minute):
			t.Fatalf("the server runs without its encryption configuration:\n%s", strings.Join(s.lines(), "\n"))
		}
		output := strings.Join(s.lines(), "\n")
		if want := "Secrets in etcd are encrypted but " + config + " is missing: restore it from a backup"; s.err == nil || !strings.Contains(output, want) {
			t.Errorf("the server exited (%v) without %q:\n%s", s.err, want, output)
		} else {
			t.Logf("the server's last line: %s", s.lines()[len(s.lines())-1])
		}
		if _, err := os.Stat(config); err == nil {
			t.Error("the server wrote a new encryption configuration")
		}
		if err := os.Rename(config+".saved", config); err != nil {
			t.Fatal(err)
		}
		s.start()
		s.waitReady(2 * time.Minute)
		if out := s.mustKubectl("get", "secret", "before-encryption", "-o", "jsonpath={.data.password}"); out != "Y2xlYXItczNjcmV0LXZhbHVl" {
			t.Errorf("the Secret reads back as %q", out)
		}
	})

	t.Run("admin kubeconfig revoked by its RBAC binding, break-glass stays", func(t *testing.T) {
		breakGlass := filepath.Join(s.dataDir, "server", "cred", "break-glass.kubeconfig")
		if info, err := os.Stat(breakGlass); err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("break-glass kubeconfig: %v %v", info, err)
		}
		if who := s.mustKubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}"); strings.Contains(who, "system:masters") {
			t.Errorf("the admin kubeconfig is in system:masters: %s", who)
		}
		s.mustKubectl("delete", "clusterrolebinding", "k1s:cluster-admins")
		eventually(t, 30*time.Second, "the admin kubeconfig refused", func() error {
			if out, err := s.kubectl("get", "secrets", "-A"); err == nil || !strings.Contains(out, "forbidden") {
				return fmt.Errorf("still allowed: %v %s", err, out)
			}
			return nil
		})
		if out, err := runK1s("kubectl", "--kubeconfig", breakGlass, "get", "secrets", "-A"); err != nil {
			t.Errorf("break-glass kubeconfig: %v\n%s", err, out)
		}
		// k1s's own work goes on: it does not use the admin kubeconfig.
		if out, err := runK1s("token", "create", "--data-dir", s.dataDir); err != nil {
			t.Errorf("token create after the revocation: %v\n%s", err, out)
		}
	})

	t.Run("admin rotation revokes every earlier admin kubeconfig", func(t *testing.T) {
		old := filepath.Join(t.TempDir(), "old-admin.kubeconfig")
		copyFile(t, s.kubeconfig, old)
		oldUser, _ := runK1s("kubectl", "--kubeconfig", old, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
		if out, err := runK1s("certificate", "rotate", "--data-dir", s.dataDir, "--service", "admin"); err != nil {
			t.Fatalf("certificate rotate --service admin: %v\n%s", err, out)
		}
		// The rotation binds the new identity (the binding deleted above is back).
		eventually(t, 30*time.Second, "the new admin kubeconfig allowed", func() error {
			if out, err := s.kubectl("get", "secrets", "-A"); err != nil {
				return fmt.Errorf("%v %s", err, out)
			}
			return nil
		})
		newUser := s.mustKubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
		if newUser == oldUser || !strings.HasPrefix(newUser, "k1s:admin:") {
			t.Errorf("the admin identity went from %q to %q, want a new k1s:admin:… one", oldUser, newUser)
		}
		if out := s.mustKubectl("get", "clusterrolebinding", "k1s:cluster-admins", "-o", "jsonpath={.subjects[*].name}"); out != newUser {
			t.Errorf("the admin binding names %q, want %q alone", out, newUser)
		}
		if out, err := runK1s("kubectl", "--kubeconfig", old, "get", "secrets", "-A"); err == nil || !strings.Contains(out, "forbidden") {
			t.Errorf("the admin kubeconfig of before the rotation still works: %v\n%s", err, out)
		}
	})

	t.Run("service-account key rotation", func(t *testing.T) {
		token := func() string {
			t.Helper()
			var tok string
			eventually(t, time.Minute, "a service-account token", func() error {
				out, err := s.kubectl("create", "token", "default", "--duration", "1h")
				tok = strings.TrimSpace(out)
				if err != nil {
					return fmt.Errorf("%v %s", err, out) // the default ServiceAccount may not exist yet
				}
				return nil
			})
			return tok
		}
		authenticates := func(tok string) error {
			out, err := runK1s("kubectl", "--kubeconfig", os.DevNull, "--server", fmt.Sprintf("https://127.0.0.1:%d", s.port),
				"--certificate-authority", filepath.Join(s.dataDir, "server", "tls", "server-ca.crt"), "--token", tok,
				"auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
			if err != nil || out != "system:serviceaccount:default:default" {
				return fmt.Errorf("%v %s", err, out)
			}
			return nil
		}
		before := token()
		out, err := runK1s("certificate", "rotate", "--data-dir", s.dataDir, "--service", "service-account")
		if err != nil || !strings.Contains(out, "next start") {
			t.Fatalf("certificate rotate --service service-account: %v\n%s", err, out)
		}
		if err, _ := s.stop(); err != nil {
			t.Fatalf("stopping the server: %v", err)
		}
		s.start()
		s.waitReady(2 * time.Minute)
		after := token()
		if kid(t, before) == kid(t, after) {
			t.Errorf("tokens after the rotation are signed with the old key (kid %s)", kid(t, after))
		}
		for name, tok := range map[string]string{"signed before the rotation": before, "signed after": after} {
			eventually(t, 30*time.Second, "the token "+name+" authenticates", func() error { return authenticates(tok) })
		}
	})

	t.Run("etcd snapshots: scheduled, saved, restored, pruned", func(t *testing.T) {
		checkEtcdSnapshots(t, s)
	})
}

// checkEtcdSnapshots runs on a server started with --etcd-snapshot-schedule-cron "* * * * *"
// (with encrypted Secrets): a scheduled snapshot appears within the minute and the default
// retention holds; a snapshot saved by hand, restored on the stopped server, brings back what
// was there and drops what came after; the errors a user can cause are one line each.
func checkEtcdSnapshots(t *testing.T, s *process) {
	config := ""
	for i, a := range s.args {
		if a == "--config" && i+1 < len(s.args) {
			config = s.args[i+1]
		}
	}
	snap := func(sub string, args ...string) (string, error) {
		return runK1s(append([]string{"etcd-snapshot", sub, "--config", config, "--data-dir", s.dataDir}, args...)...)
	}
	names := func(prefix string) []string {
		t.Helper()
		out, err := snap("ls")
		if err != nil {
			t.Fatalf("etcd-snapshot ls: %v\n%s", err, out)
		}
		var found []string
		for _, line := range nonEmptyLines(out)[1:] {
			if f := strings.Fields(line); len(f) == 4 && strings.HasPrefix(f[0], prefix) {
				found = append(found, f[0])
			}
		}
		return found
	}
	restore := func(file string) (string, error) {
		return runK1s(append(append([]string(nil), s.args...), "--cluster-reset-restore-path", file)...)
	}

	// Scheduled: a new one within a minute, never more than the default retention (5).
	before := names("etcd-snapshot-")
	eventually(t, 70*time.Second, "a new scheduled snapshot", func() error {
		if now := names("etcd-snapshot-"); len(now) == 0 || (len(before) > 0 && now[len(now)-1] == before[len(before)-1]) {
			return fmt.Errorf("scheduled snapshots %v", now)
		}
		return nil
	})
	if n := len(names("etcd-snapshot-")); n > 5 {
		t.Errorf("%d scheduled snapshots kept, retention is 5", n)
	}
	if !strings.Contains(strings.Join(s.lines(), "\n"), "etcd snapshot etcd-snapshot-") {
		t.Error("the server logged no scheduled snapshot")
	}

	s.mustKubectl("create", "secret", "generic", "before-snapshot", "--from-literal=k=snapshotted")
	out, err := snap("save", "--name", "e2e", "--etcd-snapshot-compress")
	if err != nil {
		t.Fatalf("etcd-snapshot save: %v\n%s", err, out)
	}
	file := lastLine(nonEmptyLines(out))
	if saved := names("e2e-"); len(saved) != 1 || filepath.Base(file) != saved[0] {
		t.Fatalf("saved %q; ls shows %v", file, saved)
	}
	s.mustKubectl("create", "configmap", "after-snapshot", "--from-literal=k=v")

	// A full disk: one line, and no partial file.
	full := t.TempDir()
	hostRun(t, "mount", "-t", "tmpfs", "-o", "size=64k", "k1s-e2e-full", full)
	t.Cleanup(func() { _, _ = hostCmd("umount", full) })
	if out, err := snap("save", "--etcd-snapshot-dir", full); err == nil || !strings.Contains(out, "no space left in "+full) {
		t.Errorf("save to a full disk: %v\n%s", err, out)
	} else {
		t.Logf("save to a full disk: %s", lastLine(nonEmptyLines(out)))
	}
	if left, _ := os.ReadDir(full); len(left) != 0 {
		t.Errorf("a failed snapshot left %v", left)
	}
	if out, err := snap("delete", "no-such-snapshot"); err == nil || !strings.Contains(out, `"no-such-snapshot" is not a snapshot`) {
		t.Errorf("delete of a name that is not a snapshot: %v\n%s", err, out)
	}
	if out, err := restore(file); err == nil || !strings.Contains(out, "another k1s") {
		t.Errorf("restore while the server runs: %v\n%s", err, out)
	}

	if err, _ := s.stop(); err != nil {
		t.Fatalf("stopping the server: %v", err)
	}
	begin := time.Now()
	if out, err := snap("save"); err == nil || !strings.Contains(out, "no k1s server is running on "+s.dataDir) || time.Since(begin) > 10*time.Second {
		t.Errorf("save on a stopped server (%s): %v\n%s", time.Since(begin), err, out)
	} else {
		t.Logf("save on a stopped server, in %s: %s", time.Since(begin).Round(time.Millisecond), lastLine(nonEmptyLines(out)))
	}
	notSnapshot := writeTemp(t, "notes.txt", "not a snapshot")
	if out, err := restore(notSnapshot); err == nil || !strings.Contains(out, "is not an etcd snapshot") {
		t.Errorf("restore of a file that is not a snapshot: %v\n%s", err, out)
	}
	damaged := filepath.Join(t.TempDir(), filepath.Base(file))
	copyFile(t, file, damaged)
	copyFile(t, file+".json", damaged+".json")
	data, err := os.ReadFile(damaged)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(damaged, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := restore(damaged); err == nil || !strings.Contains(out, "does not match its checksum") {
		t.Errorf("restore of a damaged snapshot: %v\n%s", err, out)
	} else {
		t.Logf("restore of a damaged snapshot: %s", lastLine(nonEmptyLines(out)))
	}

	out, err = restore(file)
	if err != nil || !strings.Contains(out, "start k1s again without --cluster-reset-restore-path") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	t.Logf("restore: %s", tail(nonEmptyLines(out), 2))
	if aside, _ := filepath.Glob(filepath.Join(s.dataDir, "server", "db", "etcd-old-*")); len(aside) != 1 {
		t.Errorf("the previous database was not moved aside: %v", aside)
	}
	// While the server is stopped, no scheduled snapshot comes in between.
	if out, err := snap("prune", "--snapshot-retention", "1"); err != nil {
		t.Fatalf("prune: %v\n%s", err, out)
	}
	if left := names(""); len(left) != 1 {
		t.Errorf("after prune --snapshot-retention 1: %v", left)
	}
	s.start()
	s.waitReady(2 * time.Minute)
	if out, err := s.kubectl("get", "configmap", "after-snapshot"); err == nil || !strings.Contains(out, "NotFound") {
		t.Errorf("the ConfigMap created after the snapshot is there after the restore: %v %s", err, out)
	}
	for name, want := range map[string]string{"before-snapshot": "c25hcHNob3R0ZWQ=", "before-encryption": "Y2xlYXItczNjcmV0LXZhbHVl"} {
		if out, err := s.kubectl("get", "secret", name, "-o", "jsonpath={.data.*}"); err != nil || out != want {
			t.Errorf("Secret %s after the restore: %v %q", name, err, out)
		}
	}
}

// kid is the key ID in a JWT's header.
func kid(t *testing.T, jwt string) string {
	t.Helper()
	header, _, _ := strings.Cut(jwt, ".")
	data, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		t.Fatalf("token header: %v", err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(data, &h); err != nil || h.Kid == "" {
		t.Fatalf("token header %s: %v", data, err)
	}
	return h.Kid
}

// TestHardened runs a node with --hardened: the workloads of the default profile still run,
// Pod Security "restricted" is enforced, Secrets are encrypted in etcd and their key rotates,
// and the CIS report has no failed check.
func TestHardened(t *testing.T) {
	s := prepareCluster(t, clusterSpec{Servers: 1, ServerArgs: []string{"--hardened"}}).server()
	s.start()
	s.waitNodeReady(t)

	checkWorkloads(t, s)

	t.Run("pod security restricted", func(t *testing.T) {
		out, err := s.kubectl("run", "as-root", "--image=k1s.local/busybox:test", "--image-pull-policy=Never", "--", "sleep", "60")
		if err == nil || !strings.Contains(out, `violates PodSecurity "restricted:latest"`) {
			t.Errorf("a root pod without seccomp profile in default: %v\n%s", err, out)
		}
	})

	t.Run("kubelet hardened", func(t *testing.T) {
		conf, err := os.ReadFile(filepath.Join(s.dataDir, "agent", "etc", "kubelet.conf"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"protectKernelDefaults: true", "seccompDefault: true", "podPidsLimit: 4096"} {
			if !strings.Contains(string(conf), want) {
				t.Errorf("kubelet.conf lacks %q", want)
			}
		}
		// The kubelet started with protectKernelDefaults: k1s set what it needs.
		if v, _ := os.ReadFile("/proc/sys/kernel/keys/root_maxkeys"); strings.TrimSpace(string(v)) != "1000000" {
			t.Errorf("kernel.keys.root_maxkeys = %q", v)
		}
	})

	t.Run("secrets encrypted in etcd, two key rotations at once", func(t *testing.T) {
		s.mustKubectl("create", "secret", "generic", "sealed", "--from-literal=password=plain-s3cret-value")
		key := "/registry/secrets/default/sealed"
		raw := etcdGet(t, s, key)
		// secretbox: the provider of a new configuration.
		keyName := regexp.MustCompile(`^k8s:enc:secretbox:v1:([^:]+):`).FindSubmatch(raw)
		if keyName == nil || bytes.Contains(raw, []byte("plain-s3cret-value")) {
			t.Fatalf("the Secret is not encrypted with secretbox in etcd: %q", raw[:min(len(raw), 80)])
		}
		status, err := runK1s("secrets-encrypt", "status", "--data-dir", s.dataDir)
		if err != nil || !strings.Contains(status, "Encryption Status: Enabled") || !strings.Contains(status, "Provider: secretbox") ||
			!strings.Contains(status, "Active Key: "+string(keyName[1])) {
			t.Errorf("status: %v\n%s", err, status)
		}
		// Two runs started together: the lock makes one wait for the other, and no Secret is
		// left with a key the configuration dropped.
		var outs [2]string
		var errs [2]error
		var wg sync.WaitGroup
		for i := range outs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outs[i], errs[i] = runK1s("secrets-encrypt", "rotate-keys", "--data-dir", s.dataDir)
			}()
		}
		wg.Wait()
		waited := 0
		for i, out := range outs {
			if errs[i] != nil {
				t.Fatalf("rotate-keys %d: %v\n%s", i, errs[i], out)
			}
			if strings.Contains(out, "waiting for k1s secrets-encrypt rotate-keys (pid ") {
				waited++
			}
		}
		if waited != 1 {
			t.Errorf("%d rotate-keys runs waited for the other, want 1:\n%s\n---\n%s", waited, outs[0], outs[1])
		}
		cfg, _, err := encryption.Read(filepath.Join(s.dataDir, "server", "cred", "encryption-config.json"))
		if err != nil || len(cfg.Keys) != 1 || string(keyName[1]) == cfg.Active().Name {
			t.Fatalf("the configuration after two rotations: %+v %v", cfg.Keys, err)
		}
		for k, v := range etcdRange(t, s, "/registry/secrets/", true) {
			if !bytes.HasPrefix(v, []byte(cfg.Active().Prefix())) {
				t.Errorf("%s is stored as %q, not with the configuration's one key %s", k, v[:min(len(v), 60)], cfg.Active())
			}
		}
		eventually(t, 30*time.Second, "the apiserver using the last configuration", func() error {
			if out, err := runK1s("secrets-encrypt", "status", "--data-dir", s.dataDir); err != nil || !strings.Contains(out, "Loaded by the apiserver: yes") {
				return fmt.Errorf("%v %s", err, out)
			}
			return nil
		})
		s.mustKubectl("get", "secrets", "-A", "-o", "yaml")
		if out := s.mustKubectl("get", "secret", "sealed", "-o", "jsonpath={.data.password}"); out != "cGxhaW4tczNjcmV0LXZhbHVl" {
			t.Errorf("the Secret reads back as %q", out)
		}
	})

	t.Run("CIS report has no failed check", func(t *testing.T) {
		out, err := runK1s("check-config", "--cis", "--data-dir", s.dataDir, "--write-kubeconfig", s.kubeconfig)
		if err != nil || strings.Contains(out, "[FAIL]") || strings.Contains(out, "[UNVERIFIED]") {
			t.Errorf("check-config --cis: %v\n%s", err, out)
		}
	})
}

// recordedArgs is the command line k1s recorded for a server component.
func recordedArgs(t *testing.T, s *process, component string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(s.dataDir, "server", "etc", "args", component+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// etcdGet reads a key's raw value from the server's etcd, as k1s's apiserver does (mutual TLS).
func etcdGet(t *testing.T, s *process, key string) []byte {
	t.Helper()
	values := etcdRange(t, s, key, false)
	if len(values) != 1 {
		t.Fatalf("etcd get %s: %d values", key, len(values))
	}
	return values[key]
}

// etcdRange reads the raw values of key, or of every key under it with prefix, from the
// server's etcd.
func etcdRange(t *testing.T, s *process, key string, prefix bool) map[string][]byte {
	t.Helper()
	var opts []clientv3.OpOption
	if prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	var argv []string
	if err := json.Unmarshal([]byte(recordedArgs(t, s, "etcd")), &argv); err != nil {
		t.Fatal(err)
	}
	endpoint := ""
	for _, a := range argv {
		if v, ok := strings.CutPrefix(a, "--listen-client-urls="); ok {
			endpoint, _, _ = strings.Cut(v, ",")
		}
	}
	dir := filepath.Join(s.dataDir, "server", "tls", "etcd")
	tlsConfig, err := transport.TLSInfo{CertFile: filepath.Join(dir, "client.crt"), KeyFile: filepath.Join(dir, "client.key"),
		TrustedCAFile: filepath.Join(dir, "server-ca.crt")}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: tlsConfig, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.Get(ctx, key, opts...)
	if err != nil {
		t.Fatalf("etcd get %s: %v", key, err)
	}
	values := map[string][]byte{}
	for _, kv := range resp.Kvs {
		values[string(kv.Key)] = kv.Value
	}
	return values
}

// servingSerial is the serial number of the certificate addr serves.
func servingSerial(t *testing.T, addr string) string {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
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

// TestKillallLeavesOtherServers runs two servers on one host, a control plane (A) and a
// server with its node (B): `killall --data-dir A` stops A only, and leaves B, its pods and
// its firewall rules as they were.
func TestKillallLeavesOtherServers(t *testing.T) {
	b := prepareCluster(t, clusterSpec{Servers: 1}).server()
	b.start()
	b.waitNodeReady(t)
	b.mustKubectl("apply", "-f", writeTemp(t, "web.yaml", webManifest))
	waitPodsRunning(t, b, "app=web", 2)
	a := newServer(t)
	a.start()
	a.waitReady(2 * time.Minute)

	rules := func() string {
		out, err := exec.Command("iptables-save").Output()
		if err != nil {
			t.Fatalf("iptables-save: %v", err)
		}
		var kept []string
		for _, l := range strings.Split(string(out), "\n") {
			// Counters and kube-proxy's periodic resyncs aside, B's rules stay the same.
			if strings.Contains(l, "KUBE-") || strings.Contains(l, "CNI-") || strings.Contains(l, "K1S-") || strings.Contains(l, "FLANNEL") {
				kept = append(kept, regexp.MustCompile(`\[\d+:\d+\]`).ReplaceAllString(l, ""))
			}
		}
		return strings.Join(kept, "\n")
	}
	// Every pod of B ready and in kube-proxy's rules first, so that B's rules are settled.
	b.mustKubectl("wait", "--for=condition=Ready", "pod", "--all", "--all-namespaces", "--timeout=2m")
	eventually(t, time.Minute, "kube-proxy's rules for B's ready pods", func() error {
		if r := rules(); strings.Contains(r, "has no endpoints") {
			return fmt.Errorf("still services without endpoints:\n%s", r)
		}
		return nil
	})
	before := rules()
	containers := containerIDs(t, b, "app=web")

	out, err := runK1s("killall", "--data-dir", a.dataDir)
	if err != nil || !strings.Contains(out, "no node ran from") {
		t.Fatalf("killall A: %v\n%s", err, out)
	}
	select {
	case <-a.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("A still runs after its killall")
	}
	if !b.running() {
		t.Fatalf("killall A stopped B:\n%s", tail(b.lines(), 20))
	}
	if after := rules(); after != before {
		t.Errorf("killall A changed B's firewall rules:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, err := os.Stat("/sys/class/net/cni0"); err != nil {
		t.Errorf("B's bridge cni0 is gone: %v", err)
	}
	if after := containerIDs(t, b, "app=web"); after != containers {
		t.Errorf("B's containers changed: %s -> %s", containers, after)
	}
	b.waitNodeReady(t)
}

// servingCSRPEM is a kubelet serving CSR of node for names and ips.
func servingCSRPEM(t testing.TB, node string, names, ips []string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}, DNSNames: names}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}
