package host

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
)

func TestValidateCgroupRoot(t *testing.T) {
	for root, ok := range map[string]bool{
		"/": true, "/k1s-node-b": true, "/k1s/node-b": true,
		"": false, "k1s": false, "/k1s/": false, "/k1s/../etc": false, "/..": false, "/./k1s": false, "//k1s": false, "/k1s\n/x": false,
	} {
		err := validateCgroupRoot(root)
		if (err == nil) != ok {
			t.Errorf("validateCgroupRoot(%q) = %v", root, err)
		}
		if err != nil && !strings.Contains(err.Error(), "--kubelet-arg cgroup-root") {
			t.Errorf("error %q does not name the flag", err)
		}
	}
}

func TestRecordedCgroupRoot(t *testing.T) {
	dataDir := t.TempDir()
	if got := RecordedCgroupRoot(dataDir); got != "/" {
		t.Errorf("without a record: %q", got)
	}
	if err := EnsureCgroupRoot(dataDir, "/"); err != nil {
		t.Fatal(err)
	}
	if got := RecordedCgroupRoot(dataDir); got != "/" {
		t.Errorf("after recording /: %q", got)
	}
	if err := EnsureCgroupRoot(dataDir, "/../x"); err == nil {
		t.Error("an unclean root was accepted")
	}
	if err := os.WriteFile(cgroupRootFile(dataDir), []byte("/a/../../x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := RecordedCgroupRoot(dataDir); got != "/" {
		t.Errorf("an invalid record gave %q", got)
	}
	if err := os.WriteFile(cgroupRootFile(dataDir), []byte("/k1s-node-b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := RecordedCgroupRoot(dataDir); got != "/k1s-node-b" {
		t.Errorf("recorded root read as %q", got)
	}
}

func TestCgroupHierarchies(t *testing.T) {
	mounts := []*mountinfo.Info{
		{Mountpoint: "/sys/fs/cgroup/cpu,cpuacct", FSType: "cgroup"},
		{Mountpoint: "/sys/fs/cgroup/systemd", FSType: "cgroup"},
		{Mountpoint: "/sys/fs/cgroup/unified", FSType: "cgroup2"},
		{Mountpoint: "/var/lib/machines/c/sys/fs/cgroup/cpu", FSType: "cgroup"},
		{Mountpoint: "/sys/fs/cgroup/a/b", FSType: "cgroup"},
	}
	got := cgroupHierarchies(mounts)
	want := []CgroupHierarchy{{Dir: "/sys/fs/cgroup/cpu,cpuacct"}, {Dir: "/sys/fs/cgroup/systemd"}, {Dir: "/sys/fs/cgroup/unified", V2: true}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("got %v, want %v", got, want)
		}
	}
}

// The cgroup files are plain files here: only the logic is tested.
func TestCreateCgroup(t *testing.T) {
	cpuset := t.TempDir()
	write(t, filepath.Join(cpuset, "cpuset.cpus"), "0-1\n")
	write(t, filepath.Join(cpuset, "cpuset.mems"), "0\n")
	if err := createCgroup(CgroupHierarchy{Dir: cpuset}, "/k1s/node-b"); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"k1s/cpuset.cpus", "k1s/node-b/cpuset.cpus"} {
		if data, _ := os.ReadFile(filepath.Join(cpuset, file)); string(data) != "0-1\n" {
			t.Errorf("%s = %q", file, data)
		}
	}

	v2 := t.TempDir()
	write(t, filepath.Join(v2, "cgroup.controllers"), "cpuset cpu io memory pids rdma\n")
	write(t, filepath.Join(v2, "cgroup.subtree_control"), "cpu memory\n")
	if err := os.Mkdir(filepath.Join(v2, "k1s"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(v2, "k1s", "cgroup.controllers"), "cpu memory\n")
	if err := createCgroup(CgroupHierarchy{Dir: v2, V2: true}, "/k1s/node-b"); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(v2, "cgroup.subtree_control")); string(data) != "+cpuset +io +pids" {
		t.Errorf("root subtree_control = %q", data)
	}
	if data, _ := os.ReadFile(filepath.Join(v2, "k1s", "cgroup.subtree_control")); string(data) != "+cpu +memory" {
		t.Errorf("k1s subtree_control = %q", data)
	}
	if info, err := os.Stat(filepath.Join(v2, "k1s", "node-b")); err != nil || !info.IsDir() {
		t.Errorf("root not created: %v", err)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
