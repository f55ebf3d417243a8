//go:build e2e

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// webPodManifest is a pod pinned to node %[1]s that serves hello-from-<node> on 8080 (and at
// /cgi-bin/ip client=<the client's address>) and logs started-on-<node>.
const webPodManifest = `apiVersion: v1
kind: Pod
metadata:
  name: web-%[1]s
  labels: {app: web, node: %[1]s}
spec:
  nodeName: %[1]s
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: k1s.local/busybox:test
    imagePullPolicy: Never
    env:
    - name: NODE
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
    command: ["sh", "-c", "echo started-on-$NODE; mkdir -p /www/cgi-bin && echo hello-from-$NODE > /www/index.html && printf '#!/bin/sh\\necho\\necho client=$REMOTE_ADDR\\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www"]
    ports: [{name: http, containerPort: 8080}]
`

// nodeServiceManifest is a NodePort Service %[1]s whose only endpoint is the web pod of node %[2]s.
const nodeServiceManifest = `apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  type: NodePort
  selector: {app: web, node: %[2]s}
  ports: [{port: 80, targetPort: 8080}]
`

// survivorManifest is a Deployment whose pod leaves a lost node 5 s after it is tainted.
const survivorManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: survivor}
spec:
  replicas: 1
  selector: {matchLabels: {app: survivor}}
  template:
    metadata: {labels: {app: survivor}}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      containers:
      - name: main
        image: k1s.local/busybox:test
        imagePullPolicy: Never
        command: ["sleep", "3600"]
`

func webPod(node string) string { return "web-" + node }

// TestMultiNode runs a server with its node and two agents (VXLAN) and checks the pod network,
// services, DNS and the apiserver → kubelet paths across nodes, then losing and restarting an
// agent. The harness's clean-up checks that killall in every namespace leaves nothing.
func TestMultiNode(t *testing.T) {
	c := newCluster(t, clusterSpec{Servers: 1, Agents: 2, ServerArgs: []string{"--kube-controller-manager-arg", "node-monitor-grace-period=20s"}})
	s, a, b := c.Servers[0], c.Agents[0], c.Agents[1]
	c.waitNodesReady(t, 3)
	nodes := c.nodes()

	t.Run("nodes on their addresses with their own pod ranges", func(t *testing.T) {
		seen := map[string]string{}
		for _, n := range nodes {
			if ip := c.kubectl(t, "get", "node", n.name, "-o", `jsonpath={.status.addresses[?(@.type=="InternalIP")].address}`); ip != n.ip {
				t.Errorf("node %s InternalIP %q, want %s", n.name, ip, n.ip)
			}
			cidr := c.kubectl(t, "get", "node", n.name, "-o", "jsonpath={.spec.podCIDR}")
			if cidr == "" || seen[cidr] != "" {
				t.Errorf("node %s pod CIDR %q (none, or also %s's)", n.name, cidr, seen[cidr])
			}
			seen[cidr] = n.name
		}
	})

	t.Run("vxlan between the nodes", func(t *testing.T) {
		for _, n := range nodes {
			out, err := n.exec("ip", "-d", "link", "show", "flannel.1")
			if err != nil || !strings.Contains(out, "vxlan id") || !strings.Contains(out, "dstport 8472") || !strings.Contains(out, "local "+n.ip) {
				t.Errorf("node %s: flannel.1 is not a VXLAN (port 8472) from %s: %v\n%s", n.name, n.ip, err, out)
			}
		}
	})

	ips := runWebPods(t, c, s.name, a.name, b.name)
	c.kubectl(t, "apply", "-f", c.file("web-b.yaml", fmt.Sprintf(nodeServiceManifest, "web-b", b.name)))
	clusterIP := c.kubectl(t, "get", "service", "web-b", "-o", "jsonpath={.spec.clusterIP}")
	nodePort := c.kubectl(t, "get", "service", "web-b", "-o", "jsonpath={.spec.ports[0].nodePort}")

	t.Run("pod to pod across nodes", func(t *testing.T) {
		for _, from := range nodes {
			for _, to := range nodes {
				if from != to {
					podGet(t, c, from.name, ips[to.name]+":8080", "hello-from-"+to.name)
				}
			}
		}
	})

	t.Run("pod to a service whose only endpoint is on another node", func(t *testing.T) {
		for _, from := range []string{a.name, s.name} {
			podGet(t, c, from, clusterIP+":80", "hello-from-"+b.name)
		}
	})

	t.Run("node port on one agent reaches a pod on the other", func(t *testing.T) {
		url := fmt.Sprintf("http://%s:%s/", a.ip, nodePort)
		eventually(t, time.Minute, "GET "+url, func() error {
			if body, err := hostGet(url); err != nil || body != "hello-from-"+b.name {
				return fmt.Errorf("%q %v", body, err)
			}
			return nil
		})
	})

	t.Run("DNS from a pod on an agent", func(t *testing.T) {
		name := "web-b.default.svc.cluster.local"
		eventually(t, 2*time.Minute, "nslookup "+name, func() error {
			out, err := c.server().kubectl("exec", webPod(a.name), "--", "nslookup", name)
			if err != nil || !strings.Contains(out, clusterIP) {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
		podGet(t, c, a.name, name+":80", "hello-from-"+b.name)
	})

	t.Run("logs exec port-forward on an agent", func(t *testing.T) {
		pod := webPod(a.name)
		if out := c.kubectl(t, "logs", pod); !strings.Contains(out, "started-on-"+a.name) {
			t.Errorf("logs: %q", out)
		}
		if out := c.kubectl(t, "exec", pod, "--", "cat", "/www/index.html"); strings.TrimSpace(out) != "hello-from-"+a.name {
			t.Errorf("exec: %q", out)
		}
		local := freePort(t)
		pf := exec.Command(*k1sBinary, "kubectl", "--kubeconfig", c.server().kubeconfig, "port-forward", "pod/"+pod, fmt.Sprintf("%d:8080", local))
		pf.Env = append(os.Environ(), "KUBECONFIG=")
		if err := pf.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = pf.Process.Kill(); _ = pf.Wait() }()
		url := fmt.Sprintf("http://127.0.0.1:%d/", local)
		eventually(t, 30*time.Second, "port-forward", func() error {
			if body, err := hostGet(url); err != nil || body != "hello-from-"+a.name {
				return fmt.Errorf("%q %v", body, err)
			}
			return nil
		})
	})

	t.Run("local storage: a StatefulSet on an agent keeps its volume", func(t *testing.T) {
		checkLocalStorage(t, c, a)
	})

	t.Run("LoadBalancer Services on the nodes' addresses", func(t *testing.T) {
		checkServiceLB(t, c, b)
	})

	t.Run("NetworkPolicy across nodes", func(t *testing.T) {
		checkNetworkPolicy(t, c, b.name, a.name, s.name, ips)
	})

	t.Run("kubectl top and an HPA on CPU", func(t *testing.T) {
		checkMetrics(t, c, []string{s.name, a.name, b.name}, "default/"+webPod(a.name))
		checkHPA(t, c)
	})

	t.Run("lost agent: its pod moves, and it comes back as the same node", func(t *testing.T) {
		uid := c.kubectl(t, "get", "node", b.name, "-o", "jsonpath={.metadata.uid}")
		// Only agent B can take the Deployment's pod at first.
		for _, n := range []string{s.name, a.name} {
			c.kubectl(t, "cordon", n)
		}
		c.kubectl(t, "apply", "-f", c.file("survivor.yaml", survivorManifest))
		waitSurvivor(t, c, func(node string) bool { return node == b.name })
		for _, n := range []string{s.name, a.name} {
			c.kubectl(t, "uncordon", n)
		}
		csrs := c.kubectl(t, "get", "csr", "-o", "name")

		// kill -9 the agent (its containerd follows it; the pods' shims run on).
		if err := syscall.Kill(b.proc.pid(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-b.proc.exited
		eventually(t, 2*time.Minute, "node "+b.name+" NotReady", func() error {
			if s := c.nodeReady(b.name); s == "True" || s == "" {
				return fmt.Errorf("Ready=%q", s)
			}
			return nil
		})
		waitSurvivor(t, c, func(node string) bool { return node != b.name })

		// A node that has joined restarts with its own identity: no token, no new CSR.
		b.proc.args = withoutFlag(b.proc.args, "--token")
		b.proc.start()
		c.waitNodeReady(t, b.name)
		if after := c.kubectl(t, "get", "node", b.name, "-o", "jsonpath={.metadata.uid}"); after != uid {
			t.Errorf("node %s is a new object after the restart (uid %s -> %s)", b.name, uid, after)
		}
		eventually(t, 2*time.Minute, "exec in the pod on the restarted agent", func() error {
			out, err := c.server().kubectl("exec", webPod(b.name), "--", "cat", "/www/index.html")
			if err != nil || strings.TrimSpace(out) != "hello-from-"+b.name {
				return fmt.Errorf("%v: %q", err, out)
			}
			return nil
		})
		if after := c.kubectl(t, "get", "csr", "-o", "name"); after != csrs {
			t.Errorf("certificate signing requests changed across the restart:\nbefore:\n%s\nafter:\n%s", csrs, after)
		}
	})
}

// TestMultiNodeHostGW runs a server node and one agent with flannel's host-gw backend: routes
// through the bridge instead of an overlay.
func TestMultiNodeHostGW(t *testing.T) {
	c := newCluster(t, clusterSpec{Servers: 1, Agents: 1, FlannelBackend: "host-gw",
		// Pass-through arguments of each kind must reach their component: the kubelet's health
		// port (which k1s's readiness check must follow) and kube-proxy's listen addresses
		// (which a config file would override).
		AgentArgs: []string{"--kubelet-arg", "healthz-port=10348",
			"--kube-proxy-arg", "healthz-bind-address=127.0.0.1:10356", "--kube-proxy-arg", "metrics-bind-address=127.0.0.1:10349"}})
	s, a := c.Servers[0], c.Agents[0]
	c.waitNodesReady(t, 2)

	t.Run("pass-through arguments reach the kubelet and kube-proxy", func(t *testing.T) {
		// kube-proxy starts once the node's pod network is up, just after the Node is Ready.
		for _, url := range []string{"http://127.0.0.1:10348/healthz", "http://127.0.0.1:10356/healthz", "http://127.0.0.1:10349/metrics"} {
			eventually(t, time.Minute, url+" on the agent", func() error {
				if out, err := a.exec("curl", "-sf", "-o", "/dev/null", url); err != nil {
					return fmt.Errorf("%v %s", err, out)
				}
				return nil
			})
		}
		for _, url := range []string{"http://127.0.0.1:10248/healthz", "http://127.0.0.1:10256/healthz", "http://127.0.0.1:10249/metrics"} {
			if out, err := a.exec("curl", "-sf", "-o", "/dev/null", url); err == nil {
				t.Errorf("%s (the default) still answers on the agent: %s", url, out)
			}
		}
	})
	serverCIDR := c.kubectl(t, "get", "node", s.name, "-o", "jsonpath={.spec.podCIDR}")
	agentCIDR := c.kubectl(t, "get", "node", a.name, "-o", "jsonpath={.spec.podCIDR}")

	t.Run("routes between the nodes, no overlay", func(t *testing.T) {
		for _, r := range []struct {
			on, via *clusterNode
			cidr    string
		}{{a, s, serverCIDR}, {s, a, agentCIDR}} {
			eventually(t, time.Minute, fmt.Sprintf("route to %s via %s on %s", r.cidr, r.via.ip, r.on.name), func() error {
				out, err := r.on.exec("ip", "route", "show", r.cidr)
				if err != nil || !strings.Contains(out, "via "+r.via.ip) {
					return fmt.Errorf("%v: %q", err, out)
				}
				return nil
			})
		}
		if out, err := a.exec("ip", "link", "show", "flannel.1"); err == nil {
			t.Errorf("host-gw agent has a VXLAN interface:\n%s", out)
		}
	})

	ips := runWebPods(t, c, s.name, a.name)
	t.Run("pod to pod across nodes", func(t *testing.T) {
		podGet(t, c, s.name, ips[a.name]+":8080", "hello-from-"+a.name)
		podGet(t, c, a.name, ips[s.name]+":8080", "hello-from-"+s.name)
	})
}

// TestJoinErrors checks that an agent with a bad join is refused, at once and with a line
// naming the cause, and that a bootstrap token can do nothing beyond joining.
func TestJoinErrors(t *testing.T) {
	c := newCluster(t, clusterSpec{Servers: 1, DisableAgent: true, Network: true})
	s, token := c.server(), c.joinToken()
	j := c.addNode("joiner")
	m := joinTokenPattern.FindStringSubmatch(token)
	hash, id, secret := m[1], m[2], m[3]
	// A Node the joins below must not take over.
	const taken = "taken"
	c.kubectl(t, "create", "-f", c.file("node.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: "+taken+"}\n"))

	t.Run("node token file", func(t *testing.T) {
		file := filepath.Join(s.dataDir, "server", "node-token")
		if info, err := os.Stat(file); err != nil {
			t.Fatal(err)
		} else if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", file, info.Mode().Perm())
		}
		data, _ := os.ReadFile(file)
		if got := strings.TrimSpace(string(data)); got != token {
			t.Errorf("node-token holds %q, not just the token", got)
		}
		pemData, err := os.ReadFile(filepath.Join(s.dataDir, "server", "tls", "server-ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		var hashes []string
		for block, rest := pem.Decode(pemData); block != nil; block, rest = pem.Decode(rest) {
			if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
				sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
				if hashes = append(hashes, hex.EncodeToString(sum[:])); hashes[len(hashes)-1] == hash {
					return
				}
			}
		}
		t.Errorf("the token's CA hash %s is not the cluster CA's (%v)", hash, hashes)
	})

	join := []string{"--server", c.serverURL()}
	t.Run("wrong token", func(t *testing.T) {
		bad := "K10" + hash + "::" + randomToken(6) + "." + randomToken(16)
		expectRefused(t, j, j.name, 0, time.Minute, []string{"token", "not valid"}, append(join, "--token", bad)...)
	})

	t.Run("wrong CA hash", func(t *testing.T) {
		other := make([]byte, 32)
		_, _ = rand.Read(other)
		bad := "K10" + hex.EncodeToString(other) + "::" + id + "." + secret
		expectRefused(t, j, j.name, 0, time.Minute, []string{"CA hash"}, append(join, "--token", bad)...)
	})

	t.Run("http server URL", func(t *testing.T) {
		expectRefused(t, j, j.name, 0, time.Minute, []string{"must be an https:// URL"},
			"--server", fmt.Sprintf("http://%s:%d", c.gateway(), s.port), "--token", token)
	})

	t.Run("node name taken", func(t *testing.T) {
		expectRefused(t, j, taken, 0, 2*time.Minute, []string{"node name " + taken + " is already taken"}, append(join, "--token", token)...)
	})

	t.Run("expired token", func(t *testing.T) {
		tok, tid := createToken(t, c, "--ttl", "1s", "--description", "e2e expiring")
		// The token cleaner deletes it, and the bootstrap signer drops its signature.
		time.Sleep(3 * time.Second)
		expectRefused(t, j, j.name, 90*time.Second, time.Minute, []string{"token", "not valid"}, append(join, "--token", tok)...)
		eventually(t, time.Minute, "expired token gone from the list", func() error {
			if out, err := runK1s("token", "list", "--data-dir", s.dataDir); err != nil || strings.Contains(out, tid) {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	})

	t.Run("deleted token", func(t *testing.T) {
		tok, tid := createToken(t, c, "--description", "e2e deleted")
		if out, err := runK1s("token", "list", "--data-dir", s.dataDir); err != nil || !strings.Contains(out, tid) {
			t.Fatalf("token list lacks %s: %v\n%s", tid, err, out)
		}
		bare := tok[strings.Index(tok, "::")+2:]
		if out, err := bootstrapKubectl(c, bare, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || out != "system:bootstrap:"+tid {
			t.Fatalf("a new token authenticates as %q (%v)", out, err)
		}
		if out, err := runK1s("token", "delete", "--data-dir", s.dataDir, tid); err != nil {
			t.Fatalf("token delete: %v\n%s", err, out)
		}
		if out, err := runK1s("token", "list", "--data-dir", s.dataDir); err != nil || strings.Contains(out, tid) {
			t.Errorf("token list after delete: %v\n%s", err, out)
		}
		eventually(t, 30*time.Second, "deleted token no longer authenticates", func() error {
			if out, err := bootstrapKubectl(c, bare, "auth", "whoami"); err == nil {
				return fmt.Errorf("still authenticates: %s", out)
			}
			return nil
		})
		expectRefused(t, j, j.name, 60*time.Second, time.Minute, []string{"token", "not valid"}, append(join, "--token", tok)...)
	})

	t.Run("unreachable server", func(t *testing.T) {
		p := j.newProcess("agent", j.name, "--server", fmt.Sprintf("https://%s:%d", c.gateway(), freePort(t)), "--token", token)
		p.start()
		defer p.kill()
		eventually(t, time.Minute, "two 'waiting for the server' lines", func() error {
			n := 0
			for _, l := range p.lines() {
				if strings.Contains(l, "waiting for the server") {
					n++
				}
			}
			if !p.running() {
				t.Fatalf("the agent gave up (%v):\n%s", p.err, tail(p.lines(), 40))
			}
			if n < 2 {
				return fmt.Errorf("%d such lines:\n%s", n, tail(p.lines(), 10))
			}
			return nil
		})
	})

	t.Run("bootstrap token can only join", func(t *testing.T) {
		if out, err := bootstrapKubectl(c, id+"."+secret, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || out != "system:bootstrap:"+id {
			t.Errorf("the join token authenticates as %q (%v)", out, err)
		}
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"get", "secrets", "--all-namespaces"}, "no"},
			{[]string{"get", "nodes"}, "no"},
			{[]string{"create", "pods"}, "no"},
			{[]string{"create", "certificatesigningrequests"}, "yes"},
		} {
			out, _ := bootstrapKubectl(c, id+"."+secret, append([]string{"auth", "can-i"}, tc.args...)...)
			if canI(out) != tc.want {
				t.Errorf("can-i %s: %q, want %s", strings.Join(tc.args, " "), out, tc.want)
			}
		}
	})

	t.Run("anonymous requests reach only cluster-info and health", func(t *testing.T) {
		base := c.serverURL()
		for path, want := range map[string]string{
			"/api/v1/namespaces/kube-public/configmaps/cluster-info": "200",
			"/readyz": "200",
			"/api/v1/namespaces/kube-public/configmaps": "401",
			"/api/v1/namespaces":                        "401",
			"/version":                                  "401",
		} {
			// The cluster CA is what a joining node checks; the request carries no credential.
			out, err := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
				filepath.Join(s.dataDir, "server", "tls", "server-ca.crt"), base+path).Output()
			if err != nil || string(out) != want {
				t.Errorf("anonymous GET %s: %q (%v), want %s", path, out, err, want)
			}
		}
	})

	t.Run("bootstrap token gets no certificate beyond a new kubelet's", func(t *testing.T) {
		const kubeletSigner, clientSigner = "kubernetes.io/kube-apiserver-client-kubelet", "kubernetes.io/kube-apiserver-client"
		csrs := []struct {
			name, node, signer string
			approved           bool
		}{
			// The control: what a new node files is approved (so the wait below means something).
			{"kubelet-new-node", "fresh", kubeletSigner, true},
			{"client-signer", "ghost", clientSigner, false},
			{"kubelet-existing-node", taken, kubeletSigner, false},
		}
		for _, r := range csrs {
			manifest := fmt.Sprintf("apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {name: %s}\nspec:\n  request: %s\n  signerName: %s\n  usages: [digital signature, client auth]\n",
				r.name, base64.StdEncoding.EncodeToString(csrPEM(t, "system:node:"+r.node, "system:nodes")), r.signer)
			if out, err := bootstrapKubectl(c, id+"."+secret, "create", "-f", c.file(r.name+".yaml", manifest)); err != nil {
				t.Fatalf("creating CSR %s with the bootstrap token: %v\n%s", r.name, err, out)
			}
		}
		filed := time.Now()
		conditions := func(name string) string {
			return c.kubectl(t, "get", "csr", name, "-o", "jsonpath={.status.conditions[*].type}")
		}
		for _, r := range csrs {
			if r.approved {
				eventually(t, time.Minute, "CSR "+r.name+" approved", func() error {
					if got := conditions(r.name); !strings.Contains(got, "Approved") {
						return fmt.Errorf("conditions %q", got)
					}
					return nil
				})
			}
		}
		time.Sleep(time.Until(filed.Add(10 * time.Second)))
		for _, r := range csrs {
			if r.approved {
				continue
			}
			if got := conditions(r.name); strings.Contains(got, "Approved") {
				t.Errorf("CSR %s (CN system:node:%s, signer %s) was approved: %q", r.name, r.node, r.signer, got)
			}
			if cert := c.kubectl(t, "get", "csr", r.name, "-o", "jsonpath={.status.certificate}"); cert != "" {
				t.Errorf("CSR %s got a certificate", r.name)
			}
		}
	})

	t.Run("a node name is bound to the first node's key", func(t *testing.T) {
		const owned = "owned"
		joinAndStop(t, j, owned, append(join, "--token", token)...)
		binding := owned + ".node-identity.k1s"
		c.kubectl(t, "-n", "kube-system", "get", "secret", binding)
		// The old node keeps its data; its Node object goes: the name stays its own.
		c.kubectl(t, "delete", "node", owned, "--ignore-not-found")
		expectRefused(t, j, owned, 0, 2*time.Minute, []string{"node name " + owned + " is already taken", "delete secret " + binding}, append(join, "--token", token)...)
		// Freed by hand, the name joins again, from another data directory.
		c.kubectl(t, "-n", "kube-system", "delete", "secret", binding)
		again := joinAndStop(t, j, owned, append(join, "--token", token)...)
		if _, err := os.Stat(filepath.Join(again.dataDir, "agent", "bootstrap.kubeconfig")); err == nil {
			t.Error("the bootstrap kubeconfig (with the token) is still on disk after the join")
		}
		c.kubectl(t, "delete", "node", owned, "--ignore-not-found")
	})

	t.Run("two joins racing for one name: neither gets it twice", func(t *testing.T) {
		names := []string{"race-1", "race-2"}
		for _, n := range names {
			manifest := fmt.Sprintf("apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {name: %s}\nspec:\n  request: %s\n  signerName: kubernetes.io/kube-apiserver-client-kubelet\n  usages: [digital signature, client auth]\n",
				n, base64.StdEncoding.EncodeToString(csrPEM(t, "system:node:raced", "system:nodes")))
			if out, err := bootstrapKubectl(c, id+"."+secret, "create", "-f", c.file(n+".yaml", manifest)); err != nil {
				t.Fatalf("creating CSR %s: %v\n%s", n, err, out)
			}
		}
		approved := 0
		eventually(t, time.Minute, "both CSRs decided", func() error {
			approved = 0
			for _, n := range names {
				got := c.kubectl(t, "get", "csr", n, "-o", "jsonpath={.status.conditions[*].type}")
				if got == "" {
					return fmt.Errorf("CSR %s pending", n)
				}
				if strings.Contains(got, "Approved") {
					approved++
				}
			}
			return nil
		})
		if approved > 1 {
			t.Errorf("both CSRs for one node name (with different keys) were approved")
		}
	})

	t.Run("token rotate; a deleted default token stays deleted", func(t *testing.T) {
		out, err := runK1s("token", "rotate", "--data-dir", s.dataDir)
		if err != nil {
			t.Fatalf("token rotate: %v\n%s", err, out)
		}
		rotated := joinTokenPattern.FindString(out)
		if rotated == "" || rotated == token {
			t.Fatalf("token rotate printed %q", out)
		}
		if data, _ := os.ReadFile(filepath.Join(s.dataDir, "server", "node-token")); strings.TrimSpace(string(data)) != rotated {
			t.Errorf("node-token holds %q, want the new token", data)
		}
		// The old token no longer joins; the new one does (the last subtest's agent).
		expectRefused(t, j, j.name, 60*time.Second, time.Minute, []string{"token", "not valid"}, append(join, "--token", token)...)

		// A default token deleted by hand is not made again by a restart.
		rotatedID := joinTokenPattern.FindStringSubmatch(rotated)[2]
		if out, err := runK1s("token", "delete", "--data-dir", s.dataDir, rotatedID); err != nil {
			t.Fatalf("token delete: %v\n%s", err, out)
		}
		if err, _ := s.stop(); err != nil {
			t.Fatalf("stopping the server: %v", err)
		}
		s.start()
		s.waitReady(2 * time.Minute)
		if out, err := runK1s("token", "list", "--data-dir", s.dataDir); err != nil || strings.Contains(out, rotatedID) {
			t.Errorf("the deleted default token is back after a restart: %v\n%s", err, out)
		}
		eventually(t, 30*time.Second, "the server's log saying how to make a new default token", func() error {
			for _, l := range s.lines() {
				if strings.Contains(l, "k1s token rotate") {
					return nil
				}
			}
			return errors.New("no line names 'k1s token rotate'")
		})
		if out, err := runK1s("token", "rotate", "--data-dir", s.dataDir); err != nil {
			t.Fatalf("token rotate: %v\n%s", err, out)
		}
		c.token = "" // the agent below joins with the new default token
	})

	// Last: an agent of this control-plane-only server (k3s has no metrics for either).
	t.Run("kubectl top on a control-plane-only server with an agent", func(t *testing.T) {
		agent := c.addAgent("metered")
		c.waitNodeReady(t, agent.name)
		checkMetrics(t, c, []string{agent.name}, "kube-system/"+c.kubectl(t, "-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o", "jsonpath={.items[0].metadata.name}"))
	})
}

// joinAndStop runs an agent named name on node j (in a new data directory) until it has
// joined, then stops it and cleans up after it; it returns the stopped process.
func joinAndStop(t *testing.T, j *clusterNode, name string, args ...string) *process {
	t.Helper()
	p := j.newProcess("agent", name, args...)
	p.start()
	eventually(t, 2*time.Minute, "node "+name+" joined", func() error {
		for _, l := range p.lines() {
			if strings.Contains(l, "joined the cluster") {
				return nil
			}
		}
		if !p.running() {
			t.Fatalf("the agent exited (%v):\n%s", p.err, tail(p.lines(), 40))
		}
		return errors.New("not yet")
	})
	p.kill()
	if out, err := j.k1s("killall", "--data-dir", p.dataDir); err != nil {
		t.Fatalf("killall: %v\n%s", err, out)
	}
	return p
}

// runWebPods starts the web pod on each node, waits for them to run and returns their IPs by node.
func runWebPods(t testing.TB, c *cluster, nodes ...string) map[string]string {
	t.Helper()
	var docs []string
	for _, n := range nodes {
		docs = append(docs, fmt.Sprintf(webPodManifest, n))
	}
	c.kubectl(t, "apply", "-f", c.file("web-pods.yaml", strings.Join(docs, "---\n")))
	ips := map[string]string{}
	waitFor(t, c, 3*time.Minute, "web pods running", func() error {
		for _, n := range nodes {
			out, err := c.server().kubectl("get", "pod", webPod(n), "-o", `jsonpath={.status.phase} {.status.podIP}`)
			f := strings.Fields(out)
			if err != nil || len(f) != 2 || f[0] != "Running" {
				return fmt.Errorf("pod %s: %v %q", webPod(n), err, out)
			}
			ips[n] = f[1]
		}
		return nil
	})
	return ips
}

// podGet fetches / from addr (host:port) with nc in the web pod of node from, until the answer
// contains want.
func podGet(t testing.TB, c *cluster, from, addr, want string) {
	t.Helper()
	eventually(t, 2*time.Minute, fmt.Sprintf("%s from the pod on %s", addr, from), func() error {
		out, err := podHTTP(c.server(), webPod(from), addr, 5)
		if err != nil || !strings.Contains(out, want) {
			return fmt.Errorf("want %q: %v: %q", want, err, out)
		}
		return nil
	})
}

// podHTTP fetches / from addr (host:port) with busybox nc in pod (namespace/name, or a name in
// default), on one new connection that gives up after wait seconds, and returns the output.
func podHTTP(s *process, pod, addr string, wait int) (string, error) {
	namespace, name, ok := strings.Cut(pod, "/")
	if !ok {
		namespace, name = "default", pod
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	return s.kubectl("-n", namespace, "exec", name, "--", "sh", "-c",
		fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w %d %s %s`, wait, host, port))
}

// waitSurvivor waits for the survivor Deployment's pod to run (not terminating) on a node ok
// accepts.
func waitSurvivor(t testing.TB, c *cluster, ok func(node string) bool) {
	t.Helper()
	waitFor(t, c, 3*time.Minute, "survivor pod running", func() error {
		out, err := c.server().kubectl("get", "pods", "-l", "app=survivor", "-o",
			`jsonpath={range .items[*]}{.metadata.name}{" "}{.spec.nodeName}{" "}{.status.phase}{" "}{.metadata.deletionTimestamp}{"\n"}{end}`)
		if err != nil {
			return err
		}
		for _, l := range nonEmptyLines(out) {
			if f := strings.Fields(l); len(f) == 3 && f[2] == "Running" && ok(f[1]) {
				return nil
			}
		}
		return fmt.Errorf("pods (name node phase deleted):\n%s", out)
	})
}

// waitFor is eventually with the cluster's logs in the failure message.
func waitFor(t testing.TB, c *cluster, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			pods, _ := c.server().kubectl("get", "pods", "-A", "-o", "wide")
			t.Fatalf("%s: not within %s: %v\n%s\n%s", what, timeout, err, pods, c.logs())
		}
		time.Sleep(time.Second)
	}
}

// expectRefused runs an agent as node name with args in node j and expects it to exit non-zero
// within timeout, its last line containing every want. Refusals that depend on the server
// catching up (an expired token's signature) are retried, each on a fresh data directory, for
// retryFor.
func expectRefused(t *testing.T, j *clusterNode, name string, retryFor, timeout time.Duration, want []string, args ...string) {
	t.Helper()
	deadline := time.Now().Add(retryFor)
	for {
		lines, err, exited := j.run(t, j.newProcess("agent", name, args...), timeout)
		last := lastLine(lines)
		var problem string
		switch {
		case !exited:
			problem = fmt.Sprintf("still running after %s (killed)", timeout)
		case err == nil:
			problem = "exited 0"
		default:
			for _, w := range want {
				if !strings.Contains(last, w) {
					problem = fmt.Sprintf("last line %q lacks %q", last, w)
					break
				}
			}
		}
		if problem == "" {
			for _, l := range lines {
				if strings.Contains(l, "goroutine ") || strings.Contains(l, "panic") {
					t.Errorf("the agent printed a trace:\n%s", strings.Join(lines, "\n"))
					break
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not refused as expected: %s (exit %v):\n%s", problem, err, tail(lines, 40))
		}
		t.Logf("not refused yet (%s), retrying", problem)
		time.Sleep(3 * time.Second)
	}
}

// createToken runs `k1s token create` on the server and returns the token and its id.
func createToken(t *testing.T, c *cluster, args ...string) (token, id string) {
	t.Helper()
	out, err := runK1s(append([]string{"token", "create", "--data-dir", c.server().dataDir}, args...)...)
	m := joinTokenPattern.FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("token create: %v\n%s", err, out)
	}
	return m[0], m[2]
}

// bootstrapKubectl runs kubectl authenticated by bootstrap token <id>.<secret> only, trusting
// the cluster CA.
func bootstrapKubectl(c *cluster, token string, args ...string) (string, error) {
	return runK1s(append([]string{"kubectl", "--kubeconfig", os.DevNull,
		"--server", fmt.Sprintf("https://127.0.0.1:%d", c.server().port),
		"--certificate-authority", filepath.Join(c.server().dataDir, "server", "tls", "server-ca.crt"),
		"--token", token}, args...)...)
}

// canI is the answer ("yes"/"no") in `kubectl auth can-i` output, among warnings.
func canI(out string) string {
	for _, l := range nonEmptyLines(out) {
		if f := strings.Fields(l); f[0] == "yes" || f[0] == "no" {
			return f[0]
		}
	}
	return ""
}

// csrPEM is a PEM certificate request for a fresh key with the given subject.
func csrPEM(t testing.TB, cn string, orgs ...string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: orgs}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// randomToken is n random characters of a bootstrap token ([a-z0-9]).
func randomToken(n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}

// hostGet fetches url from the host (never through a proxy) and returns the trimmed body.
func hostGet(url string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New(resp.Status)
	}
	return strings.TrimSpace(string(body)), err
}
