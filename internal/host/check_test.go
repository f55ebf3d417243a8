package host

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fixtureHost writes files (paths relative to the host's root: "proc/…", "sys/…",
// "lib/modules/…") into a temporary tree and returns options that point at it, without port
// checks.
func fixtureHost(t *testing.T, files map[string]string) CheckOptions {
	t.Helper()
	root := t.TempDir()
	for name, data := range files {
		file := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{"proc", "sys", "lib/modules"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return CheckOptions{ProcRoot: filepath.Join(root, "proc"), SysRoot: filepath.Join(root, "sys"),
		Ports: []int{}, modulesRoot: filepath.Join(root, "lib/modules")}
}

func findCheck(t *testing.T, results []CheckResult, name string) CheckResult {
	t.Helper()
	for _, r := range results {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no check %q in %+v", name, results)
	return CheckResult{}
}

const v1ProcCgroups = `#subsys_name	hierarchy	num_cgroups	enabled
cpuset	3	1	1
cpu	2	1	1
cpuacct	2	1	1
memory	0	1	0
pids	4	1	1
`

const v1Mountinfo = `24 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 24 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid shared:9 - cgroup cgroup rw,xattr,name=systemd
30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/cpuset rw,nosuid shared:12 - cgroup cgroup rw,cpuset
32 25 0:28 / /sys/fs/cgroup/pids rw shared:13 - cgroup cgroup rw,pids
`

func TestCheckCgroupsV1MemoryDisabled(t *testing.T) {
	opts := fixtureHost(t, map[string]string{"proc/cgroups": v1ProcCgroups, "proc/self/mountinfo": v1Mountinfo})
	results := CheckHost(opts)
	for _, name := range []string{"cpu", "cpuset", "pids"} {
		if r := findCheck(t, results, "cgroup "+name+" controller"); !r.OK || r.Found != "v1 hierarchy mounted" {
			t.Errorf("%s: %+v", name, r)
		}
	}
	memory := findCheck(t, results, "cgroup memory controller")
	if memory.OK || memory.Warn || memory.Found != "disabled in /proc/cgroups" || !strings.Contains(memory.Fix, "cgroup_enable=memory") {
		t.Errorf("memory: %+v", memory)
	}
	if ok, found := MemoryCgroupAvailable(opts.ProcRoot, opts.SysRoot); ok || found != memory.Found {
		t.Errorf("MemoryCgroupAvailable = %v, %q", ok, found)
	}
}

func TestCheckCgroupsV1NotMounted(t *testing.T) {
	procCgroups := strings.Replace(v1ProcCgroups, "memory\t0\t1\t0", "memory\t0\t1\t1", 1)
	opts := fixtureHost(t, map[string]string{"proc/cgroups": procCgroups, "proc/self/mountinfo": v1Mountinfo})
	r := findCheck(t, CheckHost(opts), "cgroup memory controller")
	if r.OK || !strings.Contains(r.Found, "no v1 hierarchy mounted") || !strings.Contains(r.Fix, "mount -t cgroup -o memory") {
		t.Errorf("memory: %+v", r)
	}
}

func TestCheckCgroupsV2(t *testing.T) {
	opts := fixtureHost(t, map[string]string{
		"sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory pids\n",
		"proc/cgroups":                     strings.ReplaceAll(v1ProcCgroups, "memory\t0\t1\t0", "memory\t0\t1\t1"),
	})
	results := CheckHost(opts)
	for _, name := range cgroupControllers {
		if r := findCheck(t, results, "cgroup "+name+" controller"); !r.OK || r.Fix != "" || !strings.HasPrefix(r.Found, "v2") {
			t.Errorf("%s: %+v", name, r)
		}
	}
	if ok, found := MemoryCgroupAvailable(opts.ProcRoot, opts.SysRoot); !ok {
		t.Errorf("MemoryCgroupAvailable = false, %q", found)
	}
}

func TestCheckCgroupsV2WithoutMemory(t *testing.T) {
	opts := fixtureHost(t, map[string]string{"sys/fs/cgroup/cgroup.controllers": "cpuset cpu io pids\n"})
	results := CheckHost(opts)
	memory := findCheck(t, results, "cgroup memory controller")
	if memory.OK || memory.Warn || memory.Fix != MemoryCgroupFix {
		t.Errorf("memory: %+v", memory)
	}
	if r := findCheck(t, results, "cgroup pids controller"); !r.OK {
		t.Errorf("pids: %+v", r)
	}
	if ok, _ := MemoryCgroupAvailable(opts.ProcRoot, opts.SysRoot); ok {
		t.Error("MemoryCgroupAvailable = true")
	}
}

func TestCheckPort(t *testing.T) {
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	opts := fixtureHost(t, nil)
	opts.Ports = []int{port}
	r := findCheck(t, CheckHost(opts), "port "+strconv.Itoa(port)+"/tcp")
	if r.OK || r.Warn || r.Found != "in use" || !strings.Contains(r.Fix, "--https-listen-port") {
		t.Errorf("taken port: %+v", r)
	}
	l.Close()
	if r := checkPort(port); !r.OK || r.Found != "free" {
		t.Errorf("released port: %+v", r)
	}
}

func TestCheckKernel(t *testing.T) {
	opts := fixtureHost(t, map[string]string{"proc/sys/kernel/osrelease": "4.4.0\n"})
	r := findCheck(t, CheckHost(opts), "kernel version")
	if r.OK || r.Found != "Linux 4.4.0" || r.Fix != "k1s needs Linux 4.15 or newer" {
		t.Errorf("4.4.0: %+v", r)
	}
	for release, ok := range map[string]bool{"4.15.0": true, "5.15.0-91-generic": true, "6.8.0-rpi": true, "4.14.330": false, "3.10.0-1160.el7.x86_64": false, "": false, "linux": false} {
		if r := checkKernel(release); r.OK != ok {
			t.Errorf("%q: %+v", release, r)
		}
	}
}

func TestCheckModules(t *testing.T) {
	const release = "6.1.0-k1s-fixture"
	opts := fixtureHost(t, map[string]string{
		"proc/sys/kernel/osrelease":                                         release + "\n",
		"proc/filesystems":                                                  "nodev\tsysfs\nnodev\tproc\n\text4\n",
		"lib/modules/" + release + "/modules.builtin":                       "kernel/fs/ext4/ext4.ko\nkernel/fs/overlayfs/overlay.ko\n",
		"lib/modules/" + release + "/kernel/drivers/net/vxlan/vxlan.ko.zst": "",
	})
	results := CheckHost(opts)
	if r := findCheck(t, results, "overlayfs"); !r.OK || r.Found != "built in" {
		t.Errorf("overlayfs: %+v", r)
	}
	if r := findCheck(t, results, "vxlan (default multi-node pod network)"); !r.OK || r.Found != "module available" {
		t.Errorf("vxlan: %+v", r)
	}
	if r := findCheck(t, results, "bridge netfilter"); r.OK || r.Warn || r.Fix != "modprobe br_netfilter" {
		t.Errorf("bridge netfilter without module: %+v", r)
	}

	// Nothing under /lib/modules: overlay from /proc/filesystems, br_netfilter from its
	// sysctl, vxlan from /sys/module; then without them, overlay and vxlan only warn.
	bare := fixtureHost(t, map[string]string{
		"proc/sys/kernel/osrelease":                   release + "\n",
		"proc/filesystems":                            "nodev\tsysfs\nnodev\toverlay\n",
		"proc/sys/net/bridge/bridge-nf-call-iptables": "1\n",
		"sys/module/vxlan/refcnt":                     "0\n",
	})
	results = CheckHost(bare)
	for _, name := range []string{"overlayfs", "bridge netfilter", "vxlan (default multi-node pod network)"} {
		if r := findCheck(t, results, name); !r.OK {
			t.Errorf("%s: %+v", name, r)
		}
	}
	results = CheckHost(fixtureHost(t, map[string]string{"proc/sys/kernel/osrelease": release + "\n"}))
	if r := findCheck(t, results, "overlayfs"); r.OK || !r.Warn || r.Fix == "" {
		t.Errorf("overlayfs missing: %+v", r)
	}
	if r := findCheck(t, results, "vxlan (default multi-node pod network)"); r.OK || !r.Warn || !strings.Contains(r.Fix, "--flannel-backend host-gw") {
		t.Errorf("vxlan missing: %+v", r)
	}
}

func TestCheckFirewall(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PATH", dir)
	if r := checkFirewall(); r.OK || !strings.Contains(r.Fix, "apt-get install iptables") {
		t.Errorf("without either: %+v", r)
	}
	if err := os.WriteFile(filepath.Join(dir, "nft"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := checkFirewall(); !r.OK || r.Found != filepath.Join(dir, "nft") {
		t.Errorf("with nft: %+v", r)
	}
}

func TestCheckSwapAndRoot(t *testing.T) {
	header := "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
	results := CheckHost(fixtureHost(t, map[string]string{"proc/swaps": header}))
	if r := findCheck(t, results, "swap"); !r.OK {
		t.Errorf("no swap: %+v", r)
	}
	results = CheckHost(fixtureHost(t, map[string]string{"proc/swaps": header + "/dev/sda2\tpartition\t2097148\t0\t-2\n"}))
	if r := findCheck(t, results, "swap"); r.OK || r.Found != "on (/dev/sda2)" || !strings.Contains(r.Fix, "swapoff -a") {
		t.Errorf("swap on: %+v", r)
	}
	if r := checkRoot(0); !r.OK {
		t.Errorf("root: %+v", r)
	}
	if r := checkRoot(1000); r.OK || r.Fix == "" {
		t.Errorf("unprivileged: %+v", r)
	}
}

func TestPrintChecks(t *testing.T) {
	var out bytes.Buffer
	failures := PrintChecks(&out, []CheckResult{
		{Name: "cgroup memory controller", OK: true, Found: "v1 hierarchy mounted"},
		{Name: "port 6443/tcp", Found: "in use", Fix: "stop what listens on it"},
		{Name: "overlayfs", Warn: true, Found: "not in /proc/filesystems", Fix: "modprobe overlay"},
		{Name: "kernel version", Found: "Linux 4.4.0", Fix: "k1s needs Linux 4.15 or newer"},
	})
	if failures != 2 {
		t.Errorf("failures = %d, want 2 (warnings are not failures)", failures)
	}
	want := `[PASS] cgroup memory controller: v1 hierarchy mounted
[FAIL] port 6443/tcp: found in use
       fix: stop what listens on it
[WARN] overlayfs: found not in /proc/filesystems
       fix: modprobe overlay
[FAIL] kernel version: found Linux 4.4.0
       fix: k1s needs Linux 4.15 or newer
1 checks passed, 2 failed, 1 warned
`
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}
