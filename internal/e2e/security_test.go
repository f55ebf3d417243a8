//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
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
	s := newServer(t, "--kube-apiserver-arg", "enable-admission-plugins+=AlwaysPullImages")
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

	t.Run("secrets encrypted in etcd, key rotation", func(t *testing.T) {
		s.mustKubectl("create", "secret", "generic", "sealed", "--from-literal=password=plain-s3cret-value")
		key := "/registry/secrets/default/sealed"
		raw := etcdGet(t, s, key)
		keyName := regexp.MustCompile(`^k8s:enc:aescbc:v1:([^:]+):`).FindSubmatch(raw)
		if keyName == nil || bytes.Contains(raw, []byte("plain-s3cret-value")) {
			t.Fatalf("the Secret is not encrypted in etcd: %q", raw[:min(len(raw), 80)])
		}
		status, err := runK1s("secrets-encrypt", "status", "--data-dir", s.dataDir)
		if err != nil || !strings.Contains(status, "Encryption Status: Enabled") || !strings.Contains(status, "Active Key: "+string(keyName[1])) {
			t.Errorf("status: %v\n%s", err, status)
		}
		out, err := runK1s("secrets-encrypt", "rotate-keys", "--data-dir", s.dataDir)
		if err != nil {
			t.Fatalf("rotate-keys: %v\n%s", err, out)
		}
		raw = etcdGet(t, s, key)
		newName := regexp.MustCompile(`^k8s:enc:aescbc:v1:([^:]+):`).FindSubmatch(raw)
		if newName == nil || bytes.Equal(newName[1], keyName[1]) {
			t.Errorf("after rotate-keys the Secret is stored with %q, was %q", raw[:min(len(raw), 60)], keyName[1])
		}
		if out := s.mustKubectl("get", "secret", "sealed", "-o", "jsonpath={.data.password}"); out != "cGxhaW4tczNjcmV0LXZhbHVl" {
			t.Errorf("the Secret reads back as %q", out)
		}
	})

	t.Run("CIS report has no failed check", func(t *testing.T) {
		out, err := runK1s("check-config", "--cis", "--data-dir", s.dataDir, "--write-kubeconfig", s.kubeconfig)
		if err != nil || strings.Contains(out, "[FAIL]") {
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
	var argv []string
	if err := json.Unmarshal([]byte(recordedArgs(t, s, "etcd")), &argv); err != nil {
		t.Fatal(err)
	}
	endpoint := ""
	for _, a := range argv {
		if v, ok := strings.CutPrefix(a, "--listen-client-urls="); ok {
			endpoint = v
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
	resp, err := client.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("etcd get %s: %v %v", key, resp, err)
	}
	return resp.Kvs[0].Value
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
