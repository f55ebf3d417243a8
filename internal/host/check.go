package host

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// MemoryCgroupFix is the fix for a kernel booted without the memory cgroup controller, as
// Raspberry Pi OS is by default.
const MemoryCgroupFix = "add cgroup_memory=1 cgroup_enable=memory to /boot/firmware/cmdline.txt (/boot/cmdline.txt on older systems) and reboot"

// CheckResult is one line of `k1s check-config`.
type CheckResult struct {
	Name string
	OK   bool
	// Warn marks a check that did not pass but is advisory only: k1s runs without it, in a
	// reduced way. It is not a failure.
	Warn  bool
	Found string
	Fix   string // empty when OK
}

// CheckOptions says where CheckHost looks.
type CheckOptions struct {
	ProcRoot, SysRoot string // "" = /proc, /sys; tests point them at fixtures
	Ports             []int  // nil = 6443 and 10250; empty = no port checks

	modulesRoot string // "" = /lib/modules
}

// cgroupControllers are the controllers the kubelet needs, on v1 and v2 alike.
var cgroupControllers = []string{"cpu", "cpuset", "memory", "pids"}

// CheckHost runs every host check, in the order `k1s check-config` prints them.
func CheckHost(opts CheckOptions) []CheckResult {
	proc, sys := orDefault(opts.ProcRoot, "/proc"), orDefault(opts.SysRoot, "/sys")
	ports := opts.Ports
	if ports == nil {
		ports = []int{6443, 10250}
	}
	release := readTrimmed(filepath.Join(proc, "sys/kernel/osrelease"))
	mods := kernelModules{sys: sys}
	if release != "" {
		mods.dir = filepath.Join(orDefault(opts.modulesRoot, "/lib/modules"), release)
	}
	results := []CheckResult{checkRoot(os.Geteuid()), checkKernel(release)}
	cgroups := readCgroups(proc, sys)
	for _, name := range cgroupControllers {
		results = append(results, cgroups.check(name))
	}
	results = append(results, checkOverlay(proc, mods), checkBridgeNetfilter(proc, mods), checkVXLAN(mods), checkFirewall())
	for _, port := range ports {
		results = append(results, checkPort(port))
	}
	return append(results, checkSwap(proc))
}

// PrintChecks prints one line per result, with the fix under each failure and warning, then
// the counts. It returns the number of failures (warnings are not failures).
func PrintChecks(w io.Writer, results []CheckResult) (failures int) {
	passed, warned := 0, 0
	for _, r := range results {
		status := "FAIL"
		switch {
		case r.OK:
			passed++
			line := "[PASS] " + r.Name
			if r.Found != "" {
				line += ": " + r.Found
			}
			fmt.Fprintln(w, line)
			continue
		case r.Warn:
			warned++
			status = "WARN"
		default:
			failures++
		}
		fmt.Fprintf(w, "[%s] %s: found %s\n", status, r.Name, r.Found)
		if r.Fix != "" {
			fmt.Fprintf(w, "       fix: %s\n", r.Fix)
		}
	}
	summary := fmt.Sprintf("%d checks passed, %d failed", passed, failures)
	if warned > 0 {
		summary += fmt.Sprintf(", %d warned", warned)
	}
	fmt.Fprintln(w, summary)
	return failures
}

// MemoryCgroupAvailable reports whether the kernel offers the memory cgroup controller to the
// kubelet, and what it found ("" roots = /proc, /sys). When it does not, MemoryCgroupFix is
// the fix.
func MemoryCgroupAvailable(procRoot, sysRoot string) (bool, string) {
	r := readCgroups(orDefault(procRoot, "/proc"), orDefault(sysRoot, "/sys")).check("memory")
	return r.OK, r.Found
}

func newResult(name string, ok bool, found, fix string) CheckResult {
	if ok {
		fix = ""
	}
	return CheckResult{Name: name, OK: ok, Found: found, Fix: fix}
}

func checkRoot(euid int) CheckResult {
	return newResult("running as root", euid == 0, fmt.Sprintf("euid %d", euid), "run as root (sudo k1s …)")
}

func checkKernel(release string) CheckResult {
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		return newResult("kernel version", false, fmt.Sprintf("unreadable release %q in /proc/sys/kernel/osrelease", release), "k1s needs Linux 4.15 or newer")
	}
	return newResult("kernel version", major > 4 || major == 4 && minor >= 15, "Linux "+release, "k1s needs Linux 4.15 or newer")
}

// cgroupInfo is what the kernel says of its cgroup controllers.
type cgroupInfo struct {
	v2          bool
	v2Available []string        // v2: /sys/fs/cgroup/cgroup.controllers
	enabled     map[string]bool // v1: /proc/cgroups, by its enabled column
	mounted     map[string]bool // v1: controllers of the cgroup mounts in /proc/self/mountinfo
}

// readCgroups reads a unified (v2) host from /sys/fs/cgroup/cgroup.controllers, and a v1 or
// hybrid host (whose controllers are on v1 hierarchies) from /proc/cgroups and the mounts.
func readCgroups(proc, sys string) cgroupInfo {
	if data, err := os.ReadFile(filepath.Join(sys, "fs/cgroup/cgroup.controllers")); err == nil {
		return cgroupInfo{v2: true, v2Available: strings.Fields(string(data))}
	}
	info := cgroupInfo{enabled: map[string]bool{}, mounted: map[string]bool{}}
	if data, err := os.ReadFile(filepath.Join(proc, "cgroups")); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			// #subsys_name hierarchy num_cgroups enabled
			if f := strings.Fields(line); len(f) == 4 && !strings.HasPrefix(f[0], "#") {
				info.enabled[f[0]] = f[3] == "1"
			}
		}
	}
	if data, err := os.ReadFile(filepath.Join(proc, "self/mountinfo")); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			// ... mount point ... - fstype source super-options
			_, tail, ok := strings.Cut(line, " - ")
			if f := strings.Fields(tail); ok && len(f) >= 3 && f[0] == "cgroup" {
				for _, opt := range strings.Split(f[2], ",") {
					info.mounted[opt] = true
				}
			}
		}
	}
	return info
}

func (c cgroupInfo) check(name string) CheckResult {
	title := "cgroup " + name + " controller"
	disabledFix := "remove cgroup_disable=" + name + " from the kernel command line, or boot a kernel built with the " + name + " controller, and reboot"
	if name == "memory" {
		disabledFix = MemoryCgroupFix
	}
	enabled, known := c.enabled[name]
	switch {
	case c.v2 && slices.Contains(c.v2Available, name):
		return newResult(title, true, "v2 (unified hierarchy)", "")
	case c.v2:
		return newResult(title, false, "cgroup v2 without "+name+" in /sys/fs/cgroup/cgroup.controllers", disabledFix)
	case c.mounted[name]:
		return newResult(title, true, "v1 hierarchy mounted", "")
	case known && !enabled:
		return newResult(title, false, "disabled in /proc/cgroups", disabledFix)
	case !known:
		return newResult(title, false, "not in /proc/cgroups and no cgroup v2 at /sys/fs/cgroup", disabledFix)
	default:
		return newResult(title, false, "enabled in /proc/cgroups but no v1 hierarchy mounted",
			"mount it (mount -t cgroup -o "+name+" cgroup /sys/fs/cgroup/"+name+"; the init system normally does), or boot with cgroup v2")
	}
}

// kernelModules finds kernel modules: dir is /lib/modules/$(uname -r), "" when the release is
// unknown.
type kernelModules struct{ dir, sys string }

// find says how module name is there ("loaded", "built in", "module available"), or "". paths
// are where its file may be under dir, without the .ko* suffix.
func (m kernelModules) find(name string, paths ...string) string {
	if _, err := os.Stat(filepath.Join(m.sys, "module", name)); err == nil {
		return "loaded"
	}
	if m.dir == "" {
		return ""
	}
	if data, err := os.ReadFile(filepath.Join(m.dir, "modules.builtin")); err == nil && listsModule(data, name) {
		return "built in"
	}
	for _, p := range paths {
		if files, _ := filepath.Glob(filepath.Join(m.dir, p+".ko*")); len(files) > 0 {
			return "module available"
		}
	}
	if data, err := os.ReadFile(filepath.Join(m.dir, "modules.dep")); err == nil && listsModule(data, name) {
		return "module available"
	}
	return ""
}

func (m kernelModules) missing(name string) string {
	if m.dir == "" {
		return "no " + name + " module (kernel release unknown)"
	}
	return "no " + name + " module under " + m.dir
}

// listsModule reads modules.builtin or modules.dep: lines such as
// "kernel/fs/overlayfs/overlay.ko.zst: …".
func listsModule(data []byte, name string) bool {
	for line := range strings.SplitSeq(string(data), "\n") {
		file, _, _ := strings.Cut(line, ":")
		if mod, _, ok := strings.Cut(path.Base(strings.TrimSpace(file)), ".ko"); ok && strings.ReplaceAll(mod, "-", "_") == name {
			return true
		}
	}
	return false
}

func checkOverlay(proc string, mods kernelModules) CheckResult {
	found := "in /proc/filesystems"
	data, _ := os.ReadFile(filepath.Join(proc, "filesystems")) // lines "nodev\toverlay"
	if !slices.ContainsFunc(strings.Split(string(data), "\n"), func(line string) bool { return strings.HasSuffix(line, "\toverlay") }) {
		found = mods.find("overlay", "kernel/fs/overlayfs/overlay")
	}
	r := newResult("overlayfs", found != "", orDefault(found, "not in /proc/filesystems, "+mods.missing("overlay")),
		"modprobe overlay (without it k1s falls back to the slower native snapshotter)")
	r.Warn = !r.OK
	return r
}

func checkBridgeNetfilter(proc string, mods kernelModules) CheckResult {
	found := ""
	if _, err := os.Stat(filepath.Join(proc, "sys/net/bridge/bridge-nf-call-iptables")); err == nil {
		found = "loaded (net.bridge.bridge-nf-call-iptables present)"
	} else {
		found = mods.find("br_netfilter", "kernel/net/bridge/br_netfilter")
	}
	return newResult("bridge netfilter", found != "", orDefault(found, mods.missing("br_netfilter")), "modprobe br_netfilter")
}

func checkVXLAN(mods kernelModules) CheckResult {
	found := mods.find("vxlan", "kernel/drivers/net/vxlan/vxlan", "kernel/drivers/net/vxlan")
	r := newResult("vxlan (default multi-node pod network)", found != "", orDefault(found, mods.missing("vxlan")),
		"modprobe vxlan, or use --flannel-backend host-gw")
	r.Warn = !r.OK
	return r
}

func checkFirewall() CheckResult {
	for _, tool := range []string{"iptables", "nft"} {
		if file, err := exec.LookPath(tool); err == nil {
			return newResult("iptables or nft", true, file, "")
		}
	}
	return newResult("iptables or nft", false, "neither on PATH", "apt-get install iptables (or nftables)")
}

// checkPort tries to listen on port on all addresses.
func checkPort(port int) CheckResult {
	name := fmt.Sprintf("port %d/tcp", port)
	l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	switch {
	case err == nil:
		l.Close()
		return newResult(name, true, "free", "")
	case errors.Is(err, syscall.EADDRINUSE):
		return newResult(name, false, "in use", "stop what listens on it, or choose another port (--https-listen-port / --kubelet-arg port=…)")
	default:
		return newResult(name, false, err.Error(), "run as root, or choose another port (--https-listen-port / --kubelet-arg port=…)")
	}
}

// checkSwap fails with swap on: the kubelet k1s runs keeps its default failSwapOn and refuses
// to start then.
func checkSwap(proc string) CheckResult {
	data, err := os.ReadFile(filepath.Join(proc, "swaps"))
	if err != nil {
		return newResult("swap", true, "off (no /proc/swaps)", "")
	}
	var devices []string
	for i, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); i > 0 && len(f) > 0 { // the first line is the header
			devices = append(devices, f[0])
		}
	}
	if len(devices) == 0 {
		return newResult("swap", true, "off", "")
	}
	return newResult("swap", false, "on ("+strings.Join(devices, ", ")+")",
		"swap is on: the kubelet refuses to start with it (and does not use it for pods); swapoff -a and remove it from /etc/fstab, or pass --kubelet-arg fail-swap-on=false")
}

func orDefault(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

func readTrimmed(file string) string {
	data, _ := os.ReadFile(file)
	return strings.TrimSpace(string(data))
}
