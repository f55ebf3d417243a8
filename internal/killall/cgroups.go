package killall

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/k1s-io/k1s/internal/host"
)

// removeCgroups removes the kubelet's cgroups in every hierarchy: the recorded cgroup root
// with everything below it, or with root "/", the kubepods* trees only.
func removeCgroups(root string, report func(string, ...any)) error {
	hierarchies, err := host.CgroupHierarchies()
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range hierarchies {
		for _, top := range cgroupTops(h.Dir, root) {
			if err := removeTree(top); err != nil {
				errs = append(errs, err)
				continue
			}
			report("removed cgroup %s", top)
		}
	}
	return errors.Join(errs...)
}

// cgroupTops are the trees to remove in the hierarchy mounted at dir. root was validated
// (absolute, clean), so joining it cannot leave dir.
func cgroupTops(dir, root string) []string {
	if root != "/" {
		top := filepath.Join(dir, root)
		if info, err := os.Lstat(top); err == nil && info.IsDir() && strings.HasPrefix(top, dir+"/") {
			return []string{top}
		}
		return nil
	}
	var tops []string
	matches, _ := filepath.Glob(filepath.Join(dir, "kubepods*"))
	for _, m := range matches {
		if info, err := os.Lstat(m); err == nil && info.IsDir() {
			tops = append(tops, m)
		}
	}
	return tops
}

// removeTree removes the cgroup top and those below it, deepest first (rmdir: a cgroup with
// processes left stays, and says so).
func removeTree(top string) error {
	var dirs []string
	_ = filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	// A child's path is longer than its parent's.
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var first error
	failed := 0
	for _, d := range dirs {
		// Go on past a failure: sibling trees may still go.
		if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
			if first == nil {
				first = fmt.Errorf("removing cgroup %s: %w", d, err)
			}
			failed++
		}
	}
	if failed > 1 {
		return fmt.Errorf("%w (and %d cgroups above or beside it)", first, failed-1)
	}
	return first
}
