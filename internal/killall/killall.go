// Package killall stops one k1s node (server or agent) on this host and removes what it set up
// there (mounts, interfaces, routes, firewall chains, pod cgroups, sysctls), keeping the data
// directory. It is `k1s killall`. Several nodes may share a host, each with its own data
// directory, and agents in their own network and mount namespaces: killall acts only on the
// node of the data directory it is given, in the namespaces it runs in.
package killall

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/k1s-io/k1s/internal/host"
	"github.com/k1s-io/k1s/internal/layout"
)

// Options says where k1s kept its state.
type Options struct {
	DataDir string
	// Report receives one line per thing removed.
	Report func(format string, args ...any)
}

// NotDataDirError is returned, before anything is touched, for a directory without k1s.lock
// (the lock k1s server and agent hold, with their PID in it).
type NotDataDirError struct{ Dir string }

func (e *NotDataDirError) Error() string {
	return fmt.Sprintf("%s is not a k1s data directory (no %s): give the --data-dir k1s ran with", e.Dir, filepath.Base(layout.DataDir(e.Dir).Lock()))
}

// Run removes everything of the node; it continues past failures and returns them joined.
func Run(opts Options) error {
	dataDir, err := checkDataDir(opts.DataDir)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locating the k1s binary: %w", err)
	}
	cgroupRoot := host.RecordedCgroupRoot(dataDir)
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	note(stopProcesses(self, dataDir, opts.Report))
	// A control plane without a node (--disable-agent) set up nothing of a node on the host:
	// the host's pod network, firewall chains and /run/k1s belong to another k1s, if any.
	if !ranNode(dataDir) {
		note(unmountAll(opts.Report, dataDir))
		opts.Report("no node ran from %s: the host's network, firewall and node state are left alone", dataDir)
		return errors.Join(errs...)
	}
	note(unmountAll(opts.Report, dataDir, layout.RunDir))
	note(removeNetwork(opts.Report))
	note(removeFirewall(opts.Report))
	note(removeCgroups(cgroupRoot, opts.Report))
	restored, err := host.RestoreSysctls(dataDir)
	note(err)
	for _, r := range restored {
		opts.Report("restored %s", r)
	}
	note(removeHostFiles(dataDir, opts.Report))
	note(removeRunDir(opts.Report))
	return errors.Join(errs...)
}

// ranNode reports whether a node (an agent, or a server's own node) ever ran from dataDir.
func ranNode(dataDir string) bool {
	info, err := os.Stat(layout.DataDir(dataDir).Node().Dir())
	return err == nil && info.IsDir()
}

// checkDataDir returns dir absolute and resolved (as /proc and mountinfo show paths), if it
// is a k1s data directory.
func checkDataDir(dir string) (string, error) {
	dataDir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("resolving data directory %s: %w", dir, err)
	}
	if resolved, err := filepath.EvalSymlinks(dataDir); err == nil {
		dataDir = resolved
	}
	info, err := os.Lstat(layout.DataDir(dataDir).Lock())
	if errors.Is(err, fs.ErrNotExist) || err == nil && !info.Mode().IsRegular() {
		return "", &NotDataDirError{Dir: dataDir}
	}
	if err != nil {
		return "", fmt.Errorf("checking data directory %s: %w; run killall as root", dataDir, err)
	}
	return dataDir, nil
}

// unmountAll unmounts everything below the prefixes, deepest first: the data directory and,
// for a node, /run/k1s (containerd's state, with the pods' network namespaces). They stay
// mounted: a dedicated disk for the data, or an agent's private /run/k1s, is not k1s's mount.
func unmountAll(report func(string, ...any), prefixes ...string) error {
	var points []string
	for _, prefix := range prefixes {
		mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(prefix))
		if err != nil {
			return fmt.Errorf("listing mounts: %w", err)
		}
		for _, m := range mounts {
			if m.Mountpoint != prefix {
				points = append(points, m.Mountpoint)
			}
		}
	}
	sort.SliceStable(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, mp := range points {
		err := unix.Unmount(mp, unix.MNT_DETACH)
		switch {
		case err == nil:
			report("unmounted %s", mp)
		case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT):
			// Already gone with its parent.
		default:
			errs = append(errs, fmt.Errorf("unmounting %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// removeRunDir empties /run/k1s, and removes it unless it is a mount point (an agent's
// private tmpfs: removing it would uncover, and let the next step touch, the host's).
func removeRunDir(report func(string, ...any)) error {
	mounted, err := mountinfo.Mounted(layout.RunDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking %s: %w", layout.RunDir, err)
	}
	if !mounted {
		if err := os.RemoveAll(layout.RunDir); err != nil {
			return fmt.Errorf("removing %s: %w", layout.RunDir, err)
		}
		report("removed %s", layout.RunDir)
		return nil
	}
	entries, _ := os.ReadDir(layout.RunDir)
	if len(entries) == 0 {
		return nil
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(layout.RunDir, e.Name())))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("emptying %s: %w", layout.RunDir, err)
	}
	report("emptied %s", layout.RunDir)
	return nil
}

// removeHostFiles removes what the kubelet, the CNI plugins and the shims write at fixed host
// paths whatever k1s's directories (field notes §8), only where it is this node's: container
// log links into the data directory, CNI results of this node's pods, sockets of this node's
// shims once nothing listens on them.
func removeHostFiles(dataDir string, report func(string, ...any)) error {
	logs, _ := filepath.Glob(filepath.Join(layout.ContainerLogLinks, "*.log"))
	removed := 0
	for _, l := range logs {
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, dataDir+"/") && os.Remove(l) == nil {
			removed++
		}
	}
	if removed > 0 {
		report("removed %d container log links from %s", removed, layout.ContainerLogLinks)
	}

	pods, shimSockets := nodeTasks(layout.ContainerdTaskDir)
	results := cniResults(layout.CNIResultsDir)
	for _, r := range results {
		if bytes.Contains(r.config, []byte(dataDir+"/")) {
			pods[r.id] = true // so its loopback result goes too
		}
	}
	removed = 0
	for _, r := range results {
		if pods[r.id] && os.Remove(r.path) == nil {
			removed++
		}
	}
	if removed > 0 {
		report("removed %d cached CNI results from %s", removed, layout.CNIResultsDir)
	}

	// The kubelet's registration socket has a fixed path whatever the node; a stale one is
	// nobody's, a live one another node's.
	sockets := append(shimSockets, layout.KubeletDevicePluginSocket)
	removed = 0
	for _, sock := range sockets {
		if stale(sock) && os.Remove(sock) == nil {
			removed++
		}
	}
	if removed > 0 {
		report("removed %d stale shim and kubelet sockets", removed)
	}
	if removeIdleDeviceCheckpoint(layout.KubeletDeviceCheckpoint, layout.KubeletDevicePluginSocket) {
		report("removed %s, which records no device", layout.KubeletDeviceCheckpoint)
	}
	for _, dir := range layout.SharedHostDirs {
		_ = os.Remove(dir) // only if empty: these paths are shared with other runtimes
	}
	return nil
}

// removeIdleDeviceCheckpoint removes the kubelet's device manager checkpoint (a fixed path,
// like its socket) when no kubelet serves beside it and it records no device: then it is no
// runtime's state, and keeping it would keep the shared directory. One that records devices
// may be another kubelet's and stays.
func removeIdleDeviceCheckpoint(checkpoint, socket string) bool {
	if _, err := os.Lstat(socket); !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	data, err := os.ReadFile(checkpoint)
	if err != nil {
		return false
	}
	var cp struct {
		Data *struct {
			PodDeviceEntries  []json.RawMessage
			RegisteredDevices map[string][]string
		}
	}
	if json.Unmarshal(data, &cp) != nil || cp.Data == nil || len(cp.Data.PodDeviceEntries) > 0 {
		return false
	}
	for _, devices := range cp.Data.RegisteredDevices {
		if len(devices) > 0 {
			return false
		}
	}
	return os.Remove(checkpoint) == nil
}

// nodeTasks reads this node's containerd task bundles: their IDs (a pod's sandbox ID is the
// container ID of its CNI results) and their shims' sockets, which are in /run/containerd/s
// whatever containerd's state directory.
func nodeTasks(taskDir string) (ids map[string]bool, sockets []string) {
	ids = map[string]bool{}
	bundles, _ := filepath.Glob(filepath.Join(taskDir, "*", "*"))
	for _, b := range bundles {
		ids[filepath.Base(b)] = true
		address := ""
		if data, err := os.ReadFile(filepath.Join(b, "bootstrap.json")); err == nil {
			var params struct {
				Address string `json:"address"`
			}
			if json.Unmarshal(data, &params) == nil {
				address = params.Address
			}
		} else if data, err := os.ReadFile(filepath.Join(b, "address")); err == nil {
			address = strings.TrimSpace(string(data))
		}
		if path, ok := strings.CutPrefix(address, "unix://"); ok && filepath.Dir(path) == layout.ShimSocketDir && filepath.Clean(path) == path {
			sockets = append(sockets, path)
		}
	}
	return ids, sockets
}

type cniResult struct {
	path, id string
	config   []byte
}

// cniResults reads libcni's cached results: for which container, with which network
// configuration (a pod's bridge network names host-local's directory, under the data directory).
func cniResults(dir string) []cniResult {
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	var out []cniResult
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var cached struct {
			ContainerID string `json:"containerId"`
			Config      []byte `json:"config"`
		}
		if json.Unmarshal(data, &cached) == nil && cached.ContainerID != "" {
			out = append(out, cniResult{path: f, id: cached.ContainerID, config: cached.Config})
		}
	}
	return out
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
