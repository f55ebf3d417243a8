// Package killall stops everything a k1s node runs on this host and removes what it set up
// there (mounts, interfaces, network namespaces, routes, firewall chains, pod cgroups), keeping
// the data directory. It is `k1s killall`.
package killall

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/k1s-io/k1s/internal/agent"
	"github.com/k1s-io/k1s/internal/network"
)

// Options says where k1s kept its state.
type Options struct {
	DataDir string
	// Report receives one line per thing removed.
	Report func(format string, args ...any)
}

// Run removes everything; it continues past failures and returns them joined.
func Run(opts Options) error {
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return err
	}
	// /proc and mountinfo show resolved paths.
	if resolved, err := filepath.EvalSymlinks(dataDir); err == nil {
		dataDir = resolved
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	note(stopProcesses(self, dataDir, opts.Report))
	note(unmountAll(dataDir, opts.Report))
	note(removeNetwork(opts.Report))
	note(removeFirewall(opts.Report))
	note(removeCgroups(opts.Report))
	restored, err := agent.RestoreHostSysctls(dataDir)
	note(err)
	for _, r := range restored {
		opts.Report("restored %s", r)
	}
	note(removeHostFiles(dataDir, opts.Report))
	if err := os.RemoveAll("/run/k1s"); err != nil {
		note(err)
	} else {
		opts.Report("removed /run/k1s")
	}
	return errors.Join(errs...)
}

type proc struct {
	pid, ppid int
	exe, cmd  string
}

func processes() []proc {
	entries, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The command name is in parentheses and may contain spaces; ppid follows it.
		rest := string(stat[bytes.LastIndexByte(stat, ')')+2:])
		fields := strings.Fields(rest)
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, proc{pid: pid, ppid: ppid, exe: strings.TrimSuffix(exe, " (deleted)"), cmd: strings.ReplaceAll(strings.TrimSpace(string(cmdline)), "\x00", " ")})
	}
	return out
}

// stopProcesses stops k1s (server or agent, and its containerd: the same executable), then
// the shims from the payload and every process they started (the pods). Other processes of
// the k1s binary (kubectl sessions) are left alone.
func stopProcesses(self, dataDir string, report func(string, ...any)) error {
	selfInfo, err := os.Stat(self)
	if err != nil {
		return err
	}
	lockHolder := lockHolderPID(dataDir)
	isK1s := func(p proc) bool {
		if p.pid == lockHolder {
			return true
		}
		sameBinary := p.exe == self // also when the binary was replaced since it started
		if info, err := os.Stat(p.exe); err == nil && os.SameFile(info, selfInfo) {
			sameBinary = true
		}
		argv := strings.Fields(p.cmd)
		return sameBinary && len(argv) > 0 && (filepath.Base(argv[0]) == "containerd" ||
			len(argv) > 1 && (argv[1] == "server" || argv[1] == "agent"))
	}
	isShim := func(p proc) bool {
		return filepath.Base(p.exe) == "containerd-shim-runc-v2" && strings.HasPrefix(p.exe, filepath.Join(dataDir, "data")+"/")
	}
	var k1s []proc
	for _, p := range processes() {
		if isK1s(p) {
			k1s = append(k1s, p)
		}
	}
	// k1s first, politely: it stops its components in order.
	for _, p := range k1s {
		_ = syscall.Kill(p.pid, syscall.SIGTERM)
	}
	waitGone(k1s, 15*time.Second)
	for _, p := range k1s {
		if alive(p.pid) && syscall.Kill(p.pid, syscall.SIGKILL) == nil {
			report("killed process %d (%s): it did not stop within 15 s", p.pid, p.cmd)
		} else {
			report("stopped process %d (%s)", p.pid, p.cmd)
		}
	}
	all := processes()
	children := map[int][]proc{}
	for _, p := range all {
		children[p.ppid] = append(children[p.ppid], p)
	}
	var victims []proc
	var walk func(p proc)
	walk = func(p proc) {
		victims = append(victims, p)
		for _, c := range children[p.pid] {
			walk(c)
		}
	}
	for _, p := range all {
		if isShim(p) {
			walk(p)
		}
	}
	for _, p := range victims {
		if syscall.Kill(p.pid, syscall.SIGKILL) == nil {
			report("killed process %d (%s)", p.pid, p.cmd)
		}
	}
	waitGone(victims, 10*time.Second)
	return nil
}

// lockHolderPID is the PID the running k1s wrote into the data directory's lock file, if
// the lock is held (a stale file from a stopped k1s is not a target).
func lockHolderPID(dataDir string) int {
	path := filepath.Join(dataDir, "k1s.lock")
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return 0
	}
	data, _ := os.ReadFile(path)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

func waitGone(ps []proc, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		anyAlive := false
		for _, p := range ps {
			if alive(p.pid) {
				anyAlive = true
				break
			}
		}
		if !anyAlive {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie waiting for its parent does not).
func alive(pid int) bool {
	state, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !bytes.Contains(state, []byte(") Z "))
}

// unmountAll unmounts everything under the data directory and /run/k1s (containerd's state,
// with the pods' network namespaces), deepest first. Other runtimes' mounts are elsewhere.
func unmountAll(dataDir string, report func(string, ...any)) error {
	var points []string
	for _, prefix := range []string{dataDir, "/run/k1s"} {
		mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(prefix))
		if err != nil {
			return err
		}
		for _, m := range mounts {
			points = append(points, m.Mountpoint)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	seen := map[string]bool{}
	for _, mp := range points {
		if seen[mp] {
			continue
		}
		seen[mp] = true
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", mp, err))
			continue
		}
		report("unmounted %s", mp)
	}
	return errors.Join(errs...)
}

// removeNetwork deletes the pod bridge, the veths on it, the service-route interface and
// k1s's routes.
func removeNetwork(report func(string, ...any)) error {
	links, err := netlink.LinkList()
	if err != nil {
		return err
	}
	bridgeIndex := -1
	for _, l := range links {
		if l.Attrs().Name == network.BridgeName {
			bridgeIndex = l.Attrs().Index
		}
	}
	var errs []error
	for _, l := range links {
		a := l.Attrs()
		onBridge := bridgeIndex >= 0 && a.MasterIndex == bridgeIndex && l.Type() == "veth"
		if a.Name == network.BridgeName || a.Name == network.ServiceDummy || onBridge {
			if err := netlink.LinkDel(l); err != nil {
				// A veth goes away with its pod's network namespace.
				if !errors.Is(err, unix.ENODEV) {
					errs = append(errs, fmt.Errorf("deleting interface %s: %w", a.Name, err))
				}
				continue
			}
			report("deleted interface %s", a.Name)
		}
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: network.RouteProtocol, Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		errs = append(errs, fmt.Errorf("listing routes: %w", err))
	}
	for _, r := range routes {
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("deleting route %s: %w", r.Dst, err))
			continue
		}
		report("deleted route %s", r.Dst)
	}
	return errors.Join(errs...)
}

// firewallLine matches, in iptables-save output, the declarations of and jumps to the chains
// of kube-proxy, the CNI plugins and k1s, and the rules in them.
var firewallLine = regexp.MustCompile(`^:(KUBE|CNI|K1S)-|^-A (KUBE|CNI|K1S)-| -[jg] (KUBE|CNI|K1S)-`)

// removeFirewall drops every rule and chain of kube-proxy, the CNI plugins and k1s, from
// iptables (both families) and nftables, leaving the host's own rules.
func removeFirewall(report func(string, ...any)) error {
	var errs []error
	for _, family := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(family + "-save"); err != nil {
			continue
		}
		saved, err := exec.Command(family + "-save").Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s-save: %w", family, err))
			continue
		}
		var kept bytes.Buffer
		removed := 0
		for _, line := range strings.SplitAfter(string(saved), "\n") {
			if firewallLine.MatchString(line) {
				removed++
				continue
			}
			kept.WriteString(line)
		}
		if removed == 0 {
			continue
		}
		restore := exec.Command(family + "-restore")
		restore.Stdin = &kept
		if out, err := restore.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("%s-restore: %v: %s", family, err, out))
			continue
		}
		report("removed %d %s rules and chains of kube-proxy, CNI and k1s", removed, family)
	}
	if _, err := exec.LookPath("nft"); err == nil {
		out, err := exec.Command("nft", "list", "tables").Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("nft list tables: %w", err))
		}
		for _, line := range strings.Split(string(out), "\n") {
			fields := strings.Fields(line)
			if len(fields) == 3 && fields[0] == "table" && (fields[2] == "kube-proxy" || fields[2] == network.NFTTable) {
				if out, err := exec.Command("nft", "delete", "table", fields[1], fields[2]).CombinedOutput(); err != nil {
					errs = append(errs, fmt.Errorf("nft delete table %s %s: %v: %s", fields[1], fields[2], err, strings.TrimSpace(string(out))))
					continue
				}
				report("deleted nftables table %s %s", fields[1], fields[2])
			}
		}
	}
	return errors.Join(errs...)
}

// removeCgroups removes the kubelet's pod cgroups (kubepods*) in every hierarchy.
func removeCgroups(report func(string, ...any)) error {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	var errs []error
	for _, root := range roots {
		tops, _ := filepath.Glob(filepath.Join(root, "kubepods*"))
		for _, top := range tops {
			if info, err := os.Stat(top); err != nil || !info.IsDir() {
				continue
			}
			var dirs []string
			_ = filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, path)
				}
				return nil
			})
			sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
			for _, d := range dirs {
				if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
				}
			}
			report("removed cgroup %s", top)
		}
	}
	return errors.Join(errs...)
}

// removeHostFiles removes what the kubelet, the CNI plugins and the shims write at fixed host
// paths whatever k1s's directories (field notes §8): only entries that are k1s's, or sockets
// nothing listens on any more (another containerd on the host keeps its own).
func removeHostFiles(dataDir string, report func(string, ...any)) error {
	logs, _ := filepath.Glob("/var/log/containers/*.log")
	removed := 0
	for _, l := range logs {
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, dataDir+"/") && os.Remove(l) == nil {
			removed++
		}
	}
	if removed > 0 {
		report("removed %d container log links from /var/log/containers", removed)
	}

	results, _ := filepath.Glob("/var/lib/cni/results/" + network.NetworkName + "-*")
	removed = 0
	for _, r := range results {
		// <network>-<container id>-<interface>; the pod's loopback result has the same id.
		id := strings.TrimPrefix(filepath.Base(r), network.NetworkName+"-")
		if i := strings.LastIndexByte(id, '-'); i > 0 {
			id = id[:i]
		}
		if os.Remove(r) == nil {
			removed++
		}
		if os.Remove("/var/lib/cni/results/cni-loopback-"+id+"-lo") == nil {
			removed++
		}
	}
	if removed > 0 {
		report("removed %d cached CNI results from /var/lib/cni/results", removed)
	}

	sockets, _ := filepath.Glob("/run/containerd/s/*")
	sockets = append(sockets, "/var/lib/kubelet/device-plugins/kubelet.sock")
	removed = 0
	for _, sock := range sockets {
		if stale(sock) && os.Remove(sock) == nil {
			removed++
		}
	}
	if removed > 0 {
		report("removed %d stale shim and kubelet sockets", removed)
	}
	for _, dir := range []string{"/var/lib/kubelet/device-plugins", "/var/lib/kubelet", "/var/lib/cni/results", "/var/lib/cni", "/run/containerd/s", "/run/containerd"} {
		_ = os.Remove(dir) // only if empty: these paths are shared with other runtimes
	}
	return nil
}

// stale reports whether path is a unix socket that nothing accepts connections on.
func stale(path string) bool {
	info, err := os.Lstat(path)
	if err != nil || info.Mode()&os.ModeSocket == 0 {
		return false
	}
	conn, err := net.DialTimeout("unix", path, 200*time.Millisecond)
	if err == nil {
		conn.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
