package killall

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/k1s-io/k1s/internal/layout"
)

func TestCheckDataDir(t *testing.T) {
	dir := t.TempDir()
	var notDataDir *NotDataDirError
	if _, err := checkDataDir(dir); !errors.As(err, &notDataDir) {
		t.Fatalf("a directory without k1s.lock: %v", err)
	}
	if _, err := checkDataDir(filepath.Join(dir, "missing")); !errors.As(err, &notDataDir) {
		t.Fatalf("a missing directory: %v", err)
	}
	if err := os.Mkdir(layout.DataDir(dir).Lock(), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := checkDataDir(dir); !errors.As(err, &notDataDir) {
		t.Fatalf("k1s.lock as a directory: %v", err)
	}
	real := filepath.Join(dir, "real")
	if err := os.MkdirAll(real, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(layout.DataDir(real).Lock(), []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	resolvedReal, _ := filepath.EvalSymlinks(real)
	if got, err := checkDataDir(filepath.Join(dir, "link")); err != nil || got != resolvedReal {
		t.Fatalf("checkDataDir(link) = %q, %v; want %q", got, err, resolvedReal)
	}
}

func TestCgroupTopsAndRemoveTree(t *testing.T) {
	h := t.TempDir()
	for _, d := range []string{
		"kubepods/burstable/pod1", "kubepods.slice", "system.slice", "kubepodsfile",
		"k1s-node-b/kubepods/besteffort/pod2", "k1s-node-b/other", "k1s-node-bb/kubepods",
	} {
		if err := os.MkdirAll(filepath.Join(h, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(h, "kubepodsfile")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h, "kubepodsfile"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := cgroupTops(h, "/"), []string{filepath.Join(h, "kubepods"), filepath.Join(h, "kubepods.slice")}; !reflect.DeepEqual(got, want) {
		t.Errorf("tops for /: %v, want %v", got, want)
	}
	if got, want := cgroupTops(h, "/k1s-node-b"), []string{filepath.Join(h, "k1s-node-b")}; !reflect.DeepEqual(got, want) {
		t.Errorf("tops for /k1s-node-b: %v, want %v", got, want)
	}
	if got := cgroupTops(h, "/absent"); got != nil {
		t.Errorf("tops for an absent root: %v", got)
	}
	if err := removeTree(filepath.Join(h, "k1s-node-b")); err != nil {
		t.Fatal(err)
	}
	var left []string
	_ = filepath.WalkDir(h, func(path string, d os.DirEntry, err error) error {
		if err == nil && path != h {
			rel, _ := filepath.Rel(h, path)
			left = append(left, rel)
		}
		return nil
	})
	sort.Strings(left)
	want := []string{"k1s-node-bb", "k1s-node-bb/kubepods", "kubepods", "kubepods.slice", "kubepods/burstable", "kubepods/burstable/pod1", "kubepodsfile", "system.slice"}
	if !reflect.DeepEqual(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
}

func TestFlagValue(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", "/d/agent/containerd/config.toml", "--log-level", "info"}, "/d/agent/containerd/config.toml"},
		{[]string{"--config=/x.toml"}, "/x.toml"},
		{[]string{"-c", "/y.toml"}, "/y.toml"},
		{[]string{"--log-level", "info", "--config"}, ""},
		{[]string{"--configx", "/z"}, ""},
	} {
		if got := flagValue(c.args, "--config", "-c"); got != c.want {
			t.Errorf("flagValue(%q) = %q, want %q", c.args, got, c.want)
		}
	}
}

func TestProcessSelection(t *testing.T) {
	all := []proc{
		{pid: 1, ppid: 0, exe: "/sbin/init"},
		{pid: 10, ppid: 1, exe: "/usr/local/bin/k1s", argv: []string{"k1s", "agent"}},
		{pid: 11, ppid: 10, exe: "/usr/local/bin/k1s", argv: []string{"containerd", "--config", "/var/lib/k1s/agent/containerd/config.toml"}},
		{pid: 12, ppid: 10, exe: "/usr/sbin/iptables"},
		{pid: 20, ppid: 1, exe: "/var/lib/k1s/data/abc/bin/containerd-shim-runc-v2"},
		{pid: 21, ppid: 20, exe: "/pause"},
		{pid: 22, ppid: 20, exe: "/bin/sh"},
		{pid: 23, ppid: 22, exe: "/bin/sleep"},
		{pid: 30, ppid: 1, exe: "/var/lib/k1s-b/data/abc/bin/containerd-shim-runc-v2"},
		{pid: 31, ppid: 30, exe: "/pause"},
		{pid: 40, ppid: 1, exe: "/var/lib/k1s/data-old/bin/containerd-shim-runc-v2"},
	}
	var shims []proc
	for _, p := range all {
		if isNodeShim(p, "/var/lib/k1s") {
			shims = append(shims, p)
		}
	}
	pids := func(ps []proc) []int {
		var out []int
		for _, p := range ps {
			out = append(out, p.pid)
		}
		return out
	}
	if got := pids(shims); !reflect.DeepEqual(got, []int{20}) {
		t.Errorf("shims %v", got)
	}
	if got := pids(withDescendants(all, shims)); !reflect.DeepEqual(got, []int{20, 21, 22, 23}) {
		t.Errorf("shims with pods %v", got)
	}
	if got := pids(withDescendants(all, []proc{all[1], all[2]})); !reflect.DeepEqual(got, []int{10, 11, 12}) {
		t.Errorf("k1s with children %v", got)
	}
}

func TestNodeFiles(t *testing.T) {
	tasks, results := t.TempDir(), t.TempDir()
	bundle := filepath.Join(tasks, "k8s.io", "sandbox1")
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "bootstrap.json"), []byte(`{"version":2,"address":"unix:///run/containerd/s/abc","protocol":"ttrpc"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	legacy := filepath.Join(tasks, "k8s.io", "ctr2")
	if err := os.MkdirAll(legacy, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(legacy, "address"), []byte("unix:///etc/passwd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ids, sockets := nodeTasks(tasks)
	if !ids["sandbox1"] || !ids["ctr2"] || len(ids) != 2 {
		t.Errorf("ids %v", ids)
	}
	if !reflect.DeepEqual(sockets, []string{"/run/containerd/s/abc"}) {
		t.Errorf("sockets %v", sockets)
	}

	// config is base64 in libcni's cache: "e30=" is {}, the other names a host-local directory.
	for name, data := range map[string]string{
		"k1s-sandbox1-eth0":        `{"kind":"cniCacheV1","containerId":"sandbox1","config":"e30="}`,
		"cni-loopback-sandbox1-lo": `{"kind":"cniCacheV1","containerId":"sandbox1","config":"e30="}`,
		"k1s-pod2-eth0":            `{"kind":"cniCacheV1","containerId":"pod2","config":"eyJkYXRhRGlyIjoiL3Zhci9saWIvazFzL2FnZW50L2NuaSJ9"}`,
		"junk":                     `not json`,
	} {
		if err := os.WriteFile(filepath.Join(results, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]string{}
	for _, r := range cniResults(results) {
		got[filepath.Base(r.path)] = r.id + " " + string(r.config)
	}
	want := map[string]string{
		"k1s-sandbox1-eth0":        "sandbox1 {}",
		"cni-loopback-sandbox1-lo": "sandbox1 {}",
		"k1s-pod2-eth0":            `pod2 {"dataDir":"/var/lib/k1s/agent/cni"}`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("results %v, want %v", got, want)
	}
}

// killall and an uninstall follow one rule for what of the host is k1s's: every host path
// killall empties or removes entries from lies within a path the uninstall removes whole, or
// is a directory other runtimes share (or in one), where killall removes only this node's
// entries and the uninstall nothing more; and no path the uninstall removes whole holds one.
func TestHostPathsWithinUninstallPaths(t *testing.T) {
	dataDir := t.TempDir()
	uninstalled := layout.UninstallPaths(layout.DataDir(dataDir))
	shared := append([]string{layout.PodLogsDir}, layout.SharedHostDirs...)
	within := func(p string, dirs []string) bool {
		for _, d := range dirs {
			if p == d || strings.HasPrefix(p, d+"/") {
				return true
			}
		}
		return false
	}
	touched := append([]string{
		layout.RunDir, layout.ContainerdTaskDir, layout.ContainerLogLinks, layout.CNIResultsDir,
		layout.KubeletDevicePluginSocket, layout.KubeletDeviceCheckpoint, layout.DataDir(dataDir).Lock(),
		layout.DataDir(dataDir).PayloadDir(),
	}, layout.SharedHostDirs...)
	for _, p := range touched {
		if !within(p, uninstalled) && !within(p, shared) {
			t.Errorf("killall acts on %s, which no uninstall path %q holds and no runtime shares", p, uninstalled)
		}
	}
	for _, u := range uninstalled {
		for _, s := range shared {
			if within(s, []string{u}) {
				t.Errorf("the uninstall removes %s whole, and with it %s, which other runtimes share", u, s)
			}
		}
	}
	if ranNode(dataDir) {
		t.Fatal("an empty directory counts as a node's")
	}
	if err := os.MkdirAll(layout.DataDir(dataDir).Node().Dir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if !ranNode(dataDir) {
		t.Errorf("%s does not count as a node's", layout.DataDir(dataDir).Node().Dir())
	}
}

// The kubelet's device checkpoint goes only when no kubelet serves beside it and it records no
// device.
func TestRemoveIdleDeviceCheckpoint(t *testing.T) {
	dir := t.TempDir()
	checkpoint, socket := filepath.Join(dir, "kubelet_internal_checkpoint"), filepath.Join(dir, "kubelet.sock")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(checkpoint, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	idle := `{"Data":{"PodDeviceEntries":null,"RegisteredDevices":{}},"Checksum":1}`
	for _, tc := range []struct {
		content    string
		withSocket bool
		removed    bool
	}{
		{idle, false, true},
		{`{"Data":{"PodDeviceEntries":[],"RegisteredDevices":{"example.com/gpu":[]}},"Checksum":1}`, false, true},
		{idle, true, false},
		{`{"Data":{"PodDeviceEntries":null,"RegisteredDevices":{"example.com/gpu":["gpu0"]}},"Checksum":1}`, false, false},
		{`{"Data":{"PodDeviceEntries":[{"PodUID":"u"}],"RegisteredDevices":{}},"Checksum":1}`, false, false},
		{`not json`, false, false},
		{`{"Checksum":1}`, false, false},
	} {
		write(tc.content)
		os.Remove(socket)
		if tc.withSocket {
			if err := os.WriteFile(socket, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		got := removeIdleDeviceCheckpoint(checkpoint, socket)
		_, err := os.Stat(checkpoint)
		if got != tc.removed || got != os.IsNotExist(err) {
			t.Errorf("%s (socket %v): removed %v (file gone: %v), want %v", tc.content, tc.withSocket, got, os.IsNotExist(err), tc.removed)
		}
	}
}
