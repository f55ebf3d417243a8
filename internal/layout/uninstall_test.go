package layout

import (
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// The uninstall removes what install.sh's uninstall script removed before it asked k1s.
func TestUninstallPaths(t *testing.T) {
	got := UninstallPaths(DataDir("/srv/k1s"))
	want := []string{"/srv/k1s", "/run/k1s", "/var/lib/cni", "/var/log/pods", "/var/log/containers", "/var/lib/kubelet", "/etc/k1s"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("UninstallPaths = %q, want %q", got, want)
	}
	// The uninstall script refuses anything but clean absolute paths other than "/".
	for _, p := range UninstallPaths(DataDir(DefaultDataDir)) {
		if p == "/" || !filepath.IsAbs(p) || filepath.Clean(p) != p {
			t.Errorf("%q is not a clean absolute path below /", p)
		}
	}
	// The host directories removed whole are those upstream code creates for a node.
	for _, dir := range []string{KubeletHostDir, CNIStateDir} {
		if !slices.Contains(SharedHostDirs, dir) {
			t.Errorf("%s is not one of SharedHostDirs %q", dir, SharedHostDirs)
		}
	}
}
