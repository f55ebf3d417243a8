//go:build e2e

package e2e

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/k1s-io/k1s/internal/layout"
)

func TestVersion(t *testing.T) {
	out, err := runK1s("--version")
	if err != nil {
		t.Fatalf("k1s --version: %v\n%s", err, out)
	}
	for _, want := range []string{"k1s version", "kubernetes v1.37.2", "etcd 3.7.", "containerd v2."} {
		if !strings.Contains(out, want) {
			t.Errorf("k1s --version lacks %q:\n%s", want, out)
		}
	}
	link := filepath.Join(filepath.Dir(*k1sBinary), "kubectl")
	kubectlOut, err := exec.Command(link, "version", "--client", "-o", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version --client: %v\n%s", link, err, kubectlOut)
	}
	if !strings.Contains(string(kubectlOut), `"gitVersion": "v1.37.2"`) {
		t.Errorf("kubectl link reports the wrong version:\n%s", kubectlOut)
	}
}

// TestControlPlane starts a control plane without a node and checks that each component does
// its job, through the API only.
func TestControlPlane(t *testing.T) {
	s := newServer(t)
	s.start()
	s.waitReady(2 * time.Minute)

	t.Run("quiet start", func(t *testing.T) {
		var startLines []string
		for _, l := range s.lines() {
			startLines = append(startLines, l)
			if strings.Contains(l, "k1s is ready") {
				break
			}
		}
		if len(startLines) > 40 {
			t.Errorf("a healthy start printed %d lines, more than 40:\n%s", len(startLines), strings.Join(startLines, "\n"))
		}
	})

	t.Run("files", func(t *testing.T) {
		info, err := os.Stat(s.kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("admin kubeconfig mode %v, want 0600", info.Mode().Perm())
		}
		keys, _ := filepath.Glob(filepath.Join(s.dataDir, "server", "tls", "*.key"))
		if len(keys) < 5 {
			t.Fatalf("only %d keys in server/tls", len(keys))
		}
		for _, k := range keys {
			if info, err := os.Stat(k); err != nil || info.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v (%v), want 0600", k, info.Mode().Perm(), err)
			}
		}
	})

	// k1s's hook writes the built-in policy in place of upstream's two hooks.
	t.Run("built-in policy", func(t *testing.T) {
		out, err := s.kubectl("get", "--raw", "/readyz?verbose")
		if err != nil || !strings.Contains(out, "[+]poststarthook/k1s/bootstrap-policy ok") ||
			strings.Contains(out, "rbac/bootstrap-roles") || strings.Contains(out, "bootstrap-system-priority-classes") {
			t.Fatalf("/readyz?verbose (%v):\n%s", err, out)
		}
		for _, obj := range [][]string{{"clusterrole", "system:kube-controller-manager"}, {"clusterrolebinding", "system:node-proxier"},
			{"role", "-n", "kube-system", "system:controller:bootstrap-signer"}, {"priorityclass", "system-node-critical"}} {
			if out, err := s.kubectl(append([]string{"get", "-o", "name"}, obj...)...); err != nil {
				t.Errorf("%v: %v %s", obj, err, out)
			}
		}
	})

	// The controller-manager and the scheduler serve certificates of the server CA: kubectl,
	// where the server runs, verifies them.
	t.Run("component serving certificates", func(t *testing.T) {
		ca := filepath.Join(s.dataDir, "server", "tls", "server-ca.crt")
		for flag, port := range map[string]int{"--kube-controller-manager-arg": layout.ControllerManagerPort, "--kube-scheduler-arg": layout.SchedulerPort} {
			port := cmp.Or(componentArg(s.args, flag, "secure-port"), strconv.Itoa(port))
			out, err := s.kubectl("--server", "https://127.0.0.1:"+port, "--certificate-authority", ca,
				"get", "--raw", "/healthz")
			if err != nil || strings.TrimSpace(out) != "ok" {
				t.Errorf("%s secure-port=%s: %v %s", flag, port, err, out)
			}
		}
	})

	t.Run("version", func(t *testing.T) {
		out := s.mustKubectl("get", "--raw", "/version")
		var v struct{ GitVersion string }
		if err := json.Unmarshal([]byte(out), &v); err != nil || v.GitVersion != "v1.37.2" {
			t.Fatalf("/version = %s (%v)", out, err)
		}
	})

	t.Run("deployment pending without nodes", func(t *testing.T) {
		s.mustKubectl("create", "namespace", "e2e")
		s.mustKubectl("-n", "e2e", "create", "deployment", "web", "--image=k1s.local/none:1", "--replicas=2")
		// The controller-manager turns the Deployment into a ReplicaSet and Pods.
		eventually(t, time.Minute, "ReplicaSet and 2 Pods", func() error {
			out, err := s.kubectl("-n", "e2e", "get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.status.phase}{\"\\n\"}{end}")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if phases := strings.Fields(out); len(phases) != 2 || phases[0] != "Pending" || phases[1] != "Pending" {
				return fmt.Errorf("pod phases %q", phases)
			}
			return nil
		})
		if out := s.mustKubectl("-n", "e2e", "get", "replicasets", "-l", "app=web", "-o", "name"); !strings.Contains(out, "replicaset.apps/web-") {
			t.Fatalf("no ReplicaSet: %q", out)
		}
		// The scheduler saw them and could not place them: there are no nodes.
		eventually(t, time.Minute, "FailedScheduling event", func() error {
			out, err := s.kubectl("-n", "e2e", "get", "events", "--field-selector", "reason=FailedScheduling", "-o", "jsonpath={.items[*].message}")
			if err != nil || !strings.Contains(out, "no nodes available to schedule pods") {
				return fmt.Errorf("events: %q %v", out, err)
			}
			return nil
		})
	})

	t.Run("service account token", func(t *testing.T) {
		s.mustKubectl("-n", "e2e", "create", "serviceaccount", "robot")
		token := strings.TrimSpace(s.mustKubectl("-n", "e2e", "create", "token", "robot"))
		if strings.Count(token, ".") != 2 {
			t.Fatalf("TokenRequest gave %q, not a JWT", token)
		}
		// The token, and nothing else, authenticates as the service account.
		out, err := runK1s("kubectl", "--kubeconfig", os.DevNull,
			"--server", fmt.Sprintf("https://127.0.0.1:%d", s.port),
			"--certificate-authority", filepath.Join(s.dataDir, "server", "tls", "server-ca.crt"),
			"--token", token, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
		if err != nil || out != "system:serviceaccount:e2e:robot" {
			t.Fatalf("token authenticates as %q (%v)", out, err)
		}
	})

	checkManifestsDir(t, s)
	checkHelmCharts(t, s)

	t.Run("second server on the same data directory", func(t *testing.T) {
		lock := filepath.Join(s.dataDir, "k1s.lock")
		before, _ := os.ReadFile(lock)
		second := &process{t: t, args: s.args, kubeconfig: s.kubeconfig}
		second.start()
		select {
		case <-second.exited:
		case <-time.After(30 * time.Second):
			t.Fatal("a second k1s server on the same data directory kept running")
		}
		lines := second.lines()
		if second.err == nil || len(lines) == 0 || !strings.Contains(lines[len(lines)-1], "already running") {
			t.Fatalf("second server: exit %v, output:\n%s", second.err, strings.Join(lines, "\n"))
		}
		if after, _ := os.ReadFile(lock); string(after) != string(before) {
			t.Errorf("the second server changed the lock file: %q -> %q", before, after)
		}
		if out, err := s.kubectl("get", "--raw", "/readyz"); err != nil || strings.TrimSpace(out) != "ok" {
			t.Fatalf("first server no longer ready: %v %s", err, out)
		}
	})

	t.Run("survives restart", func(t *testing.T) {
		err, took := s.stop()
		if err != nil {
			t.Fatalf("k1s server did not exit cleanly on SIGTERM: %v\n%s", err, strings.Join(s.lines(), "\n"))
		}
		if took > 10*time.Second {
			t.Errorf("stopping took %s, more than 10 s", took)
		}
		assertNoProcessUses(t, s.dataDir)
		// A manifest deleted while k1s is down takes its objects with it at the next start.
		s.removeManifest(t, "after-broken.yaml")
		s.start()
		s.waitReady(2 * time.Minute)
		eventually(t, 30*time.Second, "the objects of a manifest deleted while stopped removed", func() error {
			out, err := s.kubectl("-n", "kube-system", "get", "configmap/after-broken", "addons.k1s.io/after-broken", "-o", "name", "--ignore-not-found")
			if err != nil || strings.TrimSpace(out) != "" {
				return fmt.Errorf("still there: %q %v", out, err)
			}
			return nil
		})
		if out := s.mustKubectl("-n", "e2e", "get", "deployment", "web", "-o", "jsonpath={.spec.replicas}"); out != "2" {
			t.Fatalf("deployment after restart: %q", out)
		}
		s.mustKubectl("-n", "e2e", "get", "serviceaccount", "robot")
		s.mustKubectl("-n", "kube-system", "get", "deployment", "coredns")
		if err, _ := s.stop(); err != nil {
			t.Fatalf("second stop: %v", err)
		}
		assertNoProcessUses(t, s.dataDir)
	})

	t.Run("disable packaged add-ons removes them", func(t *testing.T) {
		// Present before: the metrics API answers (its lease holder serves it without a node).
		s.start()
		s.waitReady(2 * time.Minute)
		eventually(t, time.Minute, "the metrics API available", func() error {
			out, err := s.kubectl("get", "apiservice", "v1beta1.metrics.k8s.io", "-o", `jsonpath={.status.conditions[?(@.type=="Available")].status}`)
			if err != nil || out != "True" {
				return fmt.Errorf("Available=%q %v", out, err)
			}
			return nil
		})
		s.mustKubectl("get", "storageclass", "local-path")
		if err, _ := s.stop(); err != nil {
			t.Fatalf("stop: %v", err)
		}
		s.args = append(s.args, "--disable", "coredns", "--disable", "local-storage", "--disable", "metrics-server", "--disable", "servicelb", "--disable-network-policy")
		s.start()
		s.waitReady(2 * time.Minute)
		// Each add-on's objects, kubectl names for them.
		removed := []string{"deployment/coredns", "service/kube-dns", "configmap/coredns", "addons.k1s.io/coredns",
			"storageclass/local-path", "clusterrole/k1s:local-storage-node", "validatingadmissionpolicy/k1s-local-storage-node",
			"addons.k1s.io/local-storage", "apiservice/v1beta1.metrics.k8s.io", "service/metrics-server",
			"clusterrole/system:metrics-server", "addons.k1s.io/metrics-server", "clusterrole/k1s:network-policy-node",
			"addons.k1s.io/network-policy"}
		eventually(t, time.Minute, "CoreDNS, local storage and metrics-server removed", func() error {
			out, err := s.kubectl(append([]string{"-n", "kube-system", "get", "-o", "name", "--ignore-not-found"}, removed...)...)
			if err != nil || strings.TrimSpace(out) != "" {
				return fmt.Errorf("still there: %q %v", out, err)
			}
			return nil
		})
		if err, _ := s.stop(); err != nil {
			t.Fatalf("stop: %v", err)
		}
		// It stays removed: the next start with --disable does not bring it back, even for a
		// moment (the deployer has read the directory, so it has dealt with packaged add-ons).
		// That start also runs without the Helm controller: a HelmChart stays uninstalled.
		s.args = append(s.args, "--disable-helm-controller")
		s.start()
		s.waitReady(2 * time.Minute)
		marker := markerManifest("disabled-restart")
		s.writeManifest(t, "disabled-restart.yaml", marker)
		s.waitManifestApplied(t, "disabled-restart", marker)
		s.absent(t, append([]string{"-n", "kube-system"}, removed...)...)
		chart := helmChartManifest("unmanaged", "default", "  chartContent: "+base64.StdEncoding.EncodeToString(settingsChart(t, "unmanaged"))+"\n")
		s.writeManifest(t, "unmanaged.yaml", chart)
		s.waitManifestApplied(t, "unmanaged", chart)
		time.Sleep(3 * time.Second) // what an install takes here, were it to happen
		if out := s.mustKubectl("get", "helmcharts.helm.cattle.io", "unmanaged", "-o", "jsonpath={.status.releaseStatus}{.metadata.finalizers}"); out != "" {
			t.Errorf("with --disable-helm-controller a HelmChart was handled: %q", out)
		}
		s.absent(t, "configmap/unmanaged-settings")
		if err, _ := s.stop(); err != nil {
			t.Fatalf("stop: %v", err)
		}
	})
}

// assertNoProcessUses fails if any process still has a file open under dir.
func assertNoProcessUses(t *testing.T, dir string) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		fds, _ := filepath.Glob(p + "/fd/*")
		for _, fd := range fds {
			if target, err := os.Readlink(fd); err == nil && strings.HasPrefix(target, dir) {
				cmdline, _ := os.ReadFile(p + "/cmdline")
				t.Errorf("process %s (%s) still holds %s", filepath.Base(p), strings.ReplaceAll(string(cmdline), "\x00", " "), target)
				break
			}
		}
	}
}

// TestBadInput checks that each mistake a user can make ends k1s at once with one line that
// names it, and leaves nothing half-written.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	writeFile := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	busy, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	readOnly := filepath.Join(dir, "ro")
	if err := os.Mkdir(readOnly, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", readOnly, "tmpfs", syscall.MS_RDONLY, "size=1m"); err != nil {
		t.Fatalf("mounting a read-only tmpfs: %v", err)
	}
	defer syscall.Unmount(readOnly, 0)

	cases := []struct {
		name string
		args []string
		want string
		// writes says whether the data directory may exist afterwards (it is created and
		// locked before ports are checked), though never with certificates in it.
		writes bool
	}{
		{"port in use", []string{"--https-listen-port", busy.port}, "already in use", true},
		{"data dir not writable", []string{"--data-dir", filepath.Join(readOnly, "k1s")}, "--data-dir", false},
		{"malformed config", []string{"--config", writeFile("bad.yaml", "data-dir: [\n")}, "is malformed", false},
		{"unknown config key", []string{"--config", writeFile("typo.yaml", "clustr-cidr: 10.9.0.0/16\n")}, `unknown key "clustr-cidr"`, false},
		{"invalid cluster CIDR", []string{"--cluster-cidr", "10.42.0.0/33"}, "--cluster-cidr", false},
		{"invalid service CIDR", []string{"--service-cidr", "banana"}, "--service-cidr", false},
		{"overlapping CIDRs", []string{"--cluster-cidr", "10.0.0.0/8", "--service-cidr", "10.43.0.0/16"}, "overlap", false},
		{"bad tls-san", []string{"--tls-san", "not a name!"}, "--tls-san", false},
		{"node IP inside the cluster CIDR", []string{"--node-ip", "10.42.0.5"}, "inside --cluster-cidr", false},
		{"unknown apiserver flag", []string{"--kube-apiserver-arg", "no-such-flag=1"}, "unknown flag", false},
		{"unknown k1s flag", []string{"--no-such-flag"}, "no-such-flag", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, tc.args...)
			s.start()
			select {
			case <-s.exited:
			case <-time.After(time.Minute):
				t.Fatalf("k1s kept running:\n%s", strings.Join(s.lines(), "\n"))
			}
			lines := s.lines()
			if s.err == nil {
				t.Fatalf("k1s exited 0:\n%s", strings.Join(lines, "\n"))
			}
			if len(lines) == 0 {
				t.Fatal("k1s printed nothing")
			}
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "k1s: ") || !strings.Contains(last, tc.want) {
				t.Errorf("last line %q does not name the problem (%q)", last, tc.want)
			}
			for _, l := range lines {
				if strings.Contains(l, "goroutine ") || strings.Contains(l, "panic") {
					t.Errorf("k1s printed a trace:\n%s", strings.Join(lines, "\n"))
					break
				}
			}
			if tc.writes {
				if _, err := os.Stat(filepath.Join(s.dataDir, "server", "tls")); err == nil {
					t.Error("certificates were written before the port check failed")
				}
			} else if _, err := os.Stat(s.dataDir); err == nil {
				t.Errorf("data directory %s was created", s.dataDir)
			}
			if _, err := os.Stat(s.kubeconfig); err == nil {
				t.Error("a kubeconfig was written")
			}
		})
	}
}

// TestKillallRefusesForeignDirectory: killall acts only on a k1s data directory (one with the
// lock file k1s writes) and touches nothing elsewhere.
func TestKillallRefusesForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "mnt")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mounting a tmpfs: %v", err)
	}
	defer syscall.Unmount(sub, syscall.MNT_DETACH)
	if err := os.WriteFile(filepath.Join(sub, "keep"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runK1s("killall", "--data-dir", dir)
	if err == nil || !strings.Contains(out, "is not a k1s data directory") {
		t.Fatalf("killall on a foreign directory: %v\n%s", err, out)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 {
		t.Errorf("killall printed more than its one-line refusal:\n%s", out)
	}
	if data, err := os.ReadFile(filepath.Join(sub, "keep")); err != nil || string(data) != "data" {
		t.Errorf("the mount under the directory was touched: %q %v", data, err)
	}
}

// componentArg is the value of an upstream component's flag in a k1s command line
// ("--kube-scheduler-arg", "secure-port"), "" if it is not there.
func componentArg(args []string, flag, name string) string {
	for i := 0; i+1 < len(args); i++ {
		if v, ok := strings.CutPrefix(args[i+1], name+"="); args[i] == flag && ok {
			return v
		}
	}
	return ""
}
