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
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The cluster harness. A test asks for a cluster by counts and gets it started:
//
//	c := newCluster(t, clusterSpec{Servers: 1, Agents: 2, AgentArgs: []string{...}})
//	c.waitNodesReady(t, 3)
//
// c.Servers and c.Agents are nodes of one kind (clusterNode): a node name, a directory of its
// own (data directories, kubeconfig, config, resolv.conf), its own address and ports, and the
// k1s processes it runs (proc is its main one). The topology (field notes, "Two nodes on one
// machine"):
//
//   - the first server runs on the host. Alone (one server, no agents, Network unset) it uses
//     the host's network as a standalone k1s does: the address and interface k1s finds, and
//     free ports for the apiserver, etcd and the controllers, since the host may run a k1s of
//     its own;
//   - any larger cluster has a test bridge k1sbr<id> with the address 10.199.<n>.1/24, which is
//     the first server's node IP (or advertised address) and the address the others join:
//     --server https://10.199.<n>.1:<port> --token <its join token>;
//   - every other node, server or agent, is a "node namespace": a network namespace
//     k1s-e2e-<id>-<name> joined to the bridge by a veth (eth0 inside, 10.199.<n>.<i>/24, no
//     default route), and a holder process (sleep) that owns a UTS namespace (host name = node
//     name) and a private mount namespace with
//     tmpfs over the host paths a node writes whatever its data directory (nodePrivateDirs).
//     Everything for that node runs through `nsenter -t <holder> -m -n -u`, on k1s's default ports,
//     with a resolv.conf that sends nothing off the machine and the kubelet cgroup root
//     /k1s-e2e-<node name>;
//   - nodes are named server-a, server-b, … and agent-a, agent-b, …. newCluster starts the
//     first server and waits for its API, then starts the other servers one at a time, each
//     waited for (a joining server grows etcd by one member), then the agents without waiting
//     (waitNodesReady). addServer, addAgent and addNode add nodes by name afterwards.
//
// So an HA test asks for clusterSpec{Servers: 3} and gets server-a on the host with
// --cluster-init (its etcd serving the bridge too) and server-b and server-c in their
// namespaces, each started with `--server <server-a's URL> --token <its server token>` and the
// ServerArgs. prepareCluster builds the same without starting anything, for a test that
// starts or times the first server itself (its process is c.server()).
//
// No packet leaves the machine: the bridge has no uplink and the namespaces no default route.
// Clean-up runs in reverse order whatever happened: each node's processes are killed by PID and
// `k1s killall` runs for each data directory, in the node's namespaces; then the namespaces,
// veths and bridge go, the kernel settings and the host directories the cluster created are put
// back, and a last check finds nothing of the cluster left on the host. t.TempDir removes the
// directories.

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

// clusterSpec says what newCluster and prepareCluster build.
type clusterSpec struct {
	// Servers is the number of servers (at least one), Agents the number of agents.
	Servers, Agents int
	// DisableAgent runs every server as a control plane only (--disable-agent): no node.
	DisableAgent bool
	// FlannelBackend is --flannel-backend for every node; empty leaves k1s's default (vxlan).
	FlannelBackend string
	// ServerArgs are added to every server's flags, AgentArgs to every agent's.
	ServerArgs, AgentArgs []string
	// Images are more files (name → content) in every node's agent/images, beside the busybox
	// test image.
	Images map[string]string
	// Network puts a cluster of one server on a test bridge too, for a test that adds nodes
	// itself (addNode, addAgent, addServer). Larger clusters always have it.
	Network bool
	// ClusterInit runs the first server with --cluster-init (its etcd also serves the bridge),
	// so that servers can join it; implied by Servers > 1.
	ClusterInit bool
	// ServerDir is the first server's directory (its data directory, kubeconfig, config), for
	// a test of the file system under it; default: one in the cluster's directory.
	ServerDir string
}

// cluster is the servers and agents of one k1s cluster under test (see the top of this file).
type cluster struct {
	t    testing.TB
	spec clusterSpec
	// id (4 hex digits) names everything of this cluster on the host.
	id  string
	dir string

	// Servers[0] is the first server, on the host; the others and all agents are node
	// namespaces. Agents also holds the nodes addNode adds, empty until a test runs k1s there.
	Servers []*clusterNode
	Agents  []*clusterNode

	// token is the first server's join token (<data-dir>/server/node-token), read by joinToken;
	// srvToken its server token (server/token), read by serverToken.
	token, srvToken string

	bridge string
	// onBridge says whether the bridge exists (createBridge made it).
	onBridge bool
	// subnet is the bridge's /24 without its last number: "10.199.<n>.".
	subnet   string
	lastHost int

	image string
	// sysctls are the kernel settings before the cluster; createdDirs are host directories that
	// did not exist before it. Clean-up puts back the first and removes the second if empty.
	sysctls     map[string]string
	createdDirs []string
}

// clusterNode is one node of a cluster: the host (the first server) or a node namespace
// (network namespace, veth, holder of the mount namespace), and the k1s processes run on it.
type clusterNode struct {
	c *cluster
	// role is "server" or "agent": what its main process is.
	role string
	// name is the node name of its main process; "" for a first server off the bridge, whose
	// node takes the host's name.
	name string
	// ip is its address on the bridge ("" off it); iface is its --flannel-iface (the bridge on
	// the host, eth0 in a namespace).
	ip, iface string
	dir       string

	// netns and hostVeth are "" on the host.
	netns    string
	hostVeth string
	holder   *exec.Cmd
	held     chan struct{}

	// proc is the node's main process (a server, or the agent startAgent starts); procs are all
	// k1s processes prepared on the node, for the clean-up.
	proc  *process
	procs []*process
	// machine: a booted machine uses the namespace (machine_test.go); it checks what it
	// leaves itself, and the namespace goes with whatever is left in it.
	machine bool
}

// newCluster builds the cluster spec asks for and starts it: the first server (waiting for its
// API), the other servers (each waited for) and the agents (not waited for). Everything is
// removed by the test's clean-up.
func newCluster(t testing.TB, spec clusterSpec) *cluster {
	t.Helper()
	c := prepareCluster(t, spec)
	c.start()
	return c
}

// prepareCluster builds the cluster spec asks for without starting any k1s: the bridge and the
// node namespaces, and the first server's process (c.server()). Its clean-up is registered.
func prepareCluster(t testing.TB, spec clusterSpec) *cluster {
	t.Helper()
	if spec.Servers < 1 || spec.Agents < 0 {
		t.Fatalf("clusterSpec with %d servers and %d agents: a cluster has at least one server", spec.Servers, spec.Agents)
	}
	c := &cluster{t: t, spec: spec, dir: t.TempDir()}
	c.pickNetwork()
	c.saveHost()
	bridged := spec.Network || spec.Servers+spec.Agents > 1

	first := &clusterNode{c: c, role: "server", dir: spec.ServerDir}
	if first.dir == "" {
		first.dir = filepath.Join(c.dir, "server")
		if err := os.MkdirAll(first.dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if bridged {
		first.name, first.ip, first.iface = nodeName("server", 0), c.gateway(), c.bridge
	}
	c.Servers = append(c.Servers, first)
	// Registered now, so it runs after the bridge's removal (as the agents' run before it).
	t.Cleanup(func() { first.cleanup(t) })
	first.proc = first.newProcess("server", first.name)

	if bridged {
		c.createBridge()
	}
	for i := 1; i < spec.Servers; i++ {
		c.addNamespace("server", nodeName("server", i))
	}
	for i := 0; i < spec.Agents; i++ {
		c.addNamespace("agent", nodeName("agent", i))
	}
	return c
}

// nodeName is the name of the i-th node of a role: server-a, server-b, …, agent-a, ….
func nodeName(role string, i int) string { return fmt.Sprintf("%s-%c", role, 'a'+i) }

// start starts what prepareCluster built: the first server, waiting (3 minutes) for its API
// and its join token; then each other server, joining it, waiting for its API before the next
// joins; then the agents, without waiting.
func (c *cluster) start() {
	c.t.Helper()
	first := c.server()
	first.start()
	first.waitReady(3 * time.Minute)
	if c.onBridge {
		c.joinToken()
	}
	for _, s := range c.Servers[1:] {
		if s.proc == nil {
			s.startServer()
		}
	}
	for _, a := range c.Agents[:c.spec.Agents] {
		if a.proc == nil {
			a.startAgent()
		}
	}
}

// saveHost records the kernel settings and which node host directories exist, and registers
// the clean-up that puts them back and checks that nothing of the cluster is left.
func (c *cluster) saveHost() {
	c.t.Helper()
	c.sysctls = readSysctls(c.t)
	for _, d := range nodePrivateDirs {
		if _, err := os.Stat(d); os.IsNotExist(err) {
			c.createdDirs = append(c.createdDirs, d)
		}
	}
	hostChecks.Lock()
	defer hostChecks.Unlock()
	t := c.t
	if _, ok := hostChecks.byTest[t]; !ok {
		// Registered before anything of the test's first cluster, so it runs last: after every
		// cluster of the test is gone.
		t.Cleanup(func() {
			hostChecks.Lock()
			clusters := hostChecks.byTest[t]
			delete(hostChecks.byTest, t)
			hostChecks.Unlock()
			for i := len(clusters) - 1; i >= 0; i-- {
				clusters[i].restoreHost()
			}
			for _, c := range clusters {
				c.assertClean(t)
			}
		})
	}
	hostChecks.byTest[t] = append(hostChecks.byTest[t], c)
}

// hostChecks are the clusters of each running test, whose last clean-up runs once all of them
// are gone: a test may run two clusters side by side on the host (TestKillallLeavesOtherServers),
// and the check after the first must not find the second still running.
var hostChecks = struct {
	sync.Mutex
	byTest map[testing.TB][]*cluster
}{byTest: map[testing.TB][]*cluster{}}

// restoreHost puts back the kernel settings and removes the host directories the cluster
// created, if they are empty.
func (c *cluster) restoreHost() {
	for k, v := range c.sysctls {
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
		_ = os.Remove(d) // only when empty: a node on the host may use it still
	}
}

// createBridge creates the cluster's bridge, with the gateway address, and its removal.
func (c *cluster) createBridge() {
	t := c.t
	t.Helper()
	hostRun(t, "ip", "link", "add", c.bridge, "type", "bridge")
	c.onBridge = true
	t.Cleanup(func() {
		if out, err := hostCmd("ip", "link", "del", c.bridge); err != nil {
			t.Errorf("deleting the bridge %s: %v\n%s", c.bridge, err, out)
		}
	})
	hostRun(t, "ip", "addr", "add", c.gateway()+"/24", "dev", c.bridge)
	hostRun(t, "ip", "link", "set", c.bridge, "up")
	// The bridge is the switch between the node namespaces, but with br_netfilter (which
	// k1s turns on) the frames it switches go through the host's netfilter, where the first
	// server's kube-proxy would act on traffic between two other machines: DNAT traffic to a
	// load-balancer address, or drop it for externalTrafficPolicy Local. A switch does
	// neither: frames from the namespaces to another node's address are not tracked, so no
	// NAT rule sees them. Traffic to the host (its address, or its pods with host-gw) is.
	// (--physdev-is-bridged is not known yet in PREROUTING.)
	in := []string{"-m", "physdev", "--physdev-in", c.vethPrefix() + "+"}
	rules := [][]string{ // inserted in this order, so the last is first
		append(append([]string{"PREROUTING"}, in...), "-d", c.subnet+"0/24", "-j", "NOTRACK"),
		append(append([]string{"PREROUTING"}, in...), "-d", c.gateway(), "-j", "ACCEPT"),
	}
	for _, rule := range rules {
		hostRun(t, append([]string{"iptables", "-w", "-t", "raw", "-I"}, rule...)...)
		t.Cleanup(func() {
			if out, err := hostCmd(append([]string{"iptables", "-w", "-t", "raw", "-D"}, rule...)...); err != nil {
				t.Errorf("removing the bridge's raw rule %v: %v\n%s", rule, err, out)
			}
		})
	}
}

// pickNetwork chooses the cluster's id, bridge name and a 10.199.<n>.0/24 nothing on this
// machine uses.
func (c *cluster) pickNetwork() {
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
		// .1 is the host's (the first server's) address; the node namespaces get .2 on.
		c.id, c.subnet, c.bridge, c.lastHost = id, subnet, "k1sbr"+id, 1
		return
	}
	c.t.Fatal("found no free 10.199.x.0/24")
}

// gateway is the bridge's address on the host: the first server's node IP and apiserver address.
func (c *cluster) gateway() string { return c.subnet + "1" }

// server is the first server's process: the API the tests talk to.
func (c *cluster) server() *process { return c.Servers[0].proc }

// nodes are all the cluster's nodes: the servers, then the agents.
func (c *cluster) nodes() []*clusterNode {
	return append(append([]*clusterNode(nil), c.Servers...), c.Agents...)
}

// clustered says whether the first server runs with --cluster-init.
func (c *cluster) clustered() bool { return c.spec.ClusterInit || c.spec.Servers > 1 }

// serverToken is the first server's server token (<data-dir>/server/token), which joins
// servers, read once (within 30 s) after it is written, and once the bootstrap data sealed
// with it is published.
func (c *cluster) serverToken() string {
	c.t.Helper()
	if c.srvToken == "" {
		c.srvToken = c.readToken("token")
		// The token is written before the server starts; a server joins once the first has
		// published its token and the bootstrap data.
		eventually(c.t, 60*time.Second, "the server's bootstrap data", func() error {
			out, err := c.server().kubectl("-n", "kube-system", "get", "secret", "k1s-server-bootstrap", "-o", "name")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	}
	return c.srvToken
}

// serverURL is the first server's apiserver, for the nodes that join it.
func (c *cluster) serverURL() string {
	return fmt.Sprintf("https://%s:%d", c.gateway(), c.server().port)
}

// joinToken is the first server's join token, read once (within 30 s) after it is written.
func (c *cluster) joinToken() string {
	c.t.Helper()
	if c.token == "" {
		c.token = c.readToken("node-token")
	}
	return c.token
}

// readToken reads a token file of the first server (<data-dir>/server/<name>) once it is
// written, within 30 s.
func (c *cluster) readToken(name string) string {
	c.t.Helper()
	tokenFile := filepath.Join(c.server().dataDir, "server", name)
	var token string
	eventually(c.t, 30*time.Second, "the server's "+name, func() error {
		data, err := os.ReadFile(tokenFile)
		if err != nil {
			return err
		}
		if token = joinTokenPattern.FindString(string(data)); token == "" {
			return fmt.Errorf("%s holds no token: %q", tokenFile, data)
		}
		return nil
	})
	return token
}

// joinArgs are the flags that make a node join this cluster.
func (c *cluster) joinArgs() []string {
	return []string{"--server", c.serverURL(), "--token", c.joinToken()}
}

func (c *cluster) netnsPrefix() string { return "k1s-e2e-" + c.id + "-" }
func (c *cluster) vethPrefix() string  { return "k1sv" + c.id }

// dirs are the directories the cluster's nodes keep their files in.
func (c *cluster) dirs() []string {
	dirs := []string{c.dir}
	if d := c.spec.ServerDir; d != "" && !strings.HasPrefix(d, c.dir+"/") {
		dirs = append(dirs, d)
	}
	return dirs
}

// addServer adds a node namespace and starts a server in it as node name, joining the first
// server with extra added to its flags, and waits (3 minutes) for its API.
func (c *cluster) addServer(name string, extra ...string) *clusterNode {
	c.t.Helper()
	s := c.addNamespace("server", name)
	s.startServer(extra...)
	return s
}

// addAgent adds a node namespace and starts an agent joining the cluster in it, with the
// busybox test image, as node name. It does not wait for the node.
func (c *cluster) addAgent(name string, extra ...string) *clusterNode {
	c.t.Helper()
	a := c.addNode(name)
	a.startAgent(extra...)
	return a
}

// addNode adds a node namespace to the agents, where nothing runs yet but its holder.
func (c *cluster) addNode(name string) *clusterNode {
	c.t.Helper()
	return c.addNamespace("agent", name)
}

// addNamespace adds a node namespace on the next address, to the servers or the agents by role.
func (c *cluster) addNamespace(role, name string) *clusterNode {
	t := c.t
	t.Helper()
	if !c.onBridge {
		t.Fatalf("adding node %s: the cluster has no test bridge (set clusterSpec.Network to add nodes to a cluster of one server)", name)
	}
	c.lastHost++
	n := &clusterNode{c: c, role: role, name: name, ip: c.subnet + strconv.Itoa(c.lastHost), iface: "eth0",
		dir: filepath.Join(c.dir, name), netns: c.netnsPrefix() + name, hostVeth: fmt.Sprintf("%s%x", c.vethPrefix(), c.lastHost)}
	if len(n.hostVeth)+1 > 15 {
		t.Fatalf("interface name %sp too long", n.hostVeth)
	}
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if role == "server" {
		c.Servers = append(c.Servers, n)
	} else {
		c.Agents = append(c.Agents, n)
	}
	t.Cleanup(func() { n.cleanup(t) })

	peer := n.hostVeth + "p"
	hostRun(t, "ip", "netns", "add", n.netns)
	hostRun(t, "ip", "link", "add", n.hostVeth, "type", "veth", "peer", "name", peer)
	hostRun(t, "ip", "link", "set", peer, "netns", n.netns)
	hostRun(t, "ip", "link", "set", n.hostVeth, "master", c.bridge, "up")
	hostRun(t, "ip", "-n", n.netns, "link", "set", peer, "name", "eth0")
	hostRun(t, "ip", "-n", n.netns, "addr", "add", n.ip+"/24", "dev", "eth0")
	hostRun(t, "ip", "-n", n.netns, "link", "set", "eth0", "up")
	hostRun(t, "ip", "-n", n.netns, "link", "set", "lo", "up")
	n.startHolder()
	return n
}

// onHost says whether the node is the host (the first server) rather than a node namespace.
func (n *clusterNode) onHost() bool { return n.netns == "" }

// startHolder starts the process that owns the node's mount namespace: it enters the network
// namespace (not with `ip netns exec`, which remounts /sys and hides the cgroup mounts),
// unshares the mount namespace, mounts the private tmpfs and sleeps.
func (n *clusterNode) startHolder() {
	t := n.c.t
	t.Helper()
	// The new mount namespace starts as a copy of the host's, with the first server node's
	// mounts (its pods' under the data directory and /run/k1s, the netns under /run/netns):
	// detach those copies first, so the node sees and pins nothing of the host's node.
	var patterns []string
	for _, d := range append(n.c.dirs(), nodePrivateDirs...) {
		patterns = append(patterns, d, d+"/*")
	}
	// A host name of its own, as a machine has: the apiservers' identity leases are named
	// after it.
	script := `set -e
hostname ` + n.name + `
for m in $(cut -d' ' -f5 /proc/self/mountinfo); do
	case "$m" in ` + strings.Join(patterns, "|") + `) umount -l "$m" 2>/dev/null || true;; esac
done
for d in ` + strings.Join(nodePrivateDirs, " ") + `; do
	mkdir -p "$d"
	mount -t tmpfs -o mode=0755 k1s-e2e-` + n.c.id + ` "$d"
done
echo ready
exec sleep infinity`
	logFile, err := os.Create(filepath.Join(n.dir, "holder.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n.holder = exec.Command("nsenter", "--net=/run/netns/"+n.netns, "unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", script)
	n.holder.Stdout, n.holder.Stderr = w, logFile
	n.holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = n.holder.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	n.held = make(chan struct{})
	go func() { _ = n.holder.Wait(); close(n.held) }()
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
	n.killHolder()
	log, _ := os.ReadFile(logFile.Name())
	t.Fatalf("node %s: the namespace holder did not get ready:\n%s", n.name, log)
}

func (n *clusterNode) killHolder() {
	if n.holder == nil || n.holder.Process == nil {
		return
	}
	_ = syscall.Kill(n.holder.Process.Pid, syscall.SIGKILL)
	<-n.held
}

func (n *clusterNode) holderAlive() bool {
	if n.held == nil {
		return false
	}
	select {
	case <-n.held:
		return false
	default:
		return true
	}
}

// nsenter is the command prefix that runs a program in the node namespace.
func (n *clusterNode) nsenter() []string {
	return []string{"nsenter", "-t", strconv.Itoa(n.holder.Process.Pid), "-m", "-n", "-u", "--"}
}

// exec runs args on the node (the host, or inside the node's mount and network namespaces)
// and returns their output (within 2 minutes).
func (n *clusterNode) exec(args ...string) (string, error) {
	if n.onHost() {
		return hostCmd(args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append(n.nsenter()[1:], args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=")
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// k1s runs the k1s binary with args on the node.
func (n *clusterNode) k1s(args ...string) (string, error) {
	if n.onHost() {
		return runK1s(args...)
	}
	return n.exec(append([]string{*k1sBinary}, args...)...)
}

// newProcess prepares (does not start) `k1s <role>` on the node as node name, with the
// cluster's flags for the role and then extra (the join flags and others). A process that runs
// a node gets a resolv.conf that sends nothing off the machine, the busybox test image (and
// spec.Images) in agent/images, and, on the bridge, the node's name, address and interface.
// On the host it is the first server, on free ports; in a node namespace each process has a
// data directory of its own, k1s's default ports and its kubelet in the cgroup root
// /k1s-e2e-<name>.
func (n *clusterNode) newProcess(role, name string, extra ...string) *process {
	c := n.c
	t := c.t
	t.Helper()
	base, dataDir := n.dir, filepath.Join(n.dir, "data")
	if !n.onHost() {
		// Short (<node dir>/<n>/d): the kubelet's unix sockets live under the data directory,
		// and a socket path has at most 107 bytes.
		base = filepath.Join(n.dir, strconv.Itoa(len(n.procs)))
		if err := os.Mkdir(base, 0o700); err != nil {
			t.Fatal(err)
		}
		dataDir = filepath.Join(base, "d")
	}
	// A server runs a node unless the cluster's or its own flags say --disable-agent.
	runsNode := role == "agent" || (!c.spec.DisableAgent && !slices.Contains(extra, "--disable-agent"))
	p := &process{t: t, node: n, dataDir: dataDir, port: 6443, runsNode: runsNode}
	// The default config file must not leak into tests; an explicit --config that does not
	// exist is an error, so give an empty one.
	config := filepath.Join(base, "no-config.yaml")
	if err := os.WriteFile(config, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p.args = []string{role, "--config", config, "--data-dir", dataDir}
	if role == "server" {
		p.kubeconfig = filepath.Join(base, "k1s.yaml")
		p.args = append(p.args, "--write-kubeconfig", p.kubeconfig)
	}
	if n.onHost() {
		// The host may run a k1s of its own, on the default ports.
		p.port = freePort(t)
		etcdPort := strconv.Itoa(freePort(t))
		etcdURLs := "https://127.0.0.1:" + etcdPort
		if role == "server" && c.clustered() {
			// The joining servers reach it on the bridge.
			etcdURLs += ",https://" + n.ip + ":" + etcdPort
			p.args = append(p.args, "--cluster-init")
		}
		p.args = append(p.args,
			"--https-listen-port", strconv.Itoa(p.port),
			"--metrics-server-port", strconv.Itoa(freePort(t)),
			"--kube-controller-manager-arg", "secure-port="+strconv.Itoa(freePort(t)),
			"--kube-scheduler-arg", "secure-port="+strconv.Itoa(freePort(t)),
			"--lb-server-port", strconv.Itoa(freePort(t)),
			"--etcd-arg", "listen-client-urls="+etcdURLs,
			"--etcd-arg", "listen-client-http-urls=https://127.0.0.1:"+strconv.Itoa(freePort(t)))
	}
	if !p.runsNode {
		p.args = append(p.args, "--disable-agent")
		if n.ip != "" {
			p.args = append(p.args, "--node-name", name, "--node-ip", n.ip)
		}
	} else {
		resolv := filepath.Join(base, "resolv.conf")
		if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		p.args = append(p.args, "--resolv-conf", resolv)
		if n.ip != "" {
			p.args = append(p.args, "--node-name", name, "--node-ip", n.ip, "--flannel-iface", n.iface)
		}
		if !n.onHost() {
			p.args = append(p.args, "--kubelet-arg", "cgroup-root=/k1s-e2e-"+name)
		}
		if c.spec.FlannelBackend != "" {
			p.args = append(p.args, "--flannel-backend", c.spec.FlannelBackend)
		}
		images := filepath.Join(dataDir, "agent", "images")
		if err := os.MkdirAll(images, 0o700); err != nil {
			t.Fatal(err)
		}
		copyFile(t, c.testImage(), filepath.Join(images, "busybox.tar"))
		for file, content := range c.spec.Images {
			if err := os.WriteFile(filepath.Join(images, file), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if role == "server" {
		p.args = append(p.args, c.spec.ServerArgs...)
	} else {
		p.args = append(p.args, c.spec.AgentArgs...)
	}
	p.args = append(p.args, extra...)
	if !n.onHost() {
		p.prefix = n.nsenter()
	}
	n.procs = append(n.procs, p)
	return p
}

// startServer starts the node's main process, a server joining the first as the node's name
// with extra added, and waits (3 minutes) for its API.
func (n *clusterNode) startServer(extra ...string) {
	n.c.t.Helper()
	// Every apiserver of a cluster serves on one port: the kubernetes Service has one, and
	// the agents' load balancers reach each server on it.
	port := n.c.server().port
	n.proc = n.newProcess("server", n.name, append([]string{"--server", n.c.serverURL(), "--token", n.c.serverToken(),
		"--https-listen-port", strconv.Itoa(port)}, extra...)...)
	n.proc.port = port
	n.proc.start()
	n.proc.waitReady(3 * time.Minute)
}

// startAgent starts the node's main process, an agent joining the cluster as the node's name.
func (n *clusterNode) startAgent(extra ...string) {
	n.c.t.Helper()
	n.proc = n.newProcess("agent", n.name, append(n.c.joinArgs(), extra...)...)
	n.proc.start()
}

// run starts p, waits up to timeout for it to exit (killing it on expiry) and runs killall
// for its data directory; it returns its output and exit error, and whether it exited by itself.
func (n *clusterNode) run(t testing.TB, p *process, timeout time.Duration) (lines []string, err error, exited bool) {
	t.Helper()
	p.start()
	select {
	case <-p.exited:
		exited = true
	case <-time.After(timeout):
		p.kill()
	}
	if locked(p.dataDir) {
		if out, kerr := n.k1s("killall", "--data-dir", p.dataDir); kerr != nil {
			t.Errorf("killall --data-dir %s in %s: %v\n%s", p.dataDir, n.name, kerr, out)
		}
	}
	return p.lines(), p.err, exited
}

// locked says whether a k1s ran from dataDir: killall refuses a directory without its lock
// file (a process refused before locking).
func locked(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, "k1s.lock"))
	return err == nil
}

// cleanup kills the node's processes and runs killall for the data directory of each that ran
// a node. In a node namespace it then checks that killall left nothing there, and removes the
// namespaces and veth.
func (n *clusterNode) cleanup(t testing.TB) {
	for _, p := range n.procs {
		p.kill()
	}
	if n.onHost() {
		// As on a host of its own: a failing killall shows in the final check of the host.
		for _, p := range n.procs {
			if p.runsNode && locked(p.dataDir) {
				if out, err := runK1s("killall", "--data-dir", p.dataDir); err != nil {
					t.Logf("clean-up killall: %v\n%s", err, out)
				}
			}
		}
		return
	}
	if n.holderAlive() {
		for _, p := range n.procs {
			if !p.runsNode || !locked(p.dataDir) {
				continue
			}
			if out, err := n.k1s("killall", "--data-dir", p.dataDir); err != nil {
				t.Errorf("clean-up: killall --data-dir %s in node %s: %v\n%s", p.dataDir, n.name, err, out)
			}
		}
		if !n.machine {
			for _, l := range n.leftovers() {
				t.Errorf("node %s: left after killall: %s", n.name, l)
			}
		}
		n.killHolder()
	}
	if out, err := hostCmd("ip", "link", "del", n.hostVeth); err != nil && !strings.Contains(out, "Cannot find device") {
		t.Errorf("deleting %s: %v\n%s", n.hostVeth, err, out)
	}
	if out, err := hostCmd("ip", "netns", "delete", n.netns); err != nil && !strings.Contains(out, "No such file") {
		t.Errorf("deleting netns %s: %v\n%s", n.netns, err, out)
	}
}

// leftovers lists what a node left in its namespaces: interfaces other than lo and eth0,
// routes other than the bridge subnet's, firewall rules and tables, mounts under the data
// directories or the private tmpfs.
func (n *clusterNode) leftovers() []string {
	left := netLeftovers(n.exec, func(iface string) bool { return iface != "lo" && iface != "eth0" })
	if out, err := n.exec("ip", "route", "show"); err == nil {
		for _, l := range nonEmptyLines(out) {
			if !strings.Contains(l, "dev eth0") {
				left = append(left, "route "+l)
			}
		}
	}
	out, err := n.exec("cat", "/proc/self/mountinfo")
	if err != nil {
		return append(left, fmt.Sprintf("reading mounts: %v %s", err, out))
	}
	dirs := append([]string(nil), nodePrivateDirs...)
	for _, p := range n.procs {
		dirs = append(dirs, p.dataDir)
	}
	for _, m := range parseMounts(out) {
		for _, d := range dirs {
			if strings.HasPrefix(m.point, d+"/") {
				left = append(left, "mount "+m.point)
				break
			}
		}
	}
	return left
}

// testImage builds the busybox test image once for the cluster's nodes.
func (c *cluster) testImage() string {
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
func (c *cluster) kubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := c.server().kubectl(args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// file writes content to a new file in the cluster's directory and returns its path.
func (c *cluster) file(name, content string) string {
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
func (c *cluster) nodeReady(name string) string {
	out, err := c.server().kubectl("get", "node", name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

// waitNodesReady waits (3 minutes) until n nodes are Ready, failing early if a node's main
// process exits.
func (c *cluster) waitNodesReady(t testing.TB, n int) {
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
func (c *cluster) waitNodeReady(t testing.TB, name string) {
	t.Helper()
	c.waitNodes(t, "node "+name+" Ready", func(ready map[string]bool) bool { return ready[name] })
}

func (c *cluster) waitNodes(t testing.TB, what string, done func(ready map[string]bool) bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var last string
	for {
		out, err := c.server().kubectl("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
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
		if !c.server().running() {
			t.Fatalf("%s: the server exited (%v)\n%s", what, c.server().err, c.logs())
		}
		for _, n := range c.nodes()[1:] {
			if n.proc != nil && n.proc.exited != nil && !n.proc.running() {
				t.Fatalf("%s: the %s of %s exited (%v)\n%s", what, n.role, n.name, n.proc.err, c.logs())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 3 minutes; nodes: %s\n%s", what, last, c.logs())
		}
		time.Sleep(time.Second)
	}
}

// logs are the last lines of every node's main process, for failure messages.
func (c *cluster) logs() string {
	var b strings.Builder
	for _, n := range c.nodes() {
		if n.proc != nil {
			fmt.Fprintf(&b, "--- %s %s:\n%s\n", n.role, n.name, tail(n.proc.lines(), 60))
		}
	}
	return b.String()
}

// assertClean checks that nothing of the cluster is left on the host: no process of the k1s
// binary, from a data directory or in a node's cgroup; no namespace, interface, route,
// firewall rule or mount of ours; no cgroup k1s-e2e-*. Killed processes may take a moment to go.
func (c *cluster) assertClean(t testing.TB) {
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

func (c *cluster) leftovers() []string {
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
			if c.inDirs(exe) {
				left = append(left, what+" from a data directory")
				continue
			}
		}
		if cg, err := os.ReadFile(p + "/cgroup"); err == nil && strings.Contains(string(cg), "/k1s-e2e-") {
			left = append(left, what+" in a node's cgroup")
		}
	}
	for _, n := range c.nodes() {
		if n.holderAlive() {
			left = append(left, "namespace holder of "+n.name)
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
		if c.inDirs(m.point) || m.source == "k1s-e2e-"+c.id || strings.HasPrefix(m.point, "/run/k1s/") ||
			strings.HasPrefix(m.point, "/run/netns/"+c.netnsPrefix()) {
			left = append(left, "mount "+m.point)
		}
	}
	return left
}

// inDirs says whether path is under one of the cluster's directories.
func (c *cluster) inDirs(path string) bool {
	for _, d := range c.dirs() {
		if strings.HasPrefix(path, d+"/") {
			return true
		}
	}
	return false
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
