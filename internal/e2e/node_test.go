//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The kernel settings the kubelet and the pod network change (field notes §7).
var watchedSysctls = []string{"kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "vm/panic_on_oom",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward"}

func readSysctls(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, k := range watchedSysctls {
		v, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			t.Fatal(err)
		}
		out[k] = strings.TrimSpace(string(v))
	}
	return out
}

// waitNodeReady waits for the node to report Ready and CoreDNS to run.
func (s *process) waitNodeReady(t testing.TB) {
	t.Helper()
	s.waitReady(2 * time.Minute)
	eventually(t, 2*time.Minute, "node Ready", func() error {
		out, err := s.kubectl("get", "nodes", "-o", `jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}`)
		if err != nil || strings.TrimSpace(out) != "True" {
			return fmt.Errorf("node Ready=%q %v", out, err)
		}
		return nil
	})
}

// webManifest's pods meet Pod Security "restricted", so that the same workloads run under
// every profile (--hardened enforces restricted).
const webManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: httpd
        image: k1s.local/busybox:test
        imagePullPolicy: Never
        command: ["sh", "-c", "echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080}]
        securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
        volumeMounts: [{name: www, mountPath: /www}]
      volumes: [{name: www, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: client
    image: k1s.local/busybox:test
    imagePullPolicy: Never
    command: ["sh", "-c", "echo client-started; exec sleep 3600"]
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
`

const volumesManifest = `apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello-configmap}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: s3cret}
---
apiVersion: v1
kind: Pod
metadata: {name: volumes}
spec:
  containers:
  - name: main
    image: k1s.local/busybox:test
    imagePullPolicy: Never
    command: ["sh", "-c", "echo scratch > /scratch/file && exec sleep 3600"]
    resources:
      limits: {memory: 64Mi, cpu: 200m}
    volumeMounts:
    - {name: settings, mountPath: /etc/settings}
    - {name: creds, mountPath: /etc/creds}
    - {name: scratch, mountPath: /scratch}
  volumes:
  - name: settings
    configMap: {name: settings}
  - name: creds
    secret: {secretName: creds}
  - name: scratch
    emptyDir: {}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: job
        image: k1s.local/busybox:test
        imagePullPolicy: Never
        command: ["sh", "-c", "echo job-done"]
`

// lbNodeManifest is a LoadBalancer Service for the web Deployment and a NetworkPolicy that
// selects no pod (enough for the node to queue its pods' connections).
const lbNodeManifest = `apiVersion: v1
kind: Service
metadata: {name: lb-node}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 18090, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: isolate-none}
spec:
  podSelector: {matchLabels: {app: none}}
`

// httpGet fetches / from addr with busybox nc (Debian's busybox wget crashes here) and
// returns the body's last line.
func httpGet(addr string) (string, error) {
	cmd := exec.Command("busybox", "nc", "-w", "5", strings.Split(addr, ":")[0], strings.Split(addr, ":")[1])
	cmd.Stdin = strings.NewReader("GET / HTTP/1.0\r\n\r\n")
	out, err := cmd.CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1]), err
}

// startStopWarnings returns the warning and error lines of a start (up to "k1s is ready") and
// of a stop (from "stopping:") in a k1s log, except those containing one of expected.
func startStopWarnings(lines []string, expected ...string) []string {
	var out []string
	phase := "start"
	for _, l := range lines {
		if phase == "start" && strings.Contains(l, `msg="k1s is ready"`) {
			phase = "running"
		}
		if strings.Contains(l, `msg="stopping: `) {
			phase = "stop"
		}
		if phase == "running" || !(strings.Contains(l, "level=warning") || strings.Contains(l, "level=error")) {
			continue
		}
		wanted := false
		for _, e := range expected {
			wanted = wanted || strings.Contains(l, e)
		}
		if !wanted {
			out = append(out, l)
		}
	}
	return out
}

// TestNode runs real workloads on a one-node cluster and then removes every trace of it.
func TestNode(t *testing.T) {
	before := readSysctls(t)
	dir := t.TempDir()
	good, bad := startTestRegistry(t, dir, "k1s", randomToken(12)), startTestRegistry(t, dir, "k1s", randomToken(12))
	registries := filepath.Join(dir, "registries.yaml")
	if err := os.WriteFile(registries, []byte(registriesYAML(good, bad)), 0o600); err != nil {
		t.Fatal(err)
	}
	c := prepareCluster(t, clusterSpec{Servers: 1, Images: map[string]string{"broken.tar": "this is not an image"},
		ServerArgs: []string{"--private-registry", registries, "--disable-default-registry-endpoint"}})
	s := c.server()
	s.start()
	s.waitNodeReady(t)

	t.Run("corrupt image tarball skipped", func(t *testing.T) {
		found := false
		for _, l := range s.lines() {
			if strings.Contains(l, "skipping image tarball") && strings.Contains(l, "broken.tar") {
				found = true
			}
		}
		if !found {
			t.Errorf("no warning about broken.tar in the log")
		}
		out := s.mustKubectl("get", "nodes", "-o", "jsonpath={.items[0].status.images[*].names}")
		if !strings.Contains(out, "k1s.local/busybox:test") || !strings.Contains(out, "k1s.local/pause") {
			t.Fatalf("the other images were not imported: %s", out)
		}
	})

	t.Run("coredns running", func(t *testing.T) {
		eventually(t, 2*time.Minute, "CoreDNS Ready", func() error {
			out, err := s.kubectl("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o", `jsonpath={.items[*].status.containerStatuses[*].ready}`)
			if err != nil || strings.TrimSpace(out) != "true" {
				return fmt.Errorf("CoreDNS ready=%q %v", out, err)
			}
			return nil
		})
	})

	_, nodeIP, nodePort := checkWorkloads(t, s)

	t.Run("logs exec port-forward", func(t *testing.T) {
		if out := s.mustKubectl("logs", "client"); !strings.Contains(out, "client-started") {
			t.Errorf("logs: %q", out)
		}
		if out := s.mustKubectl("exec", "client", "--", "echo", "exec-works"); strings.TrimSpace(out) != "exec-works" {
			t.Errorf("exec: %q", out)
		}
		// containerd sets the pod's lo up itself (use_internal_loopback); port-forward below
		// dials the pod's localhost too.
		flags := strings.TrimSpace(s.mustKubectl("exec", "client", "--", "cat", "/sys/class/net/lo/flags"))
		if v, err := strconv.ParseUint(strings.TrimPrefix(flags, "0x"), 16, 32); err != nil || v&1 == 0 {
			t.Errorf("the pod's lo is not up: flags %q", flags)
		}
		local := freePort(t)
		pf := exec.Command(*k1sBinary, "kubectl", "--kubeconfig", s.kubeconfig, "port-forward", "deployment/web", fmt.Sprintf("%d:8080", local))
		pf.Env = append(os.Environ(), "KUBECONFIG=")
		if err := pf.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = pf.Process.Kill(); _ = pf.Wait() }()
		eventually(t, 30*time.Second, "port-forward", func() error {
			body, err := httpGet(fmt.Sprintf("127.0.0.1:%d", local))
			if err != nil || !strings.HasPrefix(body, "hello-from-web-") {
				return fmt.Errorf("%q %v", body, err)
			}
			return nil
		})
	})

	checkAirgapChart(t, s)
	checkRegistries(t, c, good, bad)

	s.mustKubectl("apply", "-f", writeTemp(t, "volumes.yaml", volumesManifest))
	t.Run("job completes", func(t *testing.T) {
		s.mustKubectl("wait", "--for=condition=complete", "--timeout=120s", "job/once")
		if out := s.mustKubectl("logs", "job/once"); !strings.Contains(out, "job-done") {
			t.Errorf("job logs: %q", out)
		}
	})

	t.Run("volumes and limits", func(t *testing.T) {
		s.mustKubectl("wait", "--for=condition=Ready", "--timeout=120s", "pod/volumes")
		for file, want := range map[string]string{"/etc/settings/greeting": "hello-configmap", "/etc/creds/password": "s3cret", "/scratch/file": "scratch"} {
			if out := s.mustKubectl("exec", "volumes", "--", "cat", file); strings.TrimSpace(out) != want {
				t.Errorf("%s = %q, want %q", file, out, want)
			}
		}
		out := s.mustKubectl("exec", "volumes", "--", "sh", "-c", "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes")
		if strings.TrimSpace(out) != strconv.Itoa(64<<20) {
			t.Errorf("memory limit in the pod's cgroup = %q, want %d", out, 64<<20)
		}
		out = s.mustKubectl("exec", "volumes", "--", "sh", "-c", "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us")
		if q := strings.Fields(out); len(q) == 0 || q[0] != "20000" {
			t.Errorf("cpu quota in the pod's cgroup = %q, want 20000 (200m)", out)
		}
	})

	t.Run("restart keeps pods running", func(t *testing.T) {
		ids := containerIDs(t, s, "app=web")
		if err, took := s.stop(); err != nil || took > 10*time.Second {
			t.Fatalf("stop: %v after %s", err, took)
		}
		// broken.tar is this test's bad input, and its resolv.conf names only 127.0.0.1 on
		// purpose: the two warnings k1s owes the user here.
		if noisy := startStopWarnings(s.lines(), "skipping image tarball", "names no resolver CoreDNS can forward to"); len(noisy) > 0 {
			t.Errorf("a healthy start and stop printed %d warning or error lines:\n%s", len(noisy), strings.Join(noisy, "\n"))
		}
		// The pods run on without k1s: their shims are separate processes.
		if body, err := httpGet(fmt.Sprintf("%s:%s", nodeIP, nodePort)); err == nil && body != "" {
			t.Logf("served while k1s was down: %s", body)
		}
		s.start()
		s.waitNodeReady(t)
		if after := containerIDs(t, s, "app=web"); after != ids {
			t.Errorf("web containers changed across the restart: %s -> %s", ids, after)
		}
		s.mustKubectl("run", "after-restart", "--image=k1s.local/busybox:test", "--image-pull-policy=Never", "--", "sleep", "3600")
		s.mustKubectl("wait", "--for=condition=Ready", "--timeout=120s", "pod/after-restart")
	})

	t.Run("disabling servicelb and network-policy removes their addresses and rules", func(t *testing.T) {
		s.mustKubectl("apply", "-f", writeTemp(t, "lb-node.yaml", lbNodeManifest))
		rules := func() string {
			out, err := hostCmd("sh", "-c", "iptables-save -t nat; iptables-save -t mangle")
			if err != nil {
				t.Fatalf("iptables-save: %v\n%s", err, out)
			}
			return out
		}
		eventually(t, time.Minute, "the LoadBalancer address and the network policy chain in use", func() error {
			out := s.mustKubectl("get", "service", "lb-node", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}")
			if r := rules(); out != nodeIP || !strings.Contains(r, "default/lb-node loadbalancer IP") || !strings.Contains(r, "-j K1S-NETPOL") {
				return fmt.Errorf("ingress %q, node %s; rules:\n%s", out, nodeIP, r)
			}
			return nil
		})
		if err, _ := s.stop(); err != nil {
			t.Fatalf("stop: %v", err)
		}
		s.args = append(s.args, "--disable", "servicelb", "--disable-network-policy")
		s.start()
		s.waitNodeReady(t)
		eventually(t, time.Minute, "no LoadBalancer address and no network policy rule", func() error {
			out := s.mustKubectl("get", "service", "lb-node", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}")
			if r := rules(); out != "" || strings.Contains(r, "loadbalancer IP") || strings.Contains(r, "K1S-NETPOL") {
				return fmt.Errorf("ingress %q; rules:\n%s", out, r)
			}
			return nil
		})
		eventually(t, time.Minute, "the network-policy add-on's objects removed", func() error {
			out, err := s.kubectl("get", "-n", "kube-system", "clusterrole/k1s:network-policy-node", "addons.k1s.io/network-policy", "-o", "name", "--ignore-not-found")
			if err != nil || strings.TrimSpace(out) != "" {
				return fmt.Errorf("still there: %q %v", out, err)
			}
			return nil
		})
		s.mustKubectl("delete", "service", "lb-node")
		s.mustKubectl("delete", "networkpolicy", "isolate-none")
	})

	t.Run("containerd dying stops k1s", func(t *testing.T) {
		pid := childPID(t, s.cmd.Process.Pid, "containerd")
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			t.Fatal("k1s kept running without containerd")
		}
		lines := s.lines()
		last := lines[len(lines)-1]
		if s.err == nil || !strings.HasPrefix(last, "k1s: containerd") {
			t.Fatalf("exit %v, last line %q", s.err, last)
		}
	})

	t.Run("killall removes everything", func(t *testing.T) {
		out, err := runK1s("killall", "--data-dir", s.dataDir)
		if err != nil {
			t.Fatalf("killall: %v\n%s", err, out)
		}
		select {
		case <-s.exited:
		case <-time.After(20 * time.Second):
			t.Fatal("k1s still runs after killall")
		}
		assertHostClean(t, s.dataDir)
		if after := readSysctls(t); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("kernel settings not restored: before %v, after %v", before, after)
		}
		if _, err := os.Stat(filepath.Join(s.dataDir, "server", "db", "etcd")); err != nil {
			t.Errorf("killall removed the data directory: %v", err)
		}
	})
}

// checkWorkloads runs webManifest and checks what every profile must keep working: the pods
// run, a pod resolves the Service through CoreDNS and reaches it, and the host reaches it
// through its ClusterIP and NodePort. It returns the Service's ClusterIP and NodePort and the
// node's address.
func checkWorkloads(t *testing.T, s *process) (clusterIP, nodeIP, nodePort string) {
	t.Helper()
	s.mustKubectl("apply", "-f", writeTemp(t, "web.yaml", webManifest))
	waitPodsRunning(t, s, "app=web", 2)
	waitPodsRunning(t, s, "", 3)
	clusterIP = s.mustKubectl("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
	nodePort = s.mustKubectl("get", "service", "web", "-o", "jsonpath={.spec.ports[0].nodePort}")
	nodeIP = s.mustKubectl("get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)
	t.Run("pod resolves and reaches the service", func(t *testing.T) {
		eventually(t, time.Minute, "DNS answer", func() error {
			out, err := s.kubectl("exec", "client", "--", "nslookup", "web.default.svc.cluster.local")
			if err != nil || !strings.Contains(out, clusterIP) {
				return fmt.Errorf("nslookup: %v %s", err, out)
			}
			return nil
		})
		eventually(t, time.Minute, "page through the service", func() error {
			out, err := podHTTP(s, "client", "web.default.svc.cluster.local:80", 5)
			if err != nil || !strings.Contains(out, "hello-from-web-") {
				return fmt.Errorf("fetch: %v %s", err, out)
			}
			return nil
		})
	})

	t.Run("host reaches the service", func(t *testing.T) {
		for _, addr := range []string{clusterIP + ":80", nodeIP + ":" + nodePort} {
			eventually(t, time.Minute, "GET "+addr, func() error {
				body, err := httpGet(addr)
				if err != nil || !strings.HasPrefix(body, "hello-from-web-") {
					return fmt.Errorf("%q %v", body, err)
				}
				return nil
			})
		}
	})
	return clusterIP, nodeIP, nodePort
}

// childPID finds the child of parent called name (argv[0]).
func childPID(t testing.TB, parent int, name string) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		fields := procStat(p)
		cmdline, _ := os.ReadFile(p + "/cmdline")
		if len(fields) > 1 && fields[1] == strconv.Itoa(parent) && strings.SplitN(string(cmdline), "\x00", 2)[0] == name {
			pid, _ := strconv.Atoi(filepath.Base(p))
			return pid
		}
	}
	t.Fatalf("no child %q of %d", name, parent)
	return 0
}

// procStat is a process's /proc/PID/stat after its name, from its state on: fields[1] is its
// parent, fields[11] to fields[14] its CPU times. The name may hold spaces, so the fields
// start after its last ')'. Nil when the process is gone.
func procStat(proc string) []string {
	stat, err := os.ReadFile(proc + "/stat")
	if err != nil {
		return nil
	}
	return strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitPodsRunning waits for n Running pods matching selector in the default namespace.
func waitPodsRunning(t *testing.T, s *process, selector string, n int) {
	t.Helper()
	eventually(t, 2*time.Minute, fmt.Sprintf("%d pods %q running", n, selector), func() error {
		args := []string{"get", "pods", "-o", `jsonpath={range .items[*]}{.status.phase}{"\n"}{end}`}
		if selector != "" {
			args = append(args, "-l", selector)
		}
		out, err := s.kubectl(args...)
		if err != nil {
			return err
		}
		if running := strings.Count(out, "Running"); running < n {
			return fmt.Errorf("%d running: %q", running, out)
		}
		return nil
	})
}

func containerIDs(t *testing.T, s *process, selector string) string {
	t.Helper()
	return s.mustKubectl("get", "pods", "-l", selector, "-o", "jsonpath={.items[*].status.containerStatuses[*].containerID}")
}

// assertHostClean checks that nothing of a k1s node is left on this host.
func assertHostClean(t *testing.T, dataDir string) {
	t.Helper()
	self, _ := os.Stat(*k1sBinary)
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		exe, err := os.Readlink(p + "/exe")
		if err != nil {
			continue
		}
		if info, err := os.Stat(exe); err == nil && os.SameFile(info, self) {
			t.Errorf("k1s process %s still runs", filepath.Base(p))
		}
		if strings.HasPrefix(exe, dataDir) {
			t.Errorf("process %s (%s) still runs", filepath.Base(p), exe)
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, dataDir) || strings.Contains(line, "/run/k1s") || strings.Contains(line, "/run/netns/cni-") {
			t.Errorf("mount left: %s", line)
		}
	}
	ifaces, _ := net.Interfaces()
	for _, i := range ifaces {
		if i.Name == "cni0" || strings.HasPrefix(i.Name, "k1s") || strings.HasPrefix(i.Name, "veth") {
			t.Errorf("interface left: %s", i.Name)
		}
	}
	if out, _ := exec.Command("ip", "route", "show", "proto", "75").Output(); len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("routes left: %s", out)
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		out, _ := exec.Command(save).Output()
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if l := sc.Text(); strings.Contains(l, "KUBE-") || strings.Contains(l, "CNI-") || strings.Contains(l, "K1S-") {
				t.Errorf("%s: rule left: %s", save, l)
				break
			}
		}
	}
	links, _ := filepath.Glob("/var/log/containers/*")
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, dataDir) {
			t.Errorf("container log link left: %s", l)
		}
	}
	if states, _ := filepath.Glob("/run/containerd/runc/k8s.io/*"); len(states) > 0 {
		t.Errorf("runc state left: %v", states)
	}
	if results, _ := filepath.Glob("/var/lib/cni/results/k1s-*"); len(results) > 0 {
		t.Errorf("CNI results left: %v", results)
	}
	if cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods*"); len(cgroups) > 0 {
		t.Errorf("pod cgroups left: %v", cgroups)
	}
	if cgroups, _ := filepath.Glob("/sys/fs/cgroup/kubepods*"); len(cgroups) > 0 {
		t.Errorf("pod cgroups left: %v", cgroups)
	}
}

// TestNodeBadInput covers what a host can lack.
func TestNodeBadInput(t *testing.T) {
	t.Run("data dir too long for the kubelet's sockets", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), strings.Repeat("x", 80))
		token := "K10" + strings.Repeat("0", 64) + "::abcdef.0123456789abcdef"
		out, err := runK1s("agent", "--server", "https://127.0.0.1:1", "--token", token, "--data-dir", dir)
		if err == nil || !strings.Contains(out, "is too long") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Fatalf("exit %v:\n%s", err, out)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Error("the data directory was created")
		}
	})

	t.Run("no iptables or nft", func(t *testing.T) {
		s := newServer(t)
		cmd := exec.Command(*k1sBinary, removeArg(s.args, "--disable-agent")...)
		// Nothing on PATH: no iptables, no nft.
		cmd.Env = append(os.Environ(), "PATH="+t.TempDir())
		out, err := cmd.CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		last := lines[len(lines)-1]
		if err == nil || !strings.HasPrefix(last, "k1s: ") || !strings.Contains(last, "neither iptables nor nft") {
			t.Fatalf("exit %v, last line %q", err, last)
		}
	})

	t.Run("no overlayfs", func(t *testing.T) {
		// A data directory on an overlay mount: overlayfs cannot use it as an upper directory.
		base := t.TempDir()
		for _, d := range []string{"lower", "upper", "work", "merged"} {
			if err := os.Mkdir(filepath.Join(base, d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		merged := filepath.Join(base, "merged")
		opts := fmt.Sprintf("lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work", base, base, base)
		if err := syscall.Mount("overlay", merged, "overlay", 0, opts); err != nil {
			t.Fatalf("mounting overlay: %v", err)
		}
		t.Cleanup(func() { _ = syscall.Unmount(merged, syscall.MNT_DETACH) })
		s := prepareCluster(t, clusterSpec{Servers: 1, ServerDir: merged}).server()
		s.start()
		s.waitNodeReady(t)
		found := false
		for _, l := range s.lines() {
			if strings.Contains(l, "native snapshotter") {
				found = true
			}
		}
		if !found {
			t.Fatal("no warning about the native snapshotter")
		}
		s.mustKubectl("run", "native", "--image=k1s.local/busybox:test", "--image-pull-policy=Never", "--", "sleep", "3600")
		s.mustKubectl("wait", "--for=condition=Ready", "--timeout=120s", "pod/native")
	})
}

func removeArg(args []string, arg string) []string {
	var out []string
	for _, a := range args {
		if a != arg {
			out = append(out, a)
		}
	}
	return out
}
