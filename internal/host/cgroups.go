package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"

	"github.com/k1s-io/k1s/internal/fileutil"
	"github.com/k1s-io/k1s/internal/layout"
)

// CgroupFS is where the hierarchies the kubelet uses are mounted. Mounts elsewhere (say, a
// container's root under /var/lib/machines) are never touched.
const CgroupFS = "/sys/fs/cgroup"

// v2Controllers are the controllers the kubelet uses on cgroup v2 (its supported set, plus io);
// the ones the host has must be enabled down to the cgroup root.
var v2Controllers = []string{"cpu", "cpuset", "io", "memory", "hugetlb", "pids"}

// cgroupRootFile records the kubelet's cgroup root, so that `k1s killall` removes that tree
// and nothing outside it.
func cgroupRootFile(dataDir string) string { return layout.DataDir(dataDir).Node().CgroupRootRecord() }

// CgroupHierarchy is one mounted cgroup tree.
type CgroupHierarchy struct {
	Dir string
	// V2 is a cgroup2 tree: the only one of a v2 host, or the unified one of a hybrid host.
	V2 bool
}

// CgroupHierarchies lists the cgroup trees mounted at or just under /sys/fs/cgroup: every v1
// hierarchy (named ones such as systemd included) and the cgroup2 tree, if any.
func CgroupHierarchies() ([]CgroupHierarchy, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, fmt.Errorf("listing cgroup mounts: %w", err)
	}
	return cgroupHierarchies(mounts), nil
}

func cgroupHierarchies(mounts []*mountinfo.Info) []CgroupHierarchy {
	byDir := map[string]CgroupHierarchy{}
	for _, m := range mounts {
		if m.Mountpoint != CgroupFS && filepath.Dir(m.Mountpoint) != CgroupFS {
			continue
		}
		// A later mount on the same point hides the earlier one.
		byDir[m.Mountpoint] = CgroupHierarchy{Dir: m.Mountpoint, V2: m.FSType == "cgroup2"}
	}
	out := make([]CgroupHierarchy, 0, len(byDir))
	for _, h := range byDir {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out
}

// validateCgroupRoot accepts an absolute, clean path: Clean would have removed any "." or
// "..", so a root equal to its Clean cannot leave the tree it names.
func validateCgroupRoot(root string) error {
	if !path.IsAbs(root) || path.Clean(root) != root || strings.ContainsAny(root, "\n\x00") {
		return fmt.Errorf("kubelet cgroup root %q is not an absolute, clean path: give --kubelet-arg cgroup-root=/NAME (e.g. /k1s-node-b), without \"..\"", root)
	}
	return nil
}

// EnsureCgroupRoot records the kubelet's cgroup root and, unless it is "/", creates it in every
// hierarchy: the kubelet refuses a root missing from any of them ("has some missing paths",
// field notes §6). It records first, so that killall also cleans up after a partial creation.
func EnsureCgroupRoot(dataDir, root string) error {
	if err := validateCgroupRoot(root); err != nil {
		return err
	}
	if err := fileutil.WriteAtomic(cgroupRootFile(dataDir), []byte(root+"\n"), 0o600); err != nil {
		return fmt.Errorf("recording the kubelet cgroup root: %w", err)
	}
	if root == "/" {
		return nil
	}
	hierarchies, err := CgroupHierarchies()
	if err != nil {
		return err
	}
	if len(hierarchies) == 0 {
		return fmt.Errorf("no cgroup hierarchy is mounted under %s: mount cgroup2 (or the v1 controllers) there, as the kubelet needs", CgroupFS)
	}
	var errs []error
	for _, h := range hierarchies {
		errs = append(errs, createCgroup(h, root))
	}
	return errors.Join(errs...)
}

// createCgroup creates root in h level by level. In a cgroup2 tree each level first gets the
// kubelet's controllers enabled for its children (a hybrid host's unified tree offers none);
// in a v1 cpuset hierarchy a new cgroup takes its parent's cpus and mems, without which no
// task may join it.
func createCgroup(h CgroupHierarchy, root string) error {
	dir := h.Dir
	for _, name := range strings.Split(strings.Trim(root, "/"), "/") {
		parent := dir
		dir = filepath.Join(dir, name)
		if h.V2 {
			if err := enableControllers(parent); err != nil {
				return err
			}
		}
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("creating cgroup %s: %w; run k1s as root with %s writable, or choose another --kubelet-arg cgroup-root", dir, err, CgroupFS)
		}
		if !h.V2 {
			if err := inheritCpuset(parent, dir); err != nil {
				return err
			}
		}
	}
	return nil
}

// enableControllers enables in dir's cgroup.subtree_control those of the kubelet's controllers
// that dir has and does not yet pass on.
func enableControllers(dir string) error {
	available, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("reading the controllers of cgroup %s: %w", dir, err)
	}
	enabled, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	have, on := strings.Fields(string(available)), strings.Fields(string(enabled))
	var add []string
	for _, c := range v2Controllers {
		if slices.Contains(have, c) && !slices.Contains(on, c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	file := filepath.Join(dir, "cgroup.subtree_control")
	if err := os.WriteFile(file, []byte(strings.Join(add, " ")), 0o644); err != nil {
		return fmt.Errorf("enabling %s in %s: %w (a cgroup with processes of its own cannot pass controllers on: move them to a child cgroup, or choose another --kubelet-arg cgroup-root)", strings.Join(add, " "), file, err)
	}
	return nil
}

// inheritCpuset copies cpuset.cpus and cpuset.mems from parent into an empty child, in that
// order (the kernel wants both before a task joins). Other hierarchies have no such files.
func inheritCpuset(parent, child string) error {
	for _, name := range []string{"cpuset.cpus", "cpuset.mems"} {
		value, err := os.ReadFile(filepath.Join(parent, name))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", filepath.Join(parent, name), err)
		}
		file := filepath.Join(child, name)
		if current, err := os.ReadFile(file); err == nil && strings.TrimSpace(string(current)) != "" {
			continue
		}
		if err := os.WriteFile(file, value, 0o644); err != nil {
			return fmt.Errorf("copying %s from %s: %w", file, parent, err)
		}
	}
	return nil
}

// RecordedCgroupRoot is the cgroup root the node's kubelet used: "/" when nothing valid was
// recorded (nodes before the record existed used "/").
func RecordedCgroupRoot(dataDir string) string {
	data, err := os.ReadFile(cgroupRootFile(dataDir))
	if err != nil {
		return "/"
	}
	root := strings.TrimSpace(string(data))
	if validateCgroupRoot(root) != nil {
		return "/"
	}
	return root
}
