//go:build e2e

// Package e2e drives the built k1s binary as a user would: real clusters in private data
// directories, on free ports, cleaned up afterwards. Run by `make test` as root.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

var k1sBinary = flag.String("k1s", "", "path of the k1s binary under test (built by make)")

func TestMain(m *testing.M) {
	flag.Parse()
	if *k1sBinary == "" {
		fmt.Fprintln(os.Stderr, "e2e: -k1s is required: run these tests through `make test` or `make bench`")
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: these tests start real clusters and must run as root")
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// freePort returns a TCP port nothing uses right now, below the kernel's range of ephemeral
// ports: a port the kernel picked (":0") may be handed to an outgoing connection before the
// server under test binds it, which then fails with "address already in use". It also stays
// below Kubernetes' NodePort range (30000-32767), whose traffic kube-proxy redirects.
func freePort(t testing.TB) int {
	t.Helper()
	first := 30000
	if r, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(r)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				first = min(first, n)
			}
		}
	}
	const lowest = 20000
	for range 1000 {
		port := lowest + rand.IntN(max(first-lowest, 1))
		l, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
	t.Fatalf("no free port between %d and %d", lowest, first)
	return 0
}

// process is one long-running k1s process under test: `k1s server` or `k1s agent`, on the
// host or (with a prefix that enters a node namespace, see cluster_test.go) in a node's
// namespaces.
type process struct {
	t          testing.TB
	dataDir    string
	kubeconfig string
	port       int
	args       []string
	// prefix is the command that runs the binary (e.g. nsenter into a node's namespaces, or
	// qemu; it must exec it, so that the process's PID is k1s's); empty runs the binary directly.
	prefix []string
	// env is added to the process's environment.
	env []string
	// binary is the k1s binary to run (default: -k1s).
	binary string
	// node is the cluster node the process runs on (nil: the host, outside any cluster).
	node *clusterNode
	// runsNode says whether it runs a node (an agent, or a server without --disable-agent): the
	// clean-up runs `k1s killall` for its data directory.
	runsNode bool

	cmd    *exec.Cmd
	mu     sync.Mutex
	output []string
	exited chan struct{}
	err    error
}

// newServer prepares (does not start) a control-plane-only server: the first server of a
// cluster of one on the host (see prepareCluster), on a private data directory and free ports.
func newServer(t testing.TB, extra ...string) *process {
	t.Helper()
	return prepareCluster(t, clusterSpec{Servers: 1, DisableAgent: true, ServerArgs: extra}).server()
}

// start launches the process and registers its stop with the test's clean-up.
func (s *process) start() {
	s.t.Helper()
	binary := s.binary
	if binary == "" {
		binary = *k1sBinary
	}
	argv := append(append(append([]string(nil), s.prefix...), binary), s.args...)
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Env = append(append(os.Environ(), "KUBECONFIG="), s.env...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd.Stdout = s.cmd.Stderr
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.exited = make(chan struct{})
	s.mu.Lock()
	s.output = nil
	s.mu.Unlock()
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.output = append(s.output, sc.Text())
			s.mu.Unlock()
		}
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	s.t.Cleanup(s.kill)
}

// lines returns what the process has printed so far.
func (s *process) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.output...)
}

// stop sends SIGTERM and returns the exit error and how long the stop took.
func (s *process) stop() (error, time.Duration) {
	s.t.Helper()
	begin := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err, 0
	}
	select {
	case <-s.exited:
		return s.err, time.Since(begin)
	case <-time.After(30 * time.Second):
		s.kill()
		return errors.New("did not exit within 30 s of SIGTERM"), time.Since(begin)
	}
}

// pid is the process's ID (k1s's own, also behind a prefix: the prefix execs the binary).
func (s *process) pid() int {
	return s.cmd.Process.Pid
}

// running reports whether the process has been started and not yet exited.
func (s *process) running() bool {
	if s.cmd == nil || s.exited == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// kill ends the process's whole process group if it still runs; it is the clean-up of last resort.
func (s *process) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exited
}

// waitReady waits until /readyz answers ok, failing early if the server exits.
func (s *process) waitReady(timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if out, err := s.kubectl("get", "--raw", "/readyz"); err == nil && strings.TrimSpace(out) == "ok" {
			return
		}
		select {
		case <-s.exited:
			s.t.Fatalf("k1s server exited before ready (%v):\n%s", s.err, strings.Join(s.lines(), "\n"))
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("k1s server not ready after %s:\n%s", timeout, strings.Join(s.lines(), "\n"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// kubectl runs `k1s kubectl` against this server, where the server runs: a server in a node
// namespace writes a kubeconfig for its own network's addresses.
func (s *process) kubectl(args ...string) (string, error) {
	args = append([]string{"kubectl", "--kubeconfig", s.kubeconfig}, args...)
	if s.node != nil && !s.node.onHost() {
		return s.node.k1s(args...)
	}
	return runK1s(args...)
}

// mustKubectl runs kubectl and fails the test on error.
func (s *process) mustKubectl(args ...string) string {
	s.t.Helper()
	out, err := s.kubectl(args...)
	if err != nil {
		s.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// client is a client-go clientset for the server, for the benchmarks' fast polling.
func (s *process) client() *kubernetes.Clientset {
	s.t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig)
	if err != nil {
		s.t.Fatal(err)
	}
	cfg.Timeout = 2 * time.Second
	// The benchmarks' pods are not "restricted"; the warnings would drown the figures.
	cfg.WarningHandler = rest.NoWarnings{}
	return kubernetes.NewForConfigOrDie(cfg)
}

func runK1s(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, *k1sBinary, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// eventually polls cond until it returns nil or timeout passes, logging the last reason.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
}

// busyPort is a port something else listens on, on all addresses.
type busyPort struct {
	net.Listener
	port string
}

func netListen() (*busyPort, error) {
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		return nil, err
	}
	return &busyPort{Listener: l, port: strconv.Itoa(l.Addr().(*net.TCPAddr).Port)}, nil
}
