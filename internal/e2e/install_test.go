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
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	distDir    = flag.String("dist", "", "make dist's output: k1s-<arch>, sha256sum-<arch>.txt, install.sh")
	upgradeDir = flag.String("upgrade", "", "a second host build (k1s-<arch>, sha256sum-<arch>.txt) that differs in its version")
	// make test builds one cross release (and type-checks the other); make test-release
	// builds and tests both.
	armReleases = flag.String("arm-releases", "arm64,arm", "the arm releases in -dist that TestArmBinaries runs (arm64, arm)")
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

// TestArmBinaries runs the arm64 and armv7 release binaries (those -arm-releases names) under
// qemu-user: they name their architecture, check the host, and run a control plane to /readyz
// (on armv7: etcd and the apiserver on a 32-bit address space).
func TestArmBinaries(t *testing.T) {
	releases := strings.Split(*armReleases, ",")
	for _, arch := range releases {
		if arch != "arm64" && arch != "arm" {
			t.Fatalf("-arm-releases %q: want arm64, arm or both", *armReleases)
		}
	}
	for _, tc := range []struct{ arch, qemu, names, platform string }{
		{"arm64", "qemu-aarch64-static", "linux/arm64", "linux/arm64"},
		{"arm", "qemu-arm-static", "linux/armv7", "linux/arm"},
	} {
		if !slices.Contains(releases, tc.arch) {
			continue
		}
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
			s := newServer(t, "--bind-address", "127.0.0.1")
			s.binary, s.prefix = bin, []string{qemu}
			s.start()
			s.waitReady(5 * time.Minute)
			if v := s.mustKubectl("version", "-o", "json"); !strings.Contains(v, `"platform": "`+tc.platform+`"`) {
				t.Fatalf("the server under qemu does not report %s:\n%s", tc.platform, v)
			}
			if err, took := s.stop(); err != nil {
				t.Fatalf("stopping the %s server: %v (%s)", tc.arch, err, took)
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
		// Nothing authenticates a binary and its checksum downloaded over http.
		{"http download", []string{"INSTALL_K1S_ALLOW_HTTP="}, []string{"sh", script},
			"the download URL http://127.0.0.1:1/never is not https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin, units := t.TempDir(), t.TempDir()
			cmd := exec.Command(tc.cmd[0], tc.cmd[1:]...)
			cmd.Env = append(append(cleanInstallEnv(), "INSTALL_K1S_BIN_DIR="+bin, "INSTALL_K1S_SYSTEMD_DIR="+units,
				"INSTALL_K1S_DOWNLOAD_URL=http://127.0.0.1:1/never", "INSTALL_K1S_ALLOW_HTTP=true"), tc.env...)
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

// TestInstallScriptOpenRC installs an agent with install.sh where openrc is the init, in a
// private mount namespace with a copy of /etc and stand-ins for openrc's commands (no openrc
// root boots here): the init script it writes parses, names the service's command with its
// arguments unexpanded, holds no token (the 0600 environment file does), and is enabled and
// started; the environment file's values stay literal when sourced. The uninstall script
// parses, and refuses a relative data directory, / and a directory without k1s.lock, removing
// nothing. The binary is downloaded and checked as in a real install.
func TestInstallScriptOpenRC(t *testing.T) {
	arch := runtime.GOARCH
	port := serveIn(t, "", releaseDir(t, map[string]string{"current": *distDir}))
	work := t.TempDir()
	stubs, uninstallStubs := filepath.Join(work, "stubs"), filepath.Join(work, "uninstall-stubs")
	for _, dir := range []string{stubs, uninstallStubs} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	calls := filepath.Join(work, "calls")
	stub := func(dir, name string) {
		body := "#!/bin/sh\necho " + name + " \"$@\" >> " + calls + "\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"openrc-run", "rc-update", "rc-service"} {
		stub(stubs, name)
	}
	// The uninstall runs outside the namespace: a refusal that failed would only log here.
	stub(uninstallStubs, "rm")
	bin, dataDir, config := filepath.Join(work, "bin"), filepath.Join(work, "data"), filepath.Join(work, "config.yaml")
	writeConfig := func(dataDir string) {
		t.Helper()
		if err := os.WriteFile(config, []byte("data-dir: "+dataDir+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(dataDir)
	token := "K10" + strings.Repeat("ab", 32) + "::e2e123.openrcsecret0123"
	// Neither systemd nor the shell that sources the environment file may interpret a value.
	literal := "a \"b\" 'c' $(touch " + work + "/pwned) `touch " + work + "/pwned` \\d %n ;#"
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
cp /etc/init.d/k1s-agent "$WORK/"
stat -c %a /etc/k1s/k1s-agent.env > "$WORK/env-mode"
sh -c "$CHECK" sh /etc/init.d/k1s-agent > "$WORK/check" 2>&1 || true`
	// What openrc-run does with the script, short of supervising: source it, read it, and
	// evaluate command_args as supervise-daemon's start does.
	check := `set -e
after() { :; }; want() { :; }
. "$1"
depend
eval "set -- $command_args"
printf '%s|%s|%s|%s|%s\n' "$supervisor" "$command" "$*" "$K1S_TOKEN" "$K1S_E2E_LITERAL"`
	cmd := exec.Command("unshare", "--mount", "sh", "-c", script)
	cmd.Env = append(cleanInstallEnv(), "PATH="+stubs+":"+os.Getenv("PATH"), "WORK="+work, "SCRIPT="+distFile(t, "install.sh"), "CHECK="+check,
		"INSTALL_K1S_BIN_DIR="+bin, fmt.Sprintf("INSTALL_K1S_DOWNLOAD_URL=http://127.0.0.1:%d", port), "INSTALL_K1S_ALLOW_HTTP=true",
		"INSTALL_K1S_VERSION=current", "INSTALL_K1S_EXEC=agent --config "+config+" --token "+token+" --node-label=k1s.test/home=$HOME",
		"K1S_URL=https://192.0.2.1:6443", "K1S_E2E_LITERAL="+literal)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install.sh with openrc: %v\n%s", err, out)
	}
	if got, want := hashFile(t, filepath.Join(bin, "k1s")), hashFile(t, distFile(t, "k1s-"+arch)); got != want {
		t.Fatalf("installed k1s differs from dist/k1s-%s", arch)
	}
	called, _ := os.ReadFile(calls)
	if !strings.Contains(string(called), "rc-update add k1s-agent default") || !strings.Contains(string(called), "rc-service k1s-agent restart") {
		t.Fatalf("the service was not enabled and started; openrc commands run:\n%s", called)
	}
	if mode, _ := os.ReadFile(filepath.Join(work, "env-mode")); strings.TrimSpace(string(mode)) != "600" {
		t.Errorf("the environment file has mode %s, want 600", mode)
	}
	initScript, _ := os.ReadFile(filepath.Join(work, "k1s-agent"))
	if strings.Contains(string(initScript), "openrcsecret") {
		t.Errorf("the openrc script, which anyone may read, holds the token:\n%s", initScript)
	}
	out, _ := os.ReadFile(filepath.Join(work, "check"))
	want := "supervise-daemon|" + bin + "/k1s|agent --config " + config + " --node-label=k1s.test/home=$HOME|" + token + "|" + literal
	if strings.TrimSpace(string(out)) != want {
		t.Fatalf("the openrc script, sourced as openrc-run does, gives\n%s\nwant %q; script:\n%s", out, want, initScript)
	}
	if _, err := os.Stat(filepath.Join(work, "pwned")); err == nil {
		t.Error("sourcing the environment file ran a command substitution of a value")
	}
	uninstall := filepath.Join(bin, "k1s-agent-uninstall.sh")
	if out, err := exec.Command("sh", "-n", uninstall).CombinedOutput(); err != nil {
		t.Fatalf("k1s-agent-uninstall.sh does not parse: %v\n%s", err, out)
	}
	// It asks the installed k1s, with the service's --config, what to stop and remove.
	if u, _ := os.ReadFile(uninstall); !strings.Contains(string(u), "killall --print-paths") ||
		!strings.Contains(string(u), "--config '"+config+"'") || !strings.Contains(string(u), "killall --data-dir") {
		t.Fatalf("k1s-agent-uninstall.sh does not ask k1s about, and stop, the node of %s:\n%s", config, u)
	}

	// A data directory the uninstall cannot tell is k1s's alone: one error line, nothing done.
	noLock := filepath.Join(work, "no-lock")
	if err := os.MkdirAll(filepath.Join(noLock, "agent"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dataDir, want string }{
		{"relative/k1s", "the service's data directory is a relative path"},
		{"/", "named '/': only clean absolute paths below / are removed"},
		{noLock, noLock + " holds no k1s.lock"},
	} {
		writeConfig(tc.dataDir)
		if err := os.WriteFile(calls, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sh", uninstall)
		cmd.Dir = work
		cmd.Env = append(cleanInstallEnv(), "PATH="+uninstallStubs+":"+stubs+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("the uninstall with data-dir %q: %v\n%s\nwant a refusal saying %q", tc.dataDir, err, out, tc.want)
		}
		if lines := nonEmptyLines(string(out)); len(lines) != 1 || !strings.HasPrefix(lines[0], "[k1s] ERROR: ") {
			t.Errorf("the uninstall with data-dir %q: want one error line, got:\n%s", tc.dataDir, out)
		}
		if called, _ := os.ReadFile(calls); len(called) > 0 {
			t.Errorf("the uninstall with data-dir %q refused, but ran:\n%s", tc.dataDir, called)
		}
		for _, f := range []string{filepath.Join(bin, "k1s"), uninstall, noLock} {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("the uninstall with data-dir %q refused, but %s is gone: %v", tc.dataDir, f, err)
			}
		}
	}
}

// writeMachineFile writes a file, and its directories, into the machine's root.
func writeMachineFile(t testing.TB, m *machine, path, content string) {
	t.Helper()
	p := filepath.Join(m.root, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
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
// a refused download, a no-op re-run, an upgrade keeping the pod, an agent joining (its data
// directory named only in the config file, its token given as an argument yet kept out of the
// unit and ps), and the uninstall scripts leaving nothing of k1s in either machine and
// everything another runtime keeps in the host directories they share.
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

	// The agent's data directory is only in its config file.
	agtDataDir := "/srv/k1s-agent"
	writeMachineFile(t, agt, "etc/k1s/config.yaml", "data-dir: "+agtDataDir+"\n")
	// The node's images, put where the install will find them.
	for m, dataDir := range map[*machine]string{srv: "/var/lib/k1s", agt: agtDataDir} {
		images := filepath.Join(m.root, dataDir, "agent/images")
		if err := os.MkdirAll(images, 0o700); err != nil {
			t.Fatal(err)
		}
		copyFile(t, busybox, filepath.Join(images, "busybox.tar"))
	}
	// Another runtime's files in the host directories k1s's node shares with it.
	otherRuntime := map[string]string{
		"var/lib/cni/results/othernet-0123abcd-eth0":  `{"kind":"cniCacheV1","containerId":"0123abcd","config":"e30="}`,
		"var/log/pods/default_other_0123abcd/c/0.log": "log line\n",
		"var/lib/kubelet/other-runtime":               "state\n",
	}
	for _, m := range []*machine{srv, agt} {
		for f, content := range otherRuntime {
			writeMachineFile(t, m, f, content)
		}
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

	// An agent, with the token from the server given on install.sh's command line.
	token := joinTokenPattern.FindString(srv.mustExec("cat", "/var/lib/k1s/server/node-token"))
	if token == "" {
		t.Fatal("the server's node-token holds no join token")
	}
	secret := token[strings.LastIndex(token, ".")+1:]
	agtPort := serveIn(t, agt.node.netns, releases)
	// Neither systemd nor a shell may interpret a value of the environment file.
	literal := `a "b" 'c' $HOME $(id) ` + "`id`" + ` \d %n ;#`
	env := []string{"K1S_URL=https://" + srv.node.ip + ":6443", "K1S_E2E_LITERAL=" + literal}
	if out, err := agt.install(agtPort, "current", env, "agent", "--token", token, "--node-ip", agt.node.ip); err != nil {
		t.Fatalf("installing the agent: %v\n%s\n%s", err, out, agt.journal("k1s-agent"))
	}
	agt.assertService(t, "k1s-agent")
	srv.waitNodeReady(t, "agt")
	if envFile := agt.mustExec("cat", "/etc/systemd/system/k1s-agent.service.env"); !strings.Contains(envFile, `K1S_TOKEN="`+token+`"`) {
		t.Errorf("the agent's environment file lacks the token:\n%s", envFile)
	}
	// The token is in the 0600 environment file only: not in the unit, which anyone may read,
	// nor on a command line, which ps shows anyone.
	if unit := agt.mustExec("systemctl", "cat", "k1s-agent"); strings.Contains(unit, secret) {
		t.Errorf("the agent's unit holds the token:\n%s", unit)
	}
	if ps := agt.mustExec("ps", "-e", "-ww", "-o", "args="); strings.Contains(ps, secret) {
		t.Errorf("ps shows the token:\n%s", ps)
	}
	agentPID := agt.mainPID(t, "k1s-agent")
	environ := agt.mustExec("cat", fmt.Sprintf("/proc/%d/environ", agentPID))
	if !slices.Contains(strings.Split(environ, "\x00"), "K1S_E2E_LITERAL="+literal) {
		t.Errorf("the agent's environment lacks K1S_E2E_LITERAL=%s:\n%q", literal, environ)
	}
	// k1s reads the token and passes it on to no child: containerd (and through it the shims)
	// starts without it.
	children := strings.Fields(agt.mustExec("pgrep", "-P", strconv.Itoa(agentPID)))
	if len(children) == 0 {
		t.Error("the agent has no child process (containerd) to check")
	}
	for _, child := range children {
		if env, err := agt.exec("cat", "/proc/"+child+"/environ"); err == nil && strings.Contains(env, secret) {
			t.Errorf("the agent's child process %s inherited the token", child)
		}
	}

	// Uninstall: nothing of k1s is left in either machine, the agent's data directory (named
	// only in its config file) included, and another runtime's files are all there.
	for _, u := range []struct {
		m                      *machine
		script, units, dataDir string
	}{{agt, "k1s-agent-uninstall.sh", "k1s-agent", agtDataDir}, {srv, "k1s-uninstall.sh", "k1s", "/var/lib/k1s"}} {
		if out, err := u.m.execEnv(3*time.Minute, nil, "/usr/local/bin/"+u.script); err != nil {
			t.Fatalf("%s: %v\n%s", u.script, err, out)
		}
		if _, err := os.Lstat(filepath.Join(u.m.root, u.dataDir)); !os.IsNotExist(err) {
			t.Errorf("machine %s after %s: the data directory %s is still there (%v)", u.m.name, u.script, u.dataDir, err)
		}
		for _, l := range u.m.leftovers(before[u.m]) {
			t.Errorf("machine %s after %s: %s", u.m.name, u.script, l)
		}
		for f, content := range otherRuntime {
			if got, err := os.ReadFile(filepath.Join(u.m.root, f)); err != nil || string(got) != content {
				t.Errorf("machine %s after %s: another runtime's /%s is gone or changed: %q, %v", u.m.name, u.script, f, got, err)
			}
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
	env = append([]string{"INSTALL_K1S_DOWNLOAD_URL=" + base, "INSTALL_K1S_ALLOW_HTTP=true", "INSTALL_K1S_VERSION=" + version}, env...)
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
