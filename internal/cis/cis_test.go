package cis

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// profile is what a fake k1s data directory is written as.
type profile struct {
	hardened bool
	// certMode is the mode of certificate files (internal/pki writes 0644 today).
	certMode fs.FileMode
}

var (
	defaultProfile = profile{certMode: 0o644}
	// The hardened profile assumes certificates written 0600: 4.1.7 (automated) wants the
	// kubelet's client CA file 0600 or stricter.
	hardenedProfile = profile{hardened: true, certMode: 0o600}
)

// node is a fake k1s node: a data directory as a k1s server with its agent leaves it.
type node struct {
	t        *testing.T
	dir      string
	admin    string
	apiArgs  []string
	cmArgs   []string
	schArgs  []string
	etcdArgs []string
	kubelet  []string
	proxy    []string
	kubeConf string
}

func newNode(t *testing.T, p profile) *node {
	t.Helper()
	root := t.TempDir()
	d := filepath.Join(root, "k1s")
	n := &node{t: t, dir: d, admin: filepath.Join(root, "etc-k1s", "k1s.yaml")}
	tls, cred, etc := filepath.Join(d, "server", "tls"), filepath.Join(d, "server", "cred"), filepath.Join(d, "server", "etc")

	// The PKI, as internal/pki writes it.
	for _, name := range []string{"client-ca", "server-ca", "request-header-ca", "serving-kube-apiserver", "client-kube-apiserver", "client-auth-proxy",
		"etcd/server-ca", "etcd/server-client", "etcd/client"} {
		n.write(filepath.Join(tls, name+".crt"), "-----BEGIN CERTIFICATE-----\n"+name+"\n", p.certMode)
		n.write(filepath.Join(tls, name+".key"), "key "+name, 0o600)
	}
	n.write(filepath.Join(tls, "service.key"), "service key", 0o600)
	for _, name := range []string{"supervisor", "break-glass", "controller", "scheduler"} {
		n.write(filepath.Join(cred, name+".kubeconfig"), "apiVersion: v1\nkind: Config\n", 0o600)
	}
	n.write(n.admin, "apiVersion: v1\nkind: Config\n", 0o600)
	if err := os.MkdirAll(filepath.Join(d, "server", "db", "etcd"), 0o700); err != nil {
		t.Fatal(err)
	}

	podSecurity := "baseline"
	eventRateLimit := ""
	if p.hardened {
		podSecurity = "restricted"
		eventRateLimit = `- name: EventRateLimit
  configuration:
    apiVersion: eventratelimit.admission.k8s.io/v1alpha1
    kind: Configuration
    limits:
    - type: Server
      qps: 5000
      burst: 20000
`
	}
	n.write(filepath.Join(etc, "admission-config.yaml"), `apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults:
      enforce: `+podSecurity+`
      enforce-version: latest
      audit: restricted
      audit-version: latest
      warn: restricted
      warn-version: latest
    exemptions:
      namespaces: [kube-system]
`+eventRateLimit, 0o600)
	n.write(filepath.Join(etc, "authentication-config.yaml"), `apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
anonymous:
  enabled: true
  conditions:
  - path: /livez
  - path: /readyz
  - path: /healthz
  - path: /api/v1/namespaces/kube-public/configmaps/cluster-info
`, 0o600)
	n.write(filepath.Join(etc, "audit-policy.yaml"), "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n", 0o600)

	// The components' command lines, as internal/server's buildArgs and internal/etcd build them.
	ciphers := "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256," +
		"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
	n.apiArgs = []string{
		"--admission-control-config-file=" + etc + "/admission-config.yaml",
		"--advertise-address=10.0.0.1",
		"--allow-privileged=true",
		"--api-audiences=https://kubernetes.default.svc.cluster.local",
		"--audit-log-maxage=30",
		"--audit-log-maxbackup=10",
		"--audit-log-maxsize=100",
		"--audit-log-path=" + d + "/server/logs/audit.log",
		"--audit-policy-file=" + etc + "/audit-policy.yaml",
		"--authentication-config=" + etc + "/authentication-config.yaml",
		"--authorization-mode=Node,RBAC",
		"--bind-address=0.0.0.0",
		"--cert-dir=" + tls + "/temporary-certs",
		"--client-ca-file=" + tls + "/client-ca.crt",
		"--enable-admission-plugins=NodeRestriction",
		"--enable-bootstrap-token-auth=true",
		"--etcd-cafile=" + tls + "/etcd/server-ca.crt",
		"--etcd-certfile=" + tls + "/etcd/client.crt",
		"--etcd-keyfile=" + tls + "/etcd/client.key",
		"--etcd-servers=https://127.0.0.1:2379",
		"--kubelet-certificate-authority=" + tls + "/server-ca.crt",
		"--kubelet-client-certificate=" + tls + "/client-kube-apiserver.crt",
		"--kubelet-client-key=" + tls + "/client-kube-apiserver.key",
		"--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
		"--profiling=false",
		"--proxy-client-cert-file=" + tls + "/client-auth-proxy.crt",
		"--proxy-client-key-file=" + tls + "/client-auth-proxy.key",
		"--requestheader-allowed-names=system:auth-proxy",
		"--requestheader-client-ca-file=" + tls + "/request-header-ca.crt",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User",
		"--secure-port=6443",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + tls + "/service.key",
		"--service-account-signing-key-file=" + tls + "/service.key",
		"--service-cluster-ip-range=10.43.0.0/16",
		"--service-node-port-range=30000-32767",
		"--storage-backend=etcd3",
		"--tls-cert-file=" + tls + "/serving-kube-apiserver.crt",
		"--tls-cipher-suites=" + ciphers,
		"--tls-min-version=VersionTLS12",
		"--tls-private-key-file=" + tls + "/serving-kube-apiserver.key",
	}
	n.cmArgs = []string{
		"--allocate-node-cidrs=true",
		"--authentication-kubeconfig=" + cred + "/controller.kubeconfig",
		"--authorization-kubeconfig=" + cred + "/controller.kubeconfig",
		"--bind-address=127.0.0.1",
		"--cluster-cidr=10.42.0.0/16",
		"--cluster-signing-kube-apiserver-client-cert-file=" + tls + "/client-ca.crt",
		"--cluster-signing-kube-apiserver-client-key-file=" + tls + "/client-ca.key",
		"--cluster-signing-kubelet-client-cert-file=" + tls + "/client-ca.crt",
		"--cluster-signing-kubelet-client-key-file=" + tls + "/client-ca.key",
		"--cluster-signing-kubelet-serving-cert-file=" + tls + "/server-ca.crt",
		"--cluster-signing-kubelet-serving-key-file=" + tls + "/server-ca.key",
		"--cluster-signing-legacy-unknown-cert-file=" + tls + "/server-ca.crt",
		"--cluster-signing-legacy-unknown-key-file=" + tls + "/server-ca.key",
		"--configure-cloud-routes=false",
		"--controllers=*,bootstrapsigner,tokencleaner",
		"--kube-api-burst=200",
		"--kube-api-qps=100",
		"--kubeconfig=" + cred + "/controller.kubeconfig",
		"--leader-elect=false",
		"--node-cidr-mask-size=24",
		"--profiling=false",
		"--root-ca-file=" + tls + "/server-ca.crt",
		"--secure-port=10257",
		"--service-account-private-key-file=" + tls + "/service.key",
		"--service-cluster-ip-range=10.43.0.0/16",
		"--use-service-account-credentials=true",
	}
	n.schArgs = []string{
		"--authentication-kubeconfig=" + cred + "/scheduler.kubeconfig",
		"--authorization-kubeconfig=" + cred + "/scheduler.kubeconfig",
		"--bind-address=127.0.0.1",
		"--kubeconfig=" + cred + "/scheduler.kubeconfig",
		"--leader-elect=false",
		"--profiling=false",
		"--secure-port=10259",
	}
	// A single server: no peer listener.
	n.etcdArgs = []string{
		"--advertise-client-urls=https://127.0.0.1:2379",
		"--auto-compaction-mode=periodic",
		"--auto-compaction-retention=1h",
		"--cert-file=" + tls + "/etcd/server-client.crt",
		"--client-cert-auth=true",
		"--data-dir=" + d + "/server/db/etcd",
		"--key-file=" + tls + "/etcd/server-client.key",
		"--listen-client-http-urls=https://127.0.0.1:2382",
		"--listen-client-urls=https://127.0.0.1:2379",
		"--listen-metrics-urls=",
		"--listen-peer-urls=",
		"--log-level=info",
		"--name=node1",
		"--quota-backend-bytes=2147483648",
		"--snapshot-count=10000",
		"--trusted-ca-file=" + tls + "/etcd/server-ca.crt",
	}
	if p.hardened {
		n.write(filepath.Join(cred, "encryption-config.json"), `{"kind":"EncryptionConfiguration","apiVersion":"apiserver.config.k8s.io/v1",`+
			`"resources":[{"resources":["secrets"],"providers":[{"aescbc":{"keys":[{"name":"k1","secret":"c2VjcmV0IGlzIHNlY3VyZSwgc2VjcmV0IGlzIHNl"}]}},{"identity":{}}]}]}`, 0o600)
		n.apiArgs = append(n.apiArgs,
			"--encryption-provider-config="+cred+"/encryption-config.json",
			"--enable-admission-plugins=NodeRestriction,EventRateLimit",
			"--service-account-extend-token-expiration=false")
		n.cmArgs = append(n.cmArgs, "--terminated-pod-gc-threshold=10")
	}

	// The agent: the kubelet's config file from internal/agent's template, its kubeconfig and
	// client CA, and kube-proxy's flags.
	agent := filepath.Join(d, "agent")
	n.write(filepath.Join(agent, "kubelet.kubeconfig"), "apiVersion: v1\nkind: Config\n", 0o600)
	n.write(filepath.Join(agent, "client-ca.crt"), "-----BEGIN CERTIFICATE-----\nclient-ca\n", p.certMode)
	kernel := "protectKernelDefaults: false\n"
	if p.hardened {
		kernel = "protectKernelDefaults: true\nseccompDefault: true\npodPidsLimit: 4096\nstreamingConnectionIdleTimeout: 5m\n"
	}
	n.kubeConf = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 10.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 2m}
  x509: {clientCAFile: "` + agent + `/client-ca.crt"}
authorization:
  mode: Webhook
cgroupDriver: systemd
failCgroupV1: false
clusterDNS: ["10.43.0.10"]
clusterDomain: "cluster.local"
resolvConf: "/etc/resolv.conf"
containerRuntimeEndpoint: "unix:///run/k1s/containerd/containerd.sock"
podLogsDir: "` + agent + `/pod-logs"
serializeImagePulls: false
` + kernel + `evictionHard:
  memory.available: 100Mi
  nodefs.available: 5%
  imagefs.available: 5%
evictionPressureTransitionPeriod: 30s
imageGCHighThresholdPercent: 90
imageGCLowThresholdPercent: 80
rotateCertificates: true
serverTLSBootstrap: true
tlsMinVersion: VersionTLS12
tlsCipherSuites: [` + strings.ReplaceAll(ciphers, ",", ", ") + `]
`
	n.kubelet = []string{}
	n.proxy = []string{
		"--conntrack-max-per-core=0",
		"--conntrack-min=0",
		"--conntrack-tcp-timeout-close-wait=0s",
		"--conntrack-tcp-timeout-established=0s",
		"--healthz-bind-address=127.0.0.1:10256",
		"--hostname-override=node1",
		"--kubeconfig=" + agent + "/kubelet.kubeconfig",
		"--metrics-bind-address=127.0.0.1:10249",
		"--nodeport-addresses=10.0.0.1/32",
		"--proxy-mode=nftables",
		"--cluster-cidr=10.42.0.0/16",
	}
	return n
}

func (n *node) write(path, data string, mode fs.FileMode) {
	n.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		n.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		n.t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		n.t.Fatal(err)
	}
}

func (n *node) writeArgs(path string, argv []string) {
	n.t.Helper()
	data, err := json.Marshal(argv)
	if err != nil {
		n.t.Fatal(err)
	}
	n.write(path, string(data), 0o600)
}

// record writes the command lines, as a running k1s records them; server false leaves out
// the server's (an agent-only node).
func (n *node) record(server bool) {
	n.t.Helper()
	if server {
		args := filepath.Join(n.dir, "server", "etc", "args")
		n.writeArgs(filepath.Join(args, "kube-apiserver.json"), n.apiArgs)
		n.writeArgs(filepath.Join(args, "kube-controller-manager.json"), n.cmArgs)
		n.writeArgs(filepath.Join(args, "kube-scheduler.json"), n.schArgs)
		n.writeArgs(filepath.Join(args, "etcd.json"), n.etcdArgs)
	}
	args := filepath.Join(n.dir, "agent", "etc", "args")
	n.writeArgs(filepath.Join(args, "kubelet.json"), n.kubelet)
	n.writeArgs(filepath.Join(args, "kube-proxy.json"), n.proxy)
	n.write(filepath.Join(n.dir, "agent", "etc", "kubelet.conf"), n.kubeConf, 0o600)
}

// results records the node and runs the checks, expecting the files to be owned by the test's
// user (root:root for a real node).
func (n *node) results() map[string]Result {
	n.t.Helper()
	n.record(true)
	return n.run()
}

func (n *node) run() map[string]Result {
	n.t.Helper()
	list, err := run(Options{DataDir: n.dir, AdminKubeconfig: n.admin}, testOwner())
	if err != nil {
		n.t.Fatal(err)
	}
	if len(list) != len(checks) {
		n.t.Fatalf("%d results for %d checks", len(list), len(checks))
	}
	byID := map[string]Result{}
	for _, r := range list {
		if _, dup := byID[r.ID]; dup {
			n.t.Fatalf("check %s reported twice", r.ID)
		}
		byID[r.ID] = r
	}
	return byID
}

func testOwner() owner { return owner{uid: uint32(os.Getuid()), gid: uint32(os.Getgid())} }

// failedAutomated are the IDs of the automated checks that failed.
func failedAutomated(results map[string]Result) []string {
	var ids []string
	for id, r := range results {
		if r.Automated && r.Status == Fail {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

func wantStatus(t *testing.T, results map[string]Result, id string, want Status, foundContains string) {
	t.Helper()
	r, ok := results[id]
	if !ok {
		t.Fatalf("no check %s", id)
	}
	if r.Status != want || !strings.Contains(r.Found, foundContains) {
		t.Errorf("%s = %s %q, want %s with %q", id, r.Status, r.Found, want, foundContains)
	}
}

func TestHardenedProfilePassesEveryAutomatedCheck(t *testing.T) {
	results := newNode(t, hardenedProfile).results()
	if failed := failedAutomated(results); len(failed) > 0 {
		for _, id := range failed {
			t.Errorf("%s failed: %s", id, results[id].Found)
		}
	}
	// What the hardened profile adds passes, manual checks included.
	for id, found := range map[string]string{
		"1.1.20": "all 0600 or stricter",
		"1.2.9":  "EventRateLimit",
		"1.2.27": "encryption-config.json",
		"1.2.28": "first provider is aescbc",
		"1.2.30": "--service-account-extend-token-expiration=false",
		"1.3.1":  "--terminated-pod-gc-threshold=10",
		"4.1.7":  "client-ca.crt 0600",
		"4.2.5":  "streamingConnectionIdleTimeout: 5m",
		"4.2.13": "podPidsLimit: 4096",
		"4.2.14": "seccompDefault: true",
	} {
		wantStatus(t, results, id, Pass, found)
	}
	wantStatus(t, results, "5.2.6", Warn, "enforces restricted by default")
	wantStatus(t, results, "5.2.6", Warn, "allowPrivilegeEscalation refused")
	// Manual checks that need a person stay WARN whatever the profile.
	for _, id := range []string{"1.2.3", "1.2.11", "1.2.20", "4.2.8", "5.2.1"} {
		wantStatus(t, results, id, Warn, "")
	}
}

func TestDefaultProfile(t *testing.T) {
	results := newNode(t, defaultProfile).results()
	// Nothing hardened: the one automated check the hardened profile fixes, and the client CA
	// the agent writes 0644.
	want := []string{"1.2.30", "4.1.7"}
	if got := failedAutomated(results); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("automated checks failed: %v, want %v", got, want)
		for _, id := range got {
			t.Logf("%s: %s", id, results[id].Found)
		}
	}
	wantStatus(t, results, "1.2.30", Fail, "--service-account-extend-token-expiration not set (default true)")
	wantStatus(t, results, "4.1.7", Fail, "client-ca.crt 0644")
	// Manual checks the hardened profile addresses are WARN, never FAIL.
	for id, found := range map[string]string{
		"1.1.20": "more permissive than 0600",
		"1.2.9":  "EventRateLimit not in --enable-admission-plugins=NodeRestriction",
		"1.2.27": "--encryption-provider-config not set",
		"1.2.28": "--encryption-provider-config not set",
		"1.3.1":  "--terminated-pod-gc-threshold not set (default 12500)",
		"4.2.5":  "streamingConnectionIdleTimeout not set (default 4h0m0s)",
		"4.2.13": "podPidsLimit not set (default -1)",
		"4.2.14": "seccompDefault not set (default false)",
	} {
		wantStatus(t, results, id, Warn, found)
	}
	// What k1s does by default, said so.
	wantStatus(t, results, "1.2.1", Pass, "anonymous enabled only for /livez, /readyz, /healthz, /api/v1/namespaces/kube-public/configmaps/cluster-info")
	wantStatus(t, results, "2.4", Pass, "no peer listener")
	wantStatus(t, results, "2.5", Pass, "no peer listener")
	wantStatus(t, results, "2.7", Pass, "--trusted-ca-file=server/tls/etcd/server-ca.crt")
	wantStatus(t, results, "1.1.1", Info, noManifests)
	wantStatus(t, results, "1.1.11", Pass, "server/db/etcd 0700")
	wantStatus(t, results, "1.1.13", Pass, "3 admin kubeconfigs, all 0600 or stricter")
	wantStatus(t, results, "1.1.21", Pass, "key files, all 0600 or stricter")
	wantStatus(t, results, "1.2.29", Pass, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256")
	wantStatus(t, results, "4.2.1", Pass, "authentication.anonymous.enabled: false (agent/etc/kubelet.conf)")
	wantStatus(t, results, "4.2.6", Pass, "makeIPTablesUtilChains not set (default true)")
	wantStatus(t, results, "4.2.9", Pass, "serverTLSBootstrap: true")
	wantStatus(t, results, "4.2.12", Pass, "tlsCipherSuites")
	wantStatus(t, results, "4.3.1", Pass, "--metrics-bind-address=127.0.0.1:10249")
	wantStatus(t, results, "5.2.2", Warn, "Pod Security enforces baseline by default (server/etc/admission-config.yaml; exempt namespaces: kube-system): privileged containers refused")
	wantStatus(t, results, "5.2.7", Warn, "containers running as root allowed (restricted refuses them)")
}

func TestProfilingFlagLastValueWins(t *testing.T) {
	n := newNode(t, defaultProfile)
	n.apiArgs = append(n.apiArgs, "--profiling=true")
	wantStatus(t, n.results(), "1.2.15", Fail, "--profiling=true")

	n.apiArgs = append(n.apiArgs, "--profiling=false")
	wantStatus(t, n.results(), "1.2.15", Pass, "--profiling=false")

	n.apiArgs = removeFlag(n.apiArgs, "profiling")
	wantStatus(t, n.results(), "1.2.15", Fail, "--profiling not set (default true)")
}

func removeFlag(argv []string, key string) []string {
	var out []string
	for _, a := range argv {
		if !strings.HasPrefix(a, "--"+key+"=") {
			out = append(out, a)
		}
	}
	return out
}

func TestKeyFilePermissions(t *testing.T) {
	n := newNode(t, hardenedProfile)
	key := filepath.Join(n.dir, "server", "tls", "etcd", "client.key")
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	results := n.results()
	wantStatus(t, results, "1.1.21", Fail, "server/tls/etcd/client.key 0644")
	if got := failedAutomated(results); strings.Join(got, " ") != "1.1.21" {
		t.Errorf("automated checks failed: %v, want only 1.1.21", got)
	}

	// A key a flag names outside the PKI directory counts too.
	outside := filepath.Join(t.TempDir(), "sa.key")
	n.write(outside, "key", 0o640)
	n.apiArgs = append(n.apiArgs, "--service-account-signing-key-file="+outside)
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, n.results(), "1.1.21", Fail, outside+" 0640")
}

func TestOwnership(t *testing.T) {
	n := newNode(t, hardenedProfile)
	n.record(true)
	other := testOwner()
	other.uid++
	list, err := run(Options{DataDir: n.dir, AdminKubeconfig: n.admin}, other)
	if err != nil {
		t.Fatal(err)
	}
	failed := map[string]bool{}
	for _, r := range list {
		if r.Status == Fail {
			failed[r.ID] = true
		}
	}
	for _, id := range []string{"1.1.14", "1.1.16", "1.1.18", "1.1.19", "4.1.4", "4.1.6", "4.1.8", "4.1.10"} {
		if !failed[id] {
			t.Errorf("%s passed with files owned by another user", id)
		}
	}
	if len(failed) != 8 {
		t.Errorf("failed: %v, want only the ownership checks", failed)
	}
}

func TestAnonymousAuth(t *testing.T) {
	authn := func(n *node, doc string) {
		n.write(filepath.Join(n.dir, "server", "etc", "authentication-config.yaml"), "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n"+doc, 0o600)
	}
	for _, tc := range []struct {
		name  string
		setup func(n *node)
		want  Status
		found string
	}{
		{"k1s's conditions", func(*node) {}, Pass, "anonymous enabled only for"},
		{"another path", func(n *node) {
			authn(n, "anonymous:\n  enabled: true\n  conditions:\n  - path: /livez\n  - path: /api/v1/secrets\n")
		}, Fail, "anonymous enabled for /api/v1/secrets"},
		{"no conditions", func(n *node) { authn(n, "anonymous:\n  enabled: true\n") }, Fail, "anonymous enabled for every request"},
		{"disabled", func(n *node) { authn(n, "anonymous:\n  enabled: false\n") }, Pass, "anonymous disabled"},
		{"no anonymous section: the flag's default", func(n *node) { authn(n, "jwt: []\n") }, Fail, "--anonymous-auth not set (default true)"},
		{"flag true without authentication config", func(n *node) {
			n.apiArgs = append(removeFlag(n.apiArgs, "authentication-config"), "--anonymous-auth=true")
		}, Fail, "--anonymous-auth=true"},
		{"flag false without authentication config", func(n *node) {
			n.apiArgs = append(removeFlag(n.apiArgs, "authentication-config"), "--anonymous-auth=false")
		}, Pass, "--anonymous-auth=false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, defaultProfile)
			tc.setup(n)
			wantStatus(t, n.results(), "1.2.1", tc.want, tc.found)
		})
	}
}

func TestListFlags(t *testing.T) {
	n := newNode(t, defaultProfile)
	n.apiArgs = append(n.apiArgs,
		"--enable-admission-plugins=AlwaysAdmit,NodeRestriction",
		"--disable-admission-plugins=ServiceAccount,DefaultStorageClass",
		"--authorization-mode=RBAC")
	n.cmArgs = append(n.cmArgs, "--feature-gates=Foo=true,RotateKubeletServerCertificate=false")
	results := n.results()
	wantStatus(t, results, "1.2.10", Fail, "AlwaysAdmit,NodeRestriction")
	wantStatus(t, results, "1.2.14", Pass, "AlwaysAdmit,NodeRestriction")
	wantStatus(t, results, "1.2.12", Fail, "--disable-admission-plugins=ServiceAccount,DefaultStorageClass")
	wantStatus(t, results, "1.2.13", Pass, "--disable-admission-plugins=ServiceAccount,DefaultStorageClass")
	wantStatus(t, results, "1.2.6", Pass, "--authorization-mode=RBAC")
	wantStatus(t, results, "1.2.7", Fail, "--authorization-mode=RBAC")
	wantStatus(t, results, "1.2.8", Pass, "--authorization-mode=RBAC")
	wantStatus(t, results, "1.3.6", Fail, "RotateKubeletServerCertificate=false")
}

func TestKubeletFlagsOverrideConfigFile(t *testing.T) {
	n := newNode(t, hardenedProfile)
	n.kubelet = []string{"--read-only-port=10255", "--anonymous-auth", "--feature-gates=RotateKubeletServerCertificate=false",
		"--streaming-connection-idle-timeout=0", "--tls-cipher-suites=TLS_RSA_WITH_AES_128_CBC_SHA"}
	results := n.results()
	wantStatus(t, results, "4.2.4", Fail, "--read-only-port=10255 (kubelet argument)")
	wantStatus(t, results, "4.2.1", Fail, "--anonymous-auth=true (kubelet argument)")
	wantStatus(t, results, "4.2.11", Fail, "--feature-gates=RotateKubeletServerCertificate=false")
	wantStatus(t, results, "4.2.5", Warn, "never time out")
	wantStatus(t, results, "4.2.12", Warn, "not strong: TLS_RSA_WITH_AES_128_CBC_SHA")
	// What the flags leave alone still comes from the file.
	wantStatus(t, results, "4.2.13", Pass, "podPidsLimit: 4096")
}

func TestEtcdPeerListener(t *testing.T) {
	n := newNode(t, defaultProfile)
	// What internal/etcd sets today.
	n.etcdArgs = append(removeFlag(n.etcdArgs, "listen-peer-urls"), "--listen-peer-urls=http://127.0.0.1:2380")
	results := n.results()
	wantStatus(t, results, "2.4", Fail, "--listen-peer-urls=http://127.0.0.1:2380: peers connect over plain HTTP")
	wantStatus(t, results, "2.5", Fail, "--peer-client-cert-auth not set (default false)")
	wantStatus(t, results, "2.6", Pass, "--peer-auto-tls not set (default false)")

	n.etcdArgs = append(n.etcdArgs, "--listen-peer-urls=https://10.0.0.1:2380", "--peer-cert-file=/p.crt", "--peer-key-file=/p.key", "--peer-client-cert-auth=true")
	results = n.results()
	wantStatus(t, results, "2.4", Pass, "--peer-cert-file=/p.crt, --peer-key-file=/p.key")
	wantStatus(t, results, "2.5", Pass, "--peer-client-cert-auth=true")
}

func TestEtcdHTTPEndpoints(t *testing.T) {
	n := newNode(t, defaultProfile)
	wantStatus(t, n.results(), "2.1", Pass, "--cert-file=")
	n.etcdArgs = append(removeFlag(n.etcdArgs, "listen-client-http-urls"), "--listen-client-http-urls=http://127.0.0.1:2382")
	wantStatus(t, n.results(), "2.1", Fail, "--listen-client-http-urls=http://127.0.0.1:2382: clients connect over plain HTTP")
}

func TestEncryptionProviders(t *testing.T) {
	n := newNode(t, hardenedProfile)
	cfg := filepath.Join(n.dir, "server", "cred", "encryption-config.yaml")
	n.write(cfg, `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [configmaps]
  providers: [{aesgcm: {keys: [{name: k, secret: c2VjcmV0}]}}]
- resources: [secrets]
  providers:
  - identity: {}
  - aescbc: {keys: [{name: k, secret: c2VjcmV0}]}
`, 0o600)
	n.apiArgs = append(n.apiArgs, "--encryption-provider-config="+cfg)
	results := n.results()
	wantStatus(t, results, "1.2.27", Pass, "server/cred/encryption-config.yaml")
	wantStatus(t, results, "1.2.28", Warn, "first provider is identity")
}

func TestAgentOnlyNode(t *testing.T) {
	n := newNode(t, defaultProfile)
	if err := os.RemoveAll(filepath.Join(n.dir, "server")); err != nil {
		t.Fatal(err)
	}
	n.record(false)
	results := n.run()
	for _, r := range results {
		server := strings.HasPrefix(r.ID, "1.") || strings.HasPrefix(r.ID, "2.") || strings.HasPrefix(r.ID, "5.")
		if server && r.Status != Info {
			t.Errorf("%s on an agent-only node: %s %q, want INFO", r.ID, r.Status, r.Found)
		}
		if !server && r.Status == Info && !strings.Contains(r.Found, "not applicable") && r.Found != noKubeletSvc {
			t.Errorf("%s on an agent-only node: INFO %q", r.ID, r.Found)
		}
	}
	wantStatus(t, results, "1.2.15", Info, "kube-apiserver does not run on this host (no server/etc/args/kube-apiserver.json)")
	wantStatus(t, results, "4.2.4", Pass, "readOnlyPort: 0")
	wantStatus(t, results, "4.1.7", Fail, "client-ca.crt 0644")
}

func TestNoRecordedConfiguration(t *testing.T) {
	dir := t.TempDir()
	if _, err := Run(Options{DataDir: dir}); err == nil || !strings.Contains(err.Error(), "no k1s configuration is recorded in "+dir) {
		t.Errorf("empty data dir: %v, want an error naming it", err)
	}
	if _, err := Run(Options{DataDir: filepath.Join(dir, "missing")}); err == nil {
		t.Error("missing data dir: no error")
	}
}

func TestUnreadableRecord(t *testing.T) {
	n := newNode(t, defaultProfile)
	n.record(true)
	n.write(filepath.Join(n.dir, "server", "etc", "args", "kube-scheduler.json"), "--profiling=false", 0o600)
	results := n.run()
	wantStatus(t, results, "1.4.1", Unverified, "kube-scheduler.json is not a JSON array of arguments")
	wantStatus(t, results, "1.1.15", Unverified, "kube-scheduler.json is not a JSON array of arguments")
	wantStatus(t, results, "1.3.2", Pass, "--profiling=false")
}

func TestPrint(t *testing.T) {
	results := []Result{
		{ID: "1.2.15", Title: "Ensure that the --profiling argument is set to false", Automated: true, Status: Pass, Found: "--profiling=false"},
		{ID: "1.2.30", Title: "Ensure that the --service-account-extend-token-expiration parameter is set to false", Automated: true, Status: Fail, Found: "not set"},
		{ID: "1.3.1", Title: "Ensure that the --terminated-pod-gc-threshold argument is set as appropriate", Status: Warn, Found: "not set"},
		{ID: "1.1.1", Title: "Ensure that the API server pod specification file permissions are set to 600 or more restrictive", Automated: true, Status: Info, Found: noManifests},
		{ID: "4.2.4", Title: "Verify that the --read-only-port argument is set to 0", Automated: true, Status: Unverified, Found: "agent/etc/kubelet.conf not found"},
		{ID: "4.2.13", Title: "Ensure that a limit is set on pod PIDs", Status: Unverified, Found: "agent/etc/kubelet.conf not found"},
	}
	var out bytes.Buffer
	// An automated check it cannot verify counts as a failure, a manual one does not.
	if failed := Print(&out, results); failed != 2 {
		t.Errorf("Print returned %d failed, want 2", failed)
	}
	want := "[PASS] 1.2.15 Ensure that the --profiling argument is set to false (automated): --profiling=false\n" +
		"[FAIL] 1.2.30 Ensure that the --service-account-extend-token-expiration parameter is set to false (automated): not set\n" +
		"[WARN] 1.3.1 Ensure that the --terminated-pod-gc-threshold argument is set as appropriate (manual): not set\n" +
		"[INFO] 1.1.1 Ensure that the API server pod specification file permissions are set to 600 or more restrictive (automated): " + noManifests + "\n" +
		"[UNVERIFIED] 4.2.4 Verify that the --read-only-port argument is set to 0 (automated): agent/etc/kubelet.conf not found\n" +
		"[UNVERIFIED] 4.2.13 Ensure that a limit is set on pod PIDs (manual): agent/etc/kubelet.conf not found\n" +
		"1 checks PASS, 1 FAIL, 2 UNVERIFIED, 1 WARN, 1 INFO; 2 checks are manual: their result is for a person to judge\n"
	if out.String() != want {
		t.Errorf("Print wrote\n%s\nwant\n%s", out.String(), want)
	}

	// A whole report: one line per check and the summary.
	all := newNode(t, defaultProfile).results()
	var list []Result
	for _, ch := range checks {
		list = append(list, all[ch.id])
	}
	out.Reset()
	if failed := Print(&out, list); failed != 2 {
		t.Errorf("default profile: %d failed, want 2", failed)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	manualChecks := 0
	for _, ch := range checks {
		if !ch.automated {
			manualChecks++
		}
	}
	if len(lines) != len(checks)+1 || !strings.HasSuffix(lines[len(lines)-1], fmt.Sprintf("2 FAIL, 0 UNVERIFIED, %d WARN, %d INFO; %d checks are manual: their result is for a person to judge", count(list, Warn), count(list, Info), manualChecks)) {
		t.Errorf("report ends %q after %d lines", lines[len(lines)-1], len(lines))
	}
}

func count(results []Result, s Status) int {
	n := 0
	for _, r := range results {
		if r.Status == s {
			n++
		}
	}
	return n
}

// Manual checks never fail, and every check has a finding.
func TestChecksTable(t *testing.T) {
	for _, p := range []profile{defaultProfile, hardenedProfile} {
		for id, r := range newNode(t, p).results() {
			if !r.Automated && r.Status == Fail {
				t.Errorf("manual check %s FAILed", id)
			}
			if r.Found == "" || r.Title == "" {
				t.Errorf("%s: title %q, finding %q", id, r.Title, r.Found)
			}
		}
	}
}

// A check whose input is missing or unreadable is UNVERIFIED, never PASS: the report does not
// assume what it cannot see.
func TestMissingInputIsUnverified(t *testing.T) {
	kubeletChecks := []string{"4.1.7", "4.1.8", "4.2.1", "4.2.2", "4.2.3", "4.2.4", "4.2.6", "4.2.9", "4.2.10", "4.2.11", "4.2.12", "4.2.13", "4.2.14"}

	t.Run("kubelet config file missing", func(t *testing.T) {
		n := newNode(t, hardenedProfile)
		n.kubelet = []string{"--read-only-port=10255"}
		n.record(true)
		if err := os.Remove(filepath.Join(n.dir, "agent", "etc", "kubelet.conf")); err != nil {
			t.Fatal(err)
		}
		results := n.run()
		for _, id := range kubeletChecks {
			if id == "4.2.4" {
				continue
			}
			wantStatus(t, results, id, Unverified, "agent/etc/kubelet.conf not found")
		}
		// A recorded flag wins over the file whatever the file says.
		wantStatus(t, results, "4.2.4", Fail, "--read-only-port=10255 (kubelet argument)")
		wantStatus(t, results, "4.1.9", Unverified, "not found: agent/etc/kubelet.conf")
	})

	t.Run("kubelet command line missing", func(t *testing.T) {
		n := newNode(t, hardenedProfile)
		n.record(true)
		if err := os.Remove(filepath.Join(n.dir, "agent", "etc", "args", "kubelet.json")); err != nil {
			t.Fatal(err)
		}
		results := n.run()
		for _, id := range kubeletChecks {
			wantStatus(t, results, id, Unverified, "agent/etc/args/kubelet.json not found")
		}
		// File checks need only the file.
		wantStatus(t, results, "4.1.9", Pass, "agent/etc/kubelet.conf 0600")
	})

	t.Run("files a check reads", func(t *testing.T) {
		n := newNode(t, hardenedProfile)
		n.record(true)
		for _, f := range []string{"server/tls/etcd/server-ca.crt", "server/etc/admission-config.yaml", "server/cred/encryption-config.json"} {
			if err := os.Remove(filepath.Join(n.dir, f)); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.RemoveAll(filepath.Join(n.dir, "server", "db", "etcd")); err != nil {
			t.Fatal(err)
		}
		results := n.run()
		wantStatus(t, results, "2.7", Unverified, "cannot compare etcd's --trusted-ca-file")
		wantStatus(t, results, "1.2.9", Unverified, "admission-config.yaml")
		wantStatus(t, results, "5.2.1", Unverified, "admission-config.yaml")
		wantStatus(t, results, "1.2.27", Unverified, "encryption-config.json")
		wantStatus(t, results, "1.1.11", Unverified, "not found: server/db/etcd")
		for id, r := range results {
			if r.Status == Pass && strings.Contains(r.Found, "not found") {
				t.Errorf("%s passed without its input: %s", id, r.Found)
			}
		}
	})
}
