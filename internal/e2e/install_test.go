//go:build e2e

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	distDir    = flag.String("dist", "", "make dist's output: k1s-<arch>, sha256sum-<arch>.txt, install.sh")
	upgradeDir = flag.String("upgrade", "", "a second host build (k1s-<arch>, sha256sum-<arch>.txt) that differs in its version")
)

// distFile returns a file of make dist, skipping nothing: a missing one fails the test.
func distFile(t testing.TB, name string) string {
	t.Helper()
	if *distDir == "" {
		t.Fatal("-dist is required (make test passes it)")
	}
	p := filepath.Join(*distDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s: %v (built by make dist)", p, err)
	}
	return p
}

// releaseDir lays out a download directory as install.sh reads it: <root>/<version>/k1s-<arch>
// and sha256sum-<arch>.txt, from the given build directories.
func releaseDir(t testing.TB, versions map[string]string) string {
	t.Helper()
	root := t.TempDir()
	arch := runtime.GOARCH
	for version, from := range versions {
		dir := filepath.Join(root, version)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"k1s-" + arch, "sha256sum-" + arch + ".txt"} {
			if err := os.Symlink(filepath.Join(from, name), filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Symlink(distFile(t, "install.sh"), filepath.Join(root, "install.sh")); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestArmBinaries runs the arm64 and armv7 release binaries under qemu-user: they name their
// architecture, check the host, and the arm64 one runs a control plane to /readyz.
func TestArmBinaries(t *testing.T) {
	for _, tc := range []struct{ arch, qemu, names string }{
		{"arm64", "qemu-aarch64-static", "linux/arm64"},
		{"arm", "qemu-arm-static", "linux/armv7"},
	} {
		t.Run(tc.arch, func(t *testing.T) {
			bin := distFile(t, "k1s-"+tc.arch)
			qemu, err := exec.LookPath(tc.qemu)
			if err != nil {
				t.Fatalf("%s is missing (apt-get install qemu-user-static): %v", tc.qemu, err)
			}
			if out, err := exec.Command("file", "-b", bin).CombinedOutput(); err == nil {
				t.Logf("%s: %s", filepath.Base(bin), strings.TrimSpace(string(out)))
			}
			out, err := exec.Command(qemu, bin, "--version").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "("+tc.names+",") {
				t.Fatalf("k1s-%s --version: %v\n%s\nwant it to name %s", tc.arch, err, out, tc.names)
			}
			// check-config's exit code is the number of failed checks, each a FAIL line.
			out, err = exec.Command(qemu, bin, "check-config").CombinedOutput()
			failures := 0
			if ee, ok := err.(*exec.ExitError); ok {
				failures = ee.ExitCode()
			} else if err != nil {
				t.Fatalf("check-config: %v\n%s", err, out)
			}
			if got := strings.Count(string(out), "FAIL"); got != failures || !strings.Contains(string(out), "memory") {
				t.Fatalf("check-config under qemu: exit %d, %d FAIL lines:\n%s", failures, got, out)
			}
			t.Logf("check-config under qemu (%d failures):\n%s", failures, out)
			if tc.arch != "arm64" {
				return
			}
			s := newServer(t, "--bind-address", "127.0.0.1")
			s.binary, s.prefix = bin, []string{qemu}
			s.start()
			s.waitReady(5 * time.Minute)
			if v := s.mustKubectl("version", "-o", "json"); !strings.Contains(v, `"platform": "linux/arm64"`) {
				t.Fatalf("the server under qemu does not report linux/arm64:\n%s", v)
			}
			if err, took := s.stop(); err != nil {
				t.Fatalf("stopping the arm64 server: %v (%s)", err, took)
			}
		})
	}
}

// TestInstallScriptRefusals: install.sh refuses what it cannot install, says why, and leaves
// nothing behind.
func TestInstallScriptRefusals(t *testing.T) {
	script := distFile(t, "install.sh")
	fake := t.TempDir()
	// A uname that reports another machine; everything else about the host is real.
	fakeUname := func(machine string) string {
		dir := filepath.Join(fake, machine)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "#!/bin/sh\nif [ \"$1\" = -m ]; then echo " + machine + "; else exec /bin/uname \"$@\"; fi\n"
		if err := os.WriteFile(filepath.Join(dir, "uname"), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	// A host with the memory cgroup disabled, as a Raspberry Pi boots by default: a private
	// mount namespace with /proc/cgroups (or cgroup.controllers) without it, and a device-tree
	// model.
	noMemory := `set -e
mount --make-rprivate /
grep -v '^memory' /proc/cgroups > "$FAKE/cgroups"
mount --bind "$FAKE/cgroups" /proc/cgroups
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	sed 's/memory//' /sys/fs/cgroup/cgroup.controllers > "$FAKE/controllers"
	mount --bind "$FAKE/controllers" /sys/fs/cgroup/cgroup.controllers
fi
mount -t tmpfs k1s-e2e /sys/firmware
mkdir -p /sys/firmware/devicetree/base
printf 'Raspberry Pi 4 Model B Rev 1.5\0' > /sys/firmware/devicetree/base/model
exec sh "$SCRIPT"`
	for _, tc := range []struct {
		name string
		env  []string
		cmd  []string
		want string
	}{
		{"unsupported arch", []string{"PATH=" + fakeUname("mips64") + ":" + os.Getenv("PATH")}, []string{"sh", script},
			"unsupported architecture mips64: k1s is built for x86_64 (amd64), aarch64 (arm64) and armv7 (arm)"},
		{"armv6", []string{"PATH=" + fakeUname("armv6l") + ":" + os.Getenv("PATH")}, []string{"sh", script},
			"needs armv7 or later"},
		{"agent without token", []string{"K1S_URL=https://192.0.2.1:6443"}, []string{"sh", script},
			"an agent needs a join token: set K1S_TOKEN"},
		{"agent with unreadable token file", []string{"K1S_URL=https://192.0.2.1:6443", "K1S_TOKEN_FILE=" + filepath.Join(fake, "none")}, []string{"sh", script},
			"cannot be read"},
		{"memory cgroup off on a Raspberry Pi", []string{"FAKE=" + fake, "SCRIPT=" + script}, []string{"unshare", "--mount", "sh", "-c", noMemory},
			"add 'cgroup_memory=1 cgroup_enable=memory' to the end of the single line in /boot/firmware/cmdline.txt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin, units := t.TempDir(), t.TempDir()
			cmd := exec.Command(tc.cmd[0], tc.cmd[1:]...)
			cmd.Env = append(append(cleanInstallEnv(), "INSTALL_K1S_BIN_DIR="+bin, "INSTALL_K1S_SYSTEMD_DIR="+units,
				"INSTALL_K1S_DOWNLOAD_URL=http://127.0.0.1:1/never"), tc.env...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("install.sh: %v\n%s\nwant a refusal saying %q", err, out, tc.want)
			}
			if lines := nonEmptyLines(string(out)); len(lines) != 1 || !strings.HasPrefix(lines[0], "[k1s] ERROR: ") {
				t.Errorf("want one error line, got:\n%s", out)
			}
			assertEmptyDirs(t, bin, units)
		})
	}
}

// TestInstallScriptOpenRC installs with install.sh where openrc is the init, in a private mount
// namespace with a copy of /etc and stand-ins for openrc's commands (no openrc root boots here):
// the init script it writes parses, names the service's command, and is enabled and started;
// the uninstall script parses. The binary is downloaded and checked as in a real install.
func TestInstallScriptOpenRC(t *testing.T) {
	arch := runtime.GOARCH
	port := serveIn(t, "", releaseDir(t, map[string]string{"current": *distDir}))
	work := t.TempDir()
	stubs := filepath.Join(work, "stubs")
	if err := os.MkdirAll(stubs, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"openrc-run", "rc-update", "rc-service"} {
		body := "#!/bin/sh\necho " + name + " \"$@\" >> " + filepath.Join(work, "calls") + "\n"
		if err := os.WriteFile(filepath.Join(stubs, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin, dataDir := filepath.Join(work, "bin"), filepath.Join(work, "data")
	// Everything install.sh writes under /etc stays in the namespace's copy of /etc. /run/systemd
	// is hidden so that systemd is not taken for the init.
	script := `set -e
mount --make-rprivate /
mkdir "$WORK/etc"
mount -t tmpfs k1s-e2e "$WORK/etc"
cp -a /etc/. "$WORK/etc/"
mount --bind "$WORK/etc" /etc
if [ -d /run/systemd ]; then mount -t tmpfs k1s-e2e /run/systemd; fi
sh "$SCRIPT"
cp /etc/init.d/k1s "$WORK/"
stat -c %a /etc/k1s/k1s.env > "$WORK/env-mode"
sh -c "$CHECK" sh /etc/init.d/k1s > "$WORK/check" 2>&1 || true`
	// What openrc-run does with the script, short of supervising: source it and read it.
	check := `set -e
after() { :; }; want() { :; }
. "$1"
depend
echo "$supervisor|$command|$command_args|$K1S_NODE_NAME"`
	cmd := exec.Command("unshare", "--mount", "sh", "-c", script)
	cmd.Env = append(cleanInstallEnv(), "PATH="+stubs+":"+os.Getenv("PATH"), "WORK="+work, "SCRIPT="+distFile(t, "install.sh"), "CHECK="+check,
		"INSTALL_K1S_BIN_DIR="+bin, fmt.Sprintf("INSTALL_K1S_DOWNLOAD_URL=http://127.0.0.1:%d", port), "INSTALL_K1S_VERSION=current",
		"INSTALL_K1S_EXEC=server --data-dir "+dataDir, "K1S_NODE_NAME=openrc-test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install.sh with openrc: %v\n%s", err, out)
	}
	if got, want := hashFile(t, filepath.Join(bin, "k1s")), hashFile(t, distFile(t, "k1s-"+arch)); got != want {
		t.Fatalf("installed k1s differs from dist/k1s-%s", arch)
	}
	calls, _ := os.ReadFile(filepath.Join(work, "calls"))
	if !strings.Contains(string(calls), "rc-update add k1s default") || !strings.Contains(string(calls), "rc-service k1s restart") {
		t.Fatalf("the service was not enabled and started; openrc commands run:\n%s", calls)
	}
	if mode, _ := os.ReadFile(filepath.Join(work, "env-mode")); strings.TrimSpace(string(mode)) != "600" {
		t.Errorf("the environment file has mode %s, want 600", mode)
	}
	out, _ := os.ReadFile(filepath.Join(work, "check"))
	want := "supervise-daemon|" + bin + "/k1s|server --data-dir " + dataDir + "|openrc-test"
	if strings.TrimSpace(string(out)) != want {
		initScript, _ := os.ReadFile(filepath.Join(work, "k1s"))
		t.Fatalf("the openrc script, sourced as openrc-run does, gives\n%s\nwant %q; script:\n%s", out, want, initScript)
	}
	if out, err := exec.Command("sh", "-n", filepath.Join(bin, "k1s-uninstall.sh")).CombinedOutput(); err != nil {
		t.Fatalf("k1s-uninstall.sh does not parse: %v\n%s", err, out)
	}
	// It asks the installed k1s, with the service's --data-dir, what to stop and remove.
	if u, _ := os.ReadFile(filepath.Join(bin, "k1s-uninstall.sh")); !strings.Contains(string(u), "killall --print-paths") ||
		!strings.Contains(string(u), "--data-dir '"+dataDir+"'") || !strings.Contains(string(u), "killall --data-dir") {
		t.Fatalf("k1s-uninstall.sh does not ask k1s about, and stop, the node of %s:\n%s", dataDir, u)
	}
}

func hashFile(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// cleanInstallEnv is the test's environment without any K1S_* or INSTALL_K1S_* variable.
func cleanInstallEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "K1S_") && !strings.HasPrefix(kv, "INSTALL_K1S_") {
			env = append(env, kv)
		}
	}
	return env
}

func assertEmptyDirs(t testing.TB, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			t.Errorf("install.sh refused but left %s", filepath.Join(d, e.Name()))
		}
	}
}

// TestInstallSystemd installs k1s with `curl | sh` on a booted Debian with systemd: a server,
// a refused download, a no-op re-run, an upgrade keeping the pod, an agent joining, and the
// uninstall scripts leaving nothing of k1s in either machine.
func TestInstallSystemd(t *testing.T) {
	arch := runtime.GOARCH
	if *upgradeDir == "" {
		t.Fatal("-upgrade is required (make test passes it)")
	}
	network := newTestNetwork(t)
	srv := bootMachine(t, network, "srv")
	agt := bootMachine(t, network, "agt")

	// A release directory with a damaged checksum, the current build and the upgrade.
	releases := releaseDir(t, map[string]string{"current": *distDir, "upgrade": *upgradeDir})
	bad := filepath.Join(releases, "damaged")
	if err := os.MkdirAll(bad, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(distFile(t, "k1s-"+arch), filepath.Join(bad, "k1s-"+arch)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bad, "sha256sum-"+arch+".txt"), []byte(strings.Repeat("0", 64)+"  k1s-"+arch+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	busybox := network.testImage()

	// The node's images, put where the install will find them.
	for _, m := range []*machine{srv, agt} {
		images := filepath.Join(m.root, "var/lib/k1s/agent/images")
		if err := os.MkdirAll(images, 0o700); err != nil {
			t.Fatal(err)
		}
		copyFile(t, busybox, filepath.Join(images, "busybox.tar"))
	}
	before := map[*machine][]string{srv: srv.files(), agt: agt.files()}
	srvPort := serveIn(t, srv.node.netns, releases)

	// A damaged download is refused before anything is installed.
	out, err := srv.install(srvPort, "damaged", nil, "server", "--node-ip", srv.node.ip)
	if err == nil || !strings.Contains(out, "does not match its checksum") {
		t.Fatalf("install with a damaged checksum: %v\n%s", err, out)
	}
	if left := diffFiles(before[srv], srv.files()); len(left) > 0 {
		t.Fatalf("a refused install left files: %v", left)
	}

	begin := time.Now()
	out, err = srv.install(srvPort, "current", nil, "server", "--node-ip", srv.node.ip)
	if err != nil {
		t.Fatalf("installing the server: %v\n%s\n%s", err, out, srv.journal("k1s"))
	}
	t.Logf("curl | sh to an active server in %s:\n%s", time.Since(begin).Round(100*time.Millisecond), out)
	srv.assertService(t, "k1s")
	if mode := srv.mustExec("stat", "-c", "%a", "/etc/systemd/system/k1s.service.env"); strings.TrimSpace(mode) != "600" {
		t.Errorf("the environment file has mode %s, want 600", mode)
	}
	srv.waitNodeReady(t, "srv")
	srv.mustExec("kubectl", "run", "keep", "--image=k1s.local/busybox:test", "--image-pull-policy=Never",
		"--restart=Never", "--", "sleep", "3600")
	srv.waitPod(t, "keep")
	container := srv.mustExec("kubectl", "get", "pod", "keep", "-o", "jsonpath={.status.containerStatuses[0].containerID}")
	pid := srv.mainPID(t, "k1s")

	// The same version again: nothing changed, so no restart.
	if out, err := srv.install(srvPort, "current", nil, "server", "--node-ip", srv.node.ip); err != nil ||
		!strings.Contains(out, "already this version") {
		t.Fatalf("re-running the same install: %v\n%s", err, out)
	}
	if again := srv.mainPID(t, "k1s"); again != pid {
		t.Fatalf("re-running the same install restarted k1s (PID %d, then %d)", pid, again)
	}

	// The upgrade: new binary, restarted service, the same pod and container.
	if out, err := srv.install(srvPort, "upgrade", nil, "server", "--node-ip", srv.node.ip); err != nil {
		t.Fatalf("upgrading: %v\n%s\n%s", err, out, srv.journal("k1s"))
	}
	if v := srv.mustExec("k1s", "--version"); !strings.Contains(v, "-upgrade") {
		t.Fatalf("after the upgrade, k1s --version says:\n%s", v)
	}
	if again := srv.mainPID(t, "k1s"); again == pid {
		t.Fatalf("the upgrade did not restart k1s (PID %d)", pid)
	}
	srv.assertService(t, "k1s")
	srv.waitNodeReady(t, "srv")
	srv.waitPod(t, "keep")
	if after := srv.mustExec("kubectl", "get", "pod", "keep", "-o", "jsonpath={.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}"); after != container+" 0" {
		t.Fatalf("the pod's container changed across the upgrade: %q, then %q", container, after)
	}

	// An agent, with the token from the server.
	token := joinTokenPattern.FindString(srv.mustExec("cat", "/var/lib/k1s/server/node-token"))
	if token == "" {
		t.Fatal("the server's node-token holds no join token")
	}
	agtPort := serveIn(t, agt.node.netns, releases)
	env := []string{"K1S_URL=https://" + srv.node.ip + ":6443", "K1S_TOKEN=" + token}
	if out, err := agt.install(agtPort, "current", env, "--node-ip", agt.node.ip); err != nil {
		t.Fatalf("installing the agent: %v\n%s\n%s", err, out, agt.journal("k1s-agent"))
	}
	agt.assertService(t, "k1s-agent")
	srv.waitNodeReady(t, "agt")
	if envFile := agt.mustExec("cat", "/etc/systemd/system/k1s-agent.service.env"); !strings.Contains(envFile, `K1S_TOKEN="`+token+`"`) {
		t.Errorf("the agent's environment file lacks the token:\n%s", envFile)
	}

	// Uninstall: nothing of k1s is left in either machine.
	for _, u := range []struct {
		m             *machine
		script, units string
	}{{agt, "k1s-agent-uninstall.sh", "k1s-agent"}, {srv, "k1s-uninstall.sh", "k1s"}} {
		if out, err := u.m.execEnv(3*time.Minute, nil, "/usr/local/bin/"+u.script); err != nil {
			t.Fatalf("%s: %v\n%s", u.script, err, out)
		}
		for _, l := range u.m.leftovers(before[u.m]) {
			t.Errorf("machine %s after %s: %s", u.m.name, u.script, l)
		}
		if out, _ := u.m.exec("systemctl", "list-unit-files", u.units+".service"); !strings.Contains(out, "0 unit files") {
			t.Errorf("machine %s: the unit is still known:\n%s", u.m.name, out)
		}
	}
}

// install runs `curl -sfL http://127.0.0.1:PORT/install.sh | sh -s - ARGS` in the machine, with
// the release <version> of the directory served on PORT (see releaseDir).
func (m *machine) install(port int, version string, env []string, args ...string) (string, error) {
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	pipe := fmt.Sprintf("curl -sfL %s/install.sh | sh -s - %s", base, strings.Join(args, " "))
	env = append([]string{"INSTALL_K1S_DOWNLOAD_URL=" + base, "INSTALL_K1S_VERSION=" + version}, env...)
	return m.execEnv(5*time.Minute, env, "sh", "-c", pipe)
}

// files lists the machine's files, but for the ones systemd and the package system change on
// their own, as paths relative to its root.
func (m *machine) files() []string {
	out, err := m.exec("find", "/", "-xdev", "(", "-path", "/proc", "-o", "-path", "/sys", "-o", "-path", "/dev",
		"-o", "-path", "/tmp", "-o", "-path", "/var/tmp", "-o", "-path", "/var/log/journal", "-o", "-path", "/var/lib/systemd",
		"-o", "-path", "/var/cache", "-o", "-path", "/root", ")", "-prune", "-o", "-print")
	if err != nil {
		m.t.Fatalf("listing files of machine %s: %v\n%s", m.name, err, out)
	}
	// /run is a tmpfs of its own.
	run, _ := m.exec("find", "/run", "-xdev", "-path", "/run/systemd", "-prune", "-o", "-print")
	return append(nonEmptyLines(out), nonEmptyLines(run)...)
}

func diffFiles(before, after []string) []string {
	had := make(map[string]bool, len(before))
	for _, f := range before {
		had[f] = true
	}
	var added []string
	for _, f := range after {
		if !had[f] {
			added = append(added, f)
		}
	}
	return added
}

// leftovers lists what of k1s is in the machine: files that were not there before, processes
// other than systemd's and the shell's, mounts of a node, interfaces, routes and firewall rules,
// and the pods' cgroups.
func (m *machine) leftovers(before []string) []string {
	var left []string
	for _, f := range diffFiles(before, m.files()) {
		left = append(left, "file "+f)
	}
	ps, _ := m.exec("ps", "-e", "-o", "comm=")
	for _, p := range nonEmptyLines(ps) {
		switch p = strings.TrimSpace(p); {
		case strings.HasPrefix(p, "systemd"), p == "dbus-daemon", p == "agetty", p == "ps", p == "env", p == "(sd-pam)":
			// the machine's own, and this ps
		default:
			left = append(left, "process "+p)
		}
	}
	mounts, _ := m.exec("cat", "/proc/self/mountinfo")
	for _, mt := range parseMounts(mounts) {
		for _, prefix := range []string{"/var/lib/k1s", "/run/k1s", "/var/lib/kubelet", "/run/netns/", "/run/containerd"} {
			if strings.HasPrefix(mt.point, prefix) {
				left = append(left, "mount "+mt.point)
			}
		}
	}
	left = append(left, netLeftovers(m.exec, func(iface string) bool { return iface != "lo" && iface != "eth0" })...)
	routes, _ := m.exec("ip", "route", "show")
	for _, l := range nonEmptyLines(routes) {
		if !strings.Contains(l, "dev eth0") {
			left = append(left, "route "+l)
		}
	}
	cgroups, _ := m.exec("find", "/sys/fs/cgroup", "-name", "kubepods*", "-o", "-name", "k1s*")
	for _, l := range nonEmptyLines(cgroups) {
		left = append(left, "cgroup "+l)
	}
	return left
}

// assertService checks that unit is active, of Type=notify, and got there by k1s's READY=1.
func (m *machine) assertService(t testing.TB, unit string) {
	t.Helper()
	out := m.mustExec("systemctl", "show", "-p", "ActiveState,SubState,Type,NotifyAccess,KillMode,Delegate", unit)
	for _, want := range []string{"ActiveState=active", "SubState=running", "Type=notify", "KillMode=process", "Delegate=yes"} {
		if !strings.Contains(out, want) {
			t.Fatalf("%s is not %s:\n%s\n%s", unit, want, out, m.journal(unit))
		}
	}
	if j := m.journal(unit); !strings.Contains(j, "k1s is ready") {
		t.Fatalf("%s is active but its log has no 'k1s is ready':\n%s", unit, j)
	}
}

func (m *machine) journal(unit string) string {
	out, _ := m.exec("journalctl", "-u", unit, "--no-pager", "-n", "80")
	return out
}

func (m *machine) mainPID(t testing.TB, unit string) int {
	t.Helper()
	out := m.mustExec("systemctl", "show", "-p", "MainPID", "--value", unit)
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || pid == 0 {
		t.Fatalf("%s has no main PID: %q", unit, out)
	}
	return pid
}

var readyCondition = regexp.MustCompile(`Ready=True`)

func (m *machine) waitNodeReady(t testing.TB, node string) {
	t.Helper()
	eventually(t, 3*time.Minute, "node "+node+" Ready", func() error {
		out, err := m.exec("kubectl", "get", "node", node, "-o", `jsonpath={range .status.conditions[*]}{.type}={.status} {end}`)
		if err != nil || !readyCondition.MatchString(out) {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

func (m *machine) waitPod(t testing.TB, pod string) {
	t.Helper()
	eventually(t, 2*time.Minute, "pod "+pod+" running", func() error {
		out, err := m.exec("kubectl", "get", "pod", pod, "-o", "jsonpath={.status.phase}")
		if err != nil || out != "Running" {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}
