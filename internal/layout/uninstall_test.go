package layout

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The uninstall removes whole only what is k1s's alone: never a directory other runtimes share.
func TestUninstallPaths(t *testing.T) {
	got := UninstallPaths(DataDir("/srv/k1s"))
	want := []string{"/srv/k1s", "/run/k1s", "/etc/k1s"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("UninstallPaths = %q, want %q", got, want)
	}
	// The uninstall script refuses anything but clean absolute paths other than "/".
	for _, p := range UninstallPaths(DataDir(DefaultDataDir)) {
		if p == "/" || !filepath.IsAbs(p) || filepath.Clean(p) != p {
			t.Errorf("%q is not a clean absolute path below /", p)
		}
	}
	// killall removes these when a node's clean-up leaves them empty.
	for _, dir := range []string{KubeletHostDir, CNIStateDir, ContainerLogLinks} {
		if !slices.Contains(SharedHostDirs, dir) {
			t.Errorf("%s is not one of SharedHostDirs %q", dir, SharedHostDirs)
		}
	}
}

// install.sh's uninstall script refuses a data directory without the lock k1s holds in it, and
// never removes whole a directory other runtimes share: it names both as layout does.
func TestInstallScriptNames(t *testing.T) {
	script, err := os.ReadFile(filepath.Join("..", "..", "install.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if lock := filepath.Base(DataDir(DefaultDataDir).Lock()); !strings.Contains(string(script), `"$data_dir/`+lock+`"`) {
		t.Errorf("install.sh's uninstall script does not check for %s", lock)
	}
	var shared []string
	for _, line := range strings.Split(string(script), "\n") {
		if list, ok := strings.CutPrefix(line, "SHARED_DIRS='"); ok {
			shared = strings.Fields(strings.TrimSuffix(list, "'"))
		}
	}
	for _, dir := range append([]string{PodLogsDir}, SharedHostDirs...) {
		if !slices.Contains(shared, dir) {
			t.Errorf("install.sh's SHARED_DIRS %q lacks %s", shared, dir)
		}
	}
}
