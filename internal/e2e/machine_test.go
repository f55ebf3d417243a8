//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A machine is a Debian root booted with a real systemd under systemd-nspawn (field notes,
// "A real systemd without a systemd host"), for the tests of install.sh and the service:
//
//   - its network is a node namespace of a testNetwork (eth0 on the test bridge, no default
//     route), so whatever k1s sets up there stays there and no packet leaves the machine;
//   - it runs in a cgroup of its own, /k1s-e2e-<id>-<name> in every hierarchy, which its cgroup
//     namespace shows as the root: its systemd and kubelet see a whole cgroup tree, and two
//     machines do not share one;
//   - commands go in with nsenter into the namespaces of its systemd.
//
// Clean-up powers it off, kills what is left, removes its cgroups and its root.
type machine struct {
	t    testing.TB
	name string
	root string
	node *clusterNode
	log  string

	nspawn *exec.Cmd
	done   chan struct{}
	leader int
}

// debianRoot returns the cached tarball of a Debian root with systemd (scripts/debian-root.sh).
func debianRoot(t testing.TB) string {
	t.Helper()
	script := filepath.Join(filepath.Dir(*k1sBinary), "..", "scripts", "debian-root.sh")
	out, err := exec.Command(script).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("making the Debian root for systemd-nspawn: %v\n%s", err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// newTestNetwork is a test bridge with no server: node namespaces are added with addNode.
func newTestNetwork(t testing.TB) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir()}
	c.pickNetwork()
	c.createBridge()
	return c
}

// bootMachine unpacks the Debian root and boots it in a new node namespace of network.
func bootMachine(t testing.TB, network *cluster, name string) *machine {
	t.Helper()
	tarball := debianRoot(t)
	sysctls := readSysctls(t) // the machine's kubelet sets the (shared) kernel's
	t.Cleanup(func() {
		for k, v := range sysctls {
			_ = os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644)
		}
	})
	m := &machine{t: t, name: name, node: network.addNode(name)}
	m.node.machine = true
	m.root = filepath.Join(m.node.dir, "root")
	m.log = filepath.Join(m.node.dir, "nspawn.log")
	if err := os.MkdirAll(m.root, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.shutdown(t) }) // runs before the node namespace's clean-up
	hostRun(t, "tar", "-C", m.root, "-xf", tarball)
	// The machine's network is set up from outside, as on a host whose network is configured by
	// other means: systemd-networkd has nothing to manage, and waiting for it would hold
	// network-online.target (which the k1s unit wants) for two minutes.
	for _, unit := range []string{"systemd-networkd.service", "systemd-networkd.socket", "systemd-networkd-wait-online.service"} {
		if err := os.Symlink("/dev/null", filepath.Join(m.root, "etc/systemd/system", unit)); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	// Nothing in the machine resolves names through the host's resolver. Its host name is
	// the node's name.
	for file, content := range map[string]string{"resolv.conf": "nameserver 127.0.0.1\n", "hostname": name + "\n"} {
		if err := os.WriteFile(filepath.Join(m.root, "etc", file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cgroup := m.cgroupName()
	// The wrapper moves itself into the machine's cgroups, then becomes systemd-nspawn.
	script := `set -e
if [ -f /sys/fs/cgroup/cgroup.procs ]; then hs=/sys/fs/cgroup; else hs=$(echo /sys/fs/cgroup/*); fi
for h in $hs; do
	if [ -L "$h" ] || [ ! -f "$h/cgroup.procs" ]; then continue; fi
	mkdir -p "$h/` + cgroup + `"
	for f in cpuset.cpus cpuset.mems; do if [ -f "$h/$f" ]; then cat "$h/$f" > "$h/` + cgroup + `/$f"; fi; done
	echo $$ > "$h/` + cgroup + `/cgroup.procs"
done
exec systemd-nspawn "$@"`
	logFile, err := os.Create(m.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	nspawn := []string{"-D", m.root, "--boot", "--register=no", "--keep-unit", "--machine", name,
		"--network-namespace-path=/run/netns/" + m.node.netns, "--resolv-conf=off", "--timezone=off",
		"--link-journal=no", "--console=read-only", "--capability=all", "--bind-ro=/dev/kmsg", // the kubelet's OOM watcher
		// runc and the kubelet use these, which nspawn's filter denies by default.
		"--system-call-filter=add_key keyctl bpf perf_event_open"}
	m.nspawn = exec.Command("sh", append([]string{"-c", script, "sh"}, nspawn...)...)
	// The kubelet and kube-proxy write kernel settings under /proc/sys and /sys.
	m.nspawn.Env = append(os.Environ(), "SYSTEMD_NSPAWN_API_VFS_WRITABLE=1")
	m.nspawn.Stdout, m.nspawn.Stderr = logFile, logFile
	m.nspawn.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.nspawn.Start(); err != nil {
		t.Fatal(err)
	}
	m.done = make(chan struct{})
	go func() { _ = m.nspawn.Wait(); close(m.done) }()

	eventually(t, time.Minute, "machine "+name+" booting systemd", func() error {
		select {
		case <-m.done:
			log, _ := os.ReadFile(m.log)
			t.Fatalf("systemd-nspawn exited:\n%s", log)
		default:
		}
		if m.leader == 0 {
			if m.leader = containerInit(m.nspawn.Process.Pid); m.leader == 0 {
				return fmt.Errorf("no container init yet")
			}
		}
		out, _ := m.exec("systemctl", "is-system-running")
		if s := strings.TrimSpace(out); s != "running" && s != "degraded" {
			return fmt.Errorf("systemd is %q", s)
		}
		return nil
	})
	// nspawn mounts the v1 controllers read-only (they are the host's hierarchies, under the
	// machine's cgroup namespace); on a real host they are writable.
	m.mustExec("sh", "-c", `for d in /sys/fs/cgroup/*/; do mount -o remount,bind,rw "$d"; done`)
	return m
}

// sigPoweroff is SIGRTMIN+4 (SIGRTMIN is 34 for glibc programs such as systemd): systemd as
// PID 1 powers off on it.
const sigPoweroff = syscall.Signal(38)

func (m *machine) cgroupName() string { return "k1s-e2e-" + m.node.c.id + "-" + m.name }

// containerInit returns the PID of the systemd that systemd-nspawn (pid) started, 0 if none
// yet (its first child only sets up the container and exits).
func containerInit(pid int) int {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	for _, f := range strings.Fields(string(data)) {
		comm, _ := os.ReadFile("/proc/" + f + "/comm")
		if strings.TrimSpace(string(comm)) == "systemd" {
			child, _ := strconv.Atoi(f)
			return child
		}
	}
	return 0
}

// command runs args in the machine as root, with a plain environment.
func (m *machine) command(ctx context.Context, env []string, args ...string) *exec.Cmd {
	nsenter := []string{"-t", strconv.Itoa(m.leader), "-m", "-u", "-i", "-n", "-p", "-C", "--",
		"env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	nsenter = append(append(nsenter, env...), args...)
	cmd := exec.CommandContext(ctx, "nsenter", nsenter...)
	cmd.Dir = "/"
	return cmd
}

// exec runs args in the machine (within 2 minutes) and returns their output.
func (m *machine) exec(args ...string) (string, error) {
	return m.execEnv(2*time.Minute, nil, args...)
}

func (m *machine) execEnv(timeout time.Duration, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := m.command(ctx, env, args...).CombinedOutput()
	return string(out), err
}

func (m *machine) mustExec(args ...string) string {
	m.t.Helper()
	out, err := m.exec(args...)
	if err != nil {
		m.t.Fatalf("machine %s: %s: %v\n%s", m.name, strings.Join(args, " "), err, out)
	}
	return out
}

// shutdown powers the machine off (killing it after 30 s), then removes its cgroups.
func (m *machine) shutdown(t testing.TB) {
	if m.nspawn == nil || m.nspawn.Process == nil {
		return
	}
	select {
	case <-m.done:
	default:
		if m.leader != 0 {
			_ = syscall.Kill(m.leader, sigPoweroff)
		}
		select {
		case <-m.done:
		case <-time.After(30 * time.Second):
			t.Errorf("machine %s did not power off within 30 s; killing it", m.name)
			_ = syscall.Kill(-m.nspawn.Process.Pid, syscall.SIGKILL)
			if m.leader != 0 {
				_ = syscall.Kill(m.leader, syscall.SIGKILL)
			}
			<-m.done
		}
	}
	// nspawn's lock on the root directory, and its directories if nothing else uses them.
	var st syscall.Stat_t
	if err := syscall.Stat(m.root, &st); err == nil {
		_ = os.Remove(fmt.Sprintf("/run/systemd/nspawn/locks/inode-%d:%d", st.Dev, st.Ino))
	}
	for _, d := range []string{"/run/systemd/nspawn/locks", "/run/systemd/nspawn/propagate", "/run/systemd/nspawn"} {
		_ = os.Remove(d) // only if empty
	}
	// The machine's processes are gone with its PID namespace (a machine that never booted may
	// have left some); its cgroups stay, empty.
	var dirs []string
	tops, _ := filepath.Glob("/sys/fs/cgroup/" + m.cgroupName())
	more, _ := filepath.Glob("/sys/fs/cgroup/*/" + m.cgroupName())
	for _, top := range append(tops, more...) {
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	for _, d := range dirs {
		procs, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		for _, p := range strings.Fields(string(procs)) {
			if pid, err := strconv.Atoi(p); err == nil {
				t.Errorf("machine %s: process %d left after power-off; killing it", m.name, pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	deadline := time.Now().Add(10 * time.Second)
	for _, d := range dirs {
		for {
			err := os.Remove(d)
			if err == nil || os.IsNotExist(err) || time.Now().After(deadline) {
				if err != nil && !os.IsNotExist(err) {
					t.Errorf("removing cgroup %s of machine %s: %v", d, m.name, err)
				}
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// serveIn serves dir over HTTP on 127.0.0.1 of the network namespace netns ("": the test's own)
// and returns the port. The listening socket is made on a thread that entered netns; that
// thread is then discarded.
func serveIn(t testing.TB, netns, dir string) int {
	t.Helper()
	type result struct {
		l   net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		if netns == "" {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			ch <- result{l, err}
			return
		}
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		fd, err := unix.Open("/run/netns/"+netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("entering netns %s: %w", netns, err)}
			return
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		ch <- result{l, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(r.l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r.l.Addr().(*net.TCPAddr).Port
}
