//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A multi-node cluster on this one machine (field notes, "Two nodes on one machine"):
//
//   - the server runs on the host, its node (if any) on a test bridge k1sbr<id> with the
//     address 10.199.<n>.1/24, which is also the apiserver's address for the agents;
//   - each agent is a "node namespace": a network namespace k1s-e2e-<id>-<name> joined to the
//     bridge by a veth (eth0 inside, 10.199.<n>.<i>/24, no default route), and a holder process
//     (sleep) that owns a private mount namespace with tmpfs over the host paths a node writes
//     whatever its data directory (nodePrivateDirs). Everything for that node runs through
//     `nsenter -t <holder> -m -n`;
//   - each agent has its own data directory, resolv.conf (nameserver 127.0.0.1) and kubelet
//     cgroup root /k1s-e2e-<node name>.
//
// No packet leaves the machine: the bridge has no uplink and the namespaces no default route.
// Clean-up runs in reverse order whatever happened, then checks that nothing is left.

// nodePrivateDirs get a private tmpfs in each node namespace: the fixed host paths of a node
// (field notes §8; /run/mount first: mount(8) itself creates it), and /run/netns so the
// namespace holds no references to the host's namespaces.
var nodePrivateDirs = []string{"/run/mount", "/run/k1s", "/run/containerd", "/run/flannel", "/run/netns", "/var/lib/cni",
	"/var/log/pods", "/var/log/containers", "/var/lib/kubelet"}

// Defaults of k1s the clean-up checks look for.
var clusterRanges = []string{"10.42.", "10.43."}

// joinTokenPattern is the full join token: K10<CA hash>::<id>.<secret>.
var joinTokenPattern = regexp.MustCompile(`K10([0-9a-f]{64})::([a-z0-9]{6})\.([a-z0-9]{16})`)

// nodeLeftoverChain matches, in iptables-save output, what kube-proxy, the CNI plugins, k1s and
// flannel put there.
var nodeLeftoverChain = regexp.MustCompile(`(KUBE|CNI|K1S|FLANNEL)-`)

// clusterOptions says what newTestCluster builds.
type clusterOptions struct {
	// disableAgent runs the server as a control plane only (no node on the host).
	disableAgent bool
	// backend is --flannel-backend for every node; empty leaves k1s's default (vxlan).
	backend string
	// serverArgs are added to the server's flags, agentArgs to every agent's.
	serverArgs []string
	agentArgs  []string
}

// testCluster is a k1s server on the host and agents in node namespaces, on a private bridge.
type testCluster struct {
	t    testing.TB
	opts clusterOptions
	// id (4 hex digits) names everything of this cluster on the host.
	id  string
	dir string

	server *server
	// serverNode is the server's node name ("" with disableAgent).
	serverNode string
	// token is the server's join token (<data-dir>/server/node-token).
	token string

	bridge string
	// subnet is the bridge's /24 without its last number: "10.199.<n>.".
	subnet   string
	lastHost int
	agents   []*agentNode

	image string
	// createdDirs are host directories that did not exist before the cluster; clean-up
	// removes them if empty.
	createdDirs []string
}

// agentNode is one node namespace (network namespace, veth, holder of the mount namespace)
// and the k1s agents run in it.
type agentNode struct {
	c *testCluster
	// name is the node name of its main agent.
	name string
	ip   string
	dir  string

	netns    string
	hostVeth string
	holder   *exec.Cmd
	held     chan struct{}

	// proc is the node's main agent (started by startAgent); procs are all agents run here,
	// dataDirs all their data directories, for the clean-up.
	proc     *server
	procs    []*server
	dataDirs []string
	// machine: a booted machine uses the namespace (machine_test.go); it checks what it
	// leaves itself, and the namespace goes with whatever is left in it.
	machine bool
}

// newTestCluster creates the bridge, starts the server (with its node on the bridge unless
// opts.disableAgent) and waits for its API. Everything is removed by the test's clean-up.
func newTestCluster(t testing.TB, opts clusterOptions) *testCluster {
	t.Helper()
	c := &testCluster{t: t, opts: opts, dir: t.TempDir()}
	c.pickNetwork()
	sysctls := readSysctls(t)
	for _, d := range nodePrivateDirs {
		if _, err := os.Stat(d); os.IsNotExist(err) {
			c.createdDirs = append(c.createdDirs, d)
		}
	}
	// Registered first, so it runs last: after the agents, the bridge and the server are gone.
	t.Cleanup(func() {
		for k, v := range sysctls {
			_ = os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644)
		}
		for i := len(c.createdDirs) - 1; i >= 0; i-- {
			d := c.createdDirs[i]
			if d == "/run/netns" {
				// `ip netns add` made it a mount point (a shared bind mount of itself).
				if entries, err := os.ReadDir(d); err != nil || len(entries) > 0 {
					continue
				}
				_ = syscall.Unmount(d, syscall.MNT_DETACH)
			}
			_ = os.Remove(d) // only when empty: a server's node on the host may use it still
		}
		c.assertClean(t)
	})

	serverDir := filepath.Join(c.dir, "server")
	if err := os.MkdirAll(serverDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if opts.disableAgent {
		c.server = newServerIn(t, serverDir, append([]string{"--disable-agent", "--advertise-address", c.gateway()}, opts.serverArgs...)...)
	} else {
		c.serverNode = "server"
		args := []string{"--node-ip", c.gateway(), "--node-name", c.serverNode, "--flannel-iface", c.bridge}
		if opts.backend != "" {
			args = append(args, "--flannel-backend", opts.backend)
		}
		// newNodeIn's clean-up (registered now, so after the bridge's is done) stops the
		// server, runs killall for it and puts the kernel settings back.
		c.server = newNodeIn(t, serverDir, nil, append(args, opts.serverArgs...)...)
	}

	c.createBridge()
	c.server.start()
	c.server.waitReady(3 * time.Minute)
	tokenFile := filepath.Join(c.server.dataDir, "server", "node-token")
	eventually(t, 30*time.Second, "the server's node-token", func() error {
		data, err := os.ReadFile(tokenFile)
		if err != nil {
			return err
		}
		if c.token = joinTokenPattern.FindString(string(data)); c.token == "" {
			return fmt.Errorf("%s holds no join token: %q", tokenFile, data)
		}
		return nil
	})
	return c
}

// createBridge creates the cluster's bridge, with the gateway address, and its removal.
func (c *testCluster) createBridge() {
	t := c.t
	t.Helper()
	hostRun(t, "ip", "link", "add", c.bridge, "type", "bridge")
	t.Cleanup(func() {
		if out, err := hostCmd("ip", "link", "del", c.bridge); err != nil {
			t.Errorf("deleting the bridge %s: %v\n%s", c.bridge, err, out)
		}
	})
	hostRun(t, "ip", "addr", "add", c.gateway()+"/24", "dev", c.bridge)
	hostRun(t, "ip", "link", "set", c.bridge, "up")
}

// pickNetwork chooses the cluster's id, bridge name and a 10.199.<n>.0/24 nothing on this
// machine uses.
func (c *testCluster) pickNetwork() {
	c.t.Helper()
	addrs, _ := hostCmd("ip", "-o", "addr")
	routes, _ := hostCmd("ip", "route", "show", "table", "all")
	links, _ := hostCmd("ip", "-o", "link")
	for i := 0; i < 100; i++ {
		b := make([]byte, 3)
		if _, err := rand.Read(b); err != nil {
			c.t.Fatal(err)
		}
		id := hex.EncodeToString(b[:2])
		subnet := fmt.Sprintf("10.199.%d.", 1+int(b[2])%254)
		if strings.Contains(addrs+routes, subnet) || strings.Contains(links, "k1sbr"+id) {
			continue
		}
		if netns, _ := filepath.Glob("/run/netns/k1s-e2e-" + id + "-*"); len(netns) > 0 {
			continue
		}
		// .1 is the host's (the server's) address; agents get .2 on.
		c.id, c.subnet, c.bridge, c.lastHost = id, subnet, "k1sbr"+id, 1
		return
	}
	c.t.Fatal("found no free 10.199.x.0/24")
}

// gateway is the bridge's address on the host: the server's node IP and apiserver address.
func (c *testCluster) gateway() string { return c.subnet + "1" }

// serverURL is the apiserver's address for the agents.
func (c *testCluster) serverURL() string {
	return fmt.Sprintf("https://%s:%d", c.gateway(), c.server.port)
}

// joinArgs are the flags that make an agent join this cluster.
func (c *testCluster) joinArgs() []string {
	return []string{"--server", c.serverURL(), "--token", c.token}
}

func (c *testCluster) netnsPrefix() string { return "k1s-e2e-" + c.id + "-" }
func (c *testCluster) vethPrefix() string  { return "k1sv" + c.id }

// addAgent adds a node namespace and starts an agent joining the cluster in it, with the
// busybox test image, as node name. It does not wait for the node.
func (c *testCluster) addAgent(name string, extra ...string) *agentNode {
	c.t.Helper()
	a := c.addNode(name)
	a.startAgent(extra...)
	return a
}

// addNode adds a node namespace (nothing runs in it yet but its holder) on the next address.
func (c *testCluster) addNode(name string) *agentNode {
	t := c.t
	t.Helper()
	c.lastHost++
	a := &agentNode{c: c, name: name, ip: c.subnet + strconv.Itoa(c.lastHost), dir: filepath.Join(c.dir, name),
		netns: c.netnsPrefix() + name, hostVeth: fmt.Sprintf("%s%x", c.vethPrefix(), c.lastHost)}
	if len(a.hostVeth)+1 > 15 {
		t.Fatalf("interface name %sp too long", a.hostVeth)
	}
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c.agents = append(c.agents, a)
	t.Cleanup(func() { a.cleanup(t) })

	peer := a.hostVeth + "p"
	hostRun(t, "ip", "netns", "add", a.netns)
	hostRun(t, "ip", "link", "add", a.hostVeth, "type", "veth", "peer", "name", peer)
	hostRun(t, "ip", "link", "set", peer, "netns", a.netns)
	hostRun(t, "ip", "link", "set", a.hostVeth, "master", c.bridge, "up")
	hostRun(t, "ip", "-n", a.netns, "link", "set", peer, "name", "eth0")
	hostRun(t, "ip", "-n", a.netns, "addr", "add", a.ip+"/24", "dev", "eth0")
	hostRun(t, "ip", "-n", a.netns, "link", "set", "eth0", "up")
	hostRun(t, "ip", "-n", a.netns, "link", "set", "lo", "up")
	a.startHolder()
	return a
}

// startHolder starts the process that owns the node's mount namespace: it enters the network
// namespace (not with `ip netns exec`, which remounts /sys and hides the cgroup mounts),
// unshares the mount namespace, mounts the private tmpfs and sleeps.
func (a *agentNode) startHolder() {
	t := a.c.t
	t.Helper()
	// The new mount namespace starts as a copy of the host's, with the server node's mounts
	// (its pods' under the data directory and /run/k1s, the netns under /run/netns): detach
	// those copies first, so the node sees and pins nothing of the host's node.
	var patterns []string
	for _, d := range append([]string{a.c.dir}, nodePrivateDirs...) {
		patterns = append(patterns, d, d+"/*")
	}
	script := `set -e
for m in $(cut -d' ' -f5 /proc/self/mountinfo); do
	case "$m" in ` + strings.Join(patterns, "|") + `) umount -l "$m" 2>/dev/null || true;; esac
done
for d in ` + strings.Join(nodePrivateDirs, " ") + `; do
	mkdir -p "$d"
	mount -t tmpfs -o mode=0755 k1s-e2e-` + a.c.id + ` "$d"
done
echo ready
exec sleep infinity`
	logFile, err := os.Create(filepath.Join(a.dir, "holder.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a.holder = exec.Command("nsenter", "--net=/run/netns/"+a.netns, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	a.holder.Stdout, a.holder.Stderr = w, logFile
	a.holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = a.holder.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	a.held = make(chan struct{})
	go func() { _ = a.holder.Wait(); close(a.held) }()
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		ready <- strings.TrimSpace(line)
	}()
	select {
	case line := <-ready:
		if line == "ready" {
			return
		}
	case <-time.After(30 * time.Second):
	}
	a.killHolder()
	log, _ := os.ReadFile(logFile.Name())
	t.Fatalf("node %s: the namespace holder did not get ready:\n%s", a.name, log)
}

func (a *agentNode) killHolder() {
	if a.holder == nil || a.holder.Process == nil {
		return
	}
	_ = syscall.Kill(a.holder.Process.Pid, syscall.SIGKILL)
	<-a.held
}

func (a *agentNode) holderAlive() bool {
	if a.held == nil {
		return false
	}
	select {
	case <-a.held:
		return false
	default:
		return true
	}
}

// command runs args inside the node's mount and network namespaces.
func (a *agentNode) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(a.holder.Process.Pid), "-m", "-n", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=")
	cmd.Dir = "/"
	return cmd
}

// exec runs args inside the node's namespaces and returns their output (within 2 minutes).
func (a *agentNode) exec(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := a.command(ctx, args...).CombinedOutput()
	return string(out), err
}

// k1s runs the k1s binary with args inside the node's namespaces.
func (a *agentNode) k1s(args ...string) (string, error) {
	return a.exec(append([]string{*k1sBinary}, args...)...)
}

// newAgent prepares (does not start) `k1s agent` in the node's namespaces as node name, on a
// fresh data directory holding the busybox test image, with the node's address, a
// resolv.conf that sends nothing off the machine, its own kubelet cgroup root and the
// cluster's pod network settings. extra adds the join flags and others.
func (a *agentNode) newAgent(name string, extra ...string) *server {
	t := a.c.t
	t.Helper()
	// Short: the kubelet's unix sockets live under the data directory, and a socket path has
	// at most 107 bytes.
	base, err := os.MkdirTemp(a.dir, "")
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(base, "d")
	images := filepath.Join(dataDir, "agent", "images")
	if err := os.MkdirAll(images, 0o700); err != nil {
		t.Fatal(err)
	}
	copyFile(t, a.c.testImage(), filepath.Join(images, "busybox.tar"))
	config := filepath.Join(base, "no-config.yaml")
	resolv := filepath.Join(base, "resolv.conf")
	if err := os.WriteFile(config, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"agent",
		"--config", config,
		"--data-dir", dataDir,
		"--node-name", name,
		"--node-ip", a.ip,
		"--resolv-conf", resolv,
		"--kubelet-arg", "cgroup-root=/k1s-e2e-" + name,
		"--flannel-iface", "eth0",
	}
	if a.c.opts.backend != "" {
		args = append(args, "--flannel-backend", a.c.opts.backend)
	}
	args = append(append(args, a.c.opts.agentArgs...), extra...)
	p := &server{t: t, dataDir: dataDir, args: args,
		prefix: []string{"nsenter", "-t", strconv.Itoa(a.holder.Process.Pid), "-m", "-n", "--"}}
	a.procs = append(a.procs, p)
	a.dataDirs = append(a.dataDirs, dataDir)
	return p
}

// startAgent starts the node's main agent: it joins the cluster as the node's name.
func (a *agentNode) startAgent(extra ...string) {
	a.c.t.Helper()
	a.proc = a.newAgent(a.name, append(a.c.joinArgs(), extra...)...)
	a.proc.start()
}

// run starts p, waits up to timeout for it to exit (killing it on expiry) and runs killall
// for its data directory; it returns its output and exit error, and whether it exited by itself.
func (a *agentNode) run(t testing.TB, p *server, timeout time.Duration) (lines []string, err error, exited bool) {
	t.Helper()
	p.start()
	select {
	case <-p.exited:
		exited = true
	case <-time.After(timeout):
		p.kill()
	}
	if _, statErr := os.Stat(filepath.Join(p.dataDir, "k1s.lock")); statErr == nil {
		if out, kerr := a.k1s("killall", "--data-dir", p.dataDir); kerr != nil {
			t.Errorf("killall --data-dir %s in %s: %v\n%s", p.dataDir, a.name, kerr, out)
		}
	}
	return p.lines(), p.err, exited
}

// cleanup kills the node's agents, runs killall for each of their data directories inside the
// node's namespaces, checks that it left nothing there, and removes the namespaces and veth.
func (a *agentNode) cleanup(t testing.TB) {
	for _, p := range a.procs {
		p.kill()
	}
	if a.holderAlive() {
		for _, d := range a.dataDirs {
			// killall refuses a directory where no k1s ran (an agent refused before locking).
			if _, err := os.Stat(filepath.Join(d, "k1s.lock")); err != nil {
				continue
			}
			if out, err := a.k1s("killall", "--data-dir", d); err != nil {
				t.Errorf("clean-up: killall --data-dir %s in node %s: %v\n%s", d, a.name, err, out)
			}
		}
		if !a.machine {
			for _, l := range a.leftovers() {
				t.Errorf("node %s: left after killall: %s", a.name, l)
			}
		}
		a.killHolder()
	}
	if out, err := hostCmd("ip", "link", "del", a.hostVeth); err != nil && !strings.Contains(out, "Cannot find device") {
		t.Errorf("deleting %s: %v\n%s", a.hostVeth, err, out)
	}
	if out, err := hostCmd("ip", "netns", "delete", a.netns); err != nil && !strings.Contains(out, "No such file") {
		t.Errorf("deleting netns %s: %v\n%s", a.netns, err, out)
	}
}

// leftovers lists what a node left in its namespaces: interfaces other than lo and eth0,
// routes other than the bridge subnet's, firewall rules and tables, mounts under the data
// directories or the private tmpfs.
func (a *agentNode) leftovers() []string {
	left := netLeftovers(a.exec, func(iface string) bool { return iface != "lo" && iface != "eth0" })
	if out, err := a.exec("ip", "route", "show"); err == nil {
		for _, l := range nonEmptyLines(out) {
			if !strings.Contains(l, "dev eth0") {
				left = append(left, "route "+l)
			}
		}
	}
	out, err := a.exec("cat", "/proc/self/mountinfo")
	if err != nil {
		return append(left, fmt.Sprintf("reading mounts: %v %s", err, out))
	}
	for _, m := range parseMounts(out) {
		for _, d := range append(append([]string(nil), a.dataDirs...), nodePrivateDirs...) {
			if strings.HasPrefix(m.point, d+"/") {
				left = append(left, "mount "+m.point)
				break
			}
		}
	}
	return left
}

// testImage builds the busybox test image once for the cluster's agents.
func (c *testCluster) testImage() string {
	c.t.Helper()
	if c.image == "" {
		p := filepath.Join(c.dir, "busybox.tar")
		script := filepath.Join(filepath.Dir(*k1sBinary), "..", "scripts", "build-test-image.sh")
		if out, err := exec.Command(script, p).CombinedOutput(); err != nil {
			c.t.Fatalf("building the busybox test image: %v\n%s", err, out)
		}
		c.image = p
	}
	return c.image
}

// kubectl runs kubectl as the cluster's admin and fails t on error.
func (c *testCluster) kubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := c.server.kubectl(args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// file writes content to a new file in the cluster's directory and returns its path.
func (c *testCluster) file(name, content string) string {
	c.t.Helper()
	f, err := os.CreateTemp(c.dir, "*-"+name)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		c.t.Fatal(err)
	}
	return f.Name()
}

// nodeReady is the node's Ready condition status ("True", "False", "Unknown"; "" if none).
func (c *testCluster) nodeReady(name string) string {
	out, err := c.server.kubectl("get", "node", name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

// waitNodesReady waits (3 minutes) until n nodes are Ready, failing early if an agent exits.
func (c *testCluster) waitNodesReady(t testing.TB, n int) {
	t.Helper()
	c.waitNodes(t, fmt.Sprintf("%d nodes Ready", n), func(ready map[string]bool) bool {
		count := 0
		for _, r := range ready {
			if r {
				count++
			}
		}
		return count >= n
	})
}

// waitNodeReady waits (3 minutes) until the named node is Ready.
func (c *testCluster) waitNodeReady(t testing.TB, name string) {
	t.Helper()
	c.waitNodes(t, "node "+name+" Ready", func(ready map[string]bool) bool { return ready[name] })
}

func (c *testCluster) waitNodes(t testing.TB, what string, done func(ready map[string]bool) bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var last string
	for {
		out, err := c.server.kubectl("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		last = fmt.Sprintf("%s %v", out, err)
		ready := map[string]bool{}
		for _, l := range nonEmptyLines(out) {
			if f := strings.Fields(l); len(f) == 2 {
				ready[f[0]] = f[1] == "True"
			}
		}
		if err == nil && done(ready) {
			return
		}
		if !c.server.running() {
			t.Fatalf("%s: the server exited (%v)\n%s", what, c.server.err, c.logs())
		}
		for _, a := range c.agents {
			if a.proc != nil && a.proc.exited != nil && !a.proc.running() {
				t.Fatalf("%s: the agent of %s exited (%v)\n%s", what, a.name, a.proc.err, c.logs())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 3 minutes; nodes: %s\n%s", what, last, c.logs())
		}
		time.Sleep(time.Second)
	}
}

// logs are the last lines of the server's and the agents' output, for failure messages.
func (c *testCluster) logs() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- server:\n%s\n", tail(c.server.lines(), 60))
	for _, a := range c.agents {
		if a.proc != nil {
			fmt.Fprintf(&b, "--- agent %s:\n%s\n", a.name, tail(a.proc.lines(), 60))
		}
	}
	return b.String()
}

// assertClean checks that nothing of the cluster is left on the host: no process of the k1s
// binary, from a data directory or in a node's cgroup; no namespace, interface, route,
// firewall rule or mount of ours; no cgroup k1s-e2e-*. Killed processes may take a moment to go.
func (c *testCluster) assertClean(t testing.TB) {
	t.Helper()
	var left []string
	for i := 0; i < 20; i++ {
		if left = c.leftovers(); len(left) == 0 {
			return
		}
		time.Sleep(time.Second)
	}
	for _, l := range left {
		t.Errorf("left on the host: %s", l)
	}
}

func (c *testCluster) leftovers() []string {
	var left []string
	self, _ := os.Stat(*k1sBinary)
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		stat, err := os.ReadFile(p + "/stat")
		if err != nil || strings.Contains(string(stat), ") Z ") {
			continue // gone, or a zombie waiting for its parent
		}
		cmdline, _ := os.ReadFile(p + "/cmdline")
		what := fmt.Sprintf("process %s (%s)", filepath.Base(p), strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " ")))
		if exe, err := os.Readlink(p + "/exe"); err == nil {
			if info, err := os.Stat(exe); err == nil && self != nil && os.SameFile(info, self) {
				left = append(left, what+" of the k1s binary")
				continue
			}
			if strings.HasPrefix(exe, c.dir+"/") {
				left = append(left, what+" from a data directory")
				continue
			}
		}
		if cg, err := os.ReadFile(p + "/cgroup"); err == nil && strings.Contains(string(cg), "/k1s-e2e-") {
			left = append(left, what+" in a node's cgroup")
		}
	}
	for _, a := range c.agents {
		if a.holderAlive() {
			left = append(left, "namespace holder of "+a.name)
		}
	}
	if entries, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), c.netnsPrefix()) {
				left = append(left, "network namespace "+e.Name())
			}
		}
	}
	left = append(left, netLeftovers(hostCmd, func(iface string) bool {
		return iface == c.bridge || strings.HasPrefix(iface, c.vethPrefix()) || iface == "cni0" ||
			strings.HasPrefix(iface, "flannel") || strings.HasPrefix(iface, "k1s") || strings.HasPrefix(iface, "veth")
	})...)
	for _, pattern := range []string{"/sys/fs/cgroup/*/k1s-e2e-*", "/sys/fs/cgroup/k1s-e2e-*"} {
		dirs, _ := filepath.Glob(pattern)
		for _, d := range dirs {
			left = append(left, "cgroup "+d)
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, m := range parseMounts(string(mounts)) {
		if strings.HasPrefix(m.point, c.dir+"/") || m.source == "k1s-e2e-"+c.id || strings.HasPrefix(m.point, "/run/k1s/") ||
			strings.HasPrefix(m.point, "/run/netns/"+c.netnsPrefix()) {
			left = append(left, "mount "+m.point)
		}
	}
	return left
}

// netLeftovers lists what of a node's network is in the namespace where run runs commands:
// interfaces unexpected names, routes k1s marks (proto 75) or into the cluster's ranges,
// iptables rules and chains of kube-proxy, CNI, k1s and flannel, and their nftables tables.
func netLeftovers(run func(args ...string) (string, error), unexpected func(iface string) bool) []string {
	var left []string
	out, err := run("ip", "-o", "link", "show")
	if err != nil {
		left = append(left, fmt.Sprintf("ip link: %v %s", err, out))
	}
	for _, l := range nonEmptyLines(out) {
		if f := strings.Fields(l); len(f) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if unexpected(name) {
				left = append(left, "interface "+name)
			}
		}
	}
	out, _ = run("ip", "route", "show", "table", "all", "proto", "75")
	for _, l := range nonEmptyLines(out) {
		left = append(left, "route "+l)
	}
	out, _ = run("ip", "route", "show", "table", "all")
	for _, l := range nonEmptyLines(out) {
		for _, f := range strings.Fields(l) {
			if strings.HasPrefix(f, clusterRanges[0]) || strings.HasPrefix(f, clusterRanges[1]) {
				left = append(left, "route "+l)
				break
			}
		}
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		out, _ := run(save)
		for _, l := range nonEmptyLines(out) {
			if nodeLeftoverChain.MatchString(l) {
				left = append(left, save+": "+l)
				break
			}
		}
	}
	if _, err := exec.LookPath("nft"); err == nil {
		out, _ := run("nft", "list", "tables")
		for _, l := range nonEmptyLines(out) {
			if f := strings.Fields(l); len(f) == 3 && (strings.Contains(f[2], "kube-proxy") || f[2] == "k1s" || strings.HasPrefix(f[2], "flannel")) {
				left = append(left, "nftables "+l)
			}
		}
	}
	return left
}

type mount struct{ point, source string }

// parseMounts reads /proc/*/mountinfo.
func parseMounts(mountinfo string) []mount {
	var out []mount
	for _, l := range nonEmptyLines(mountinfo) {
		f := strings.Fields(l)
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+2 >= len(f) {
			continue
		}
		point, err := strconv.Unquote(`"` + strings.ReplaceAll(f[4], `"`, `\"`) + `"`) // octal escapes
		if err != nil {
			point = f[4]
		}
		out = append(out, mount{point: point, source: f[sep+2]})
	}
	return out
}

// hostCmd runs a command on the host (within 2 minutes) and returns its output.
func hostCmd(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	return string(out), err
}

// hostRun runs a command on the host and fails t on error.
func hostRun(t testing.TB, args ...string) {
	t.Helper()
	if out, err := hostCmd(args...); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// withoutFlag returns args without flag and its value (both "--f v" and "--f=v").
func withoutFlag(args []string, flag string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == flag:
			i++
		case strings.HasPrefix(args[i], flag+"="):
		default:
			out = append(out, args[i])
		}
	}
	return out
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

func tail(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// lastLine is the last non-empty line of a process's output.
func lastLine(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.TrimSpace(lines[i]) != "" {
			return lines[i]
		}
	}
	return ""
}
