//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// etcdMemberLine is a line of `k1s etcd member list`: ID, name, peer URL, role, health, leader.
var etcdMemberLine = regexp.MustCompile(`^([0-9a-f]+)\s+(\S+)\s+(\S+)\s+(voter|learner)\s+(\S+)\s+(true|false)$`)

// etcdMembers runs `k1s etcd member list` on the server and returns its members by name,
// each as its ID, role, health and whether it leads.
func etcdMembers(t testing.TB, n *clusterNode) (map[string][4]string, error) {
	t.Helper()
	out, err := n.k1s("etcd", "member", "list", "--data-dir", n.proc.dataDir)
	if err != nil {
		return nil, fmt.Errorf("etcd member list: %v\n%s", err, out)
	}
	members := map[string][4]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		m := etcdMemberLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			return nil, fmt.Errorf("unexpected member line %q in:\n%s", line, out)
		}
		members[m[2]] = [4]string{m[1], m[4], m[5], m[6]}
	}
	return members, nil
}

// threeVoters checks that the cluster's etcd has exactly the servers as healthy voters, one of
// them the leader, and returns the members.
func threeVoters(t testing.TB, c *cluster, on *clusterNode) map[string][4]string {
	t.Helper()
	var members map[string][4]string
	eventually(t, 90*time.Second, "three healthy voting etcd members", func() error {
		var err error
		if members, err = etcdMembers(t, on); err != nil {
			return err
		}
		leaders := 0
		for _, s := range c.Servers {
			m, ok := members[s.name]
			if !ok || m[1] != "voter" || m[2] != "healthy" {
				return fmt.Errorf("member %s: %v (all: %v)", s.name, m, members)
			}
			if m[3] == "true" {
				leaders++
			}
		}
		if len(members) != len(c.Servers) || leaders != 1 {
			return fmt.Errorf("%d members, %d leaders: %v", len(members), leaders, members)
		}
		return nil
	})
	return members
}

// TestHA: three servers on embedded etcd and an agent, each server in its own namespaces.
func TestHA(t *testing.T) {
	// Secrets encryption too: its key reaches the joining servers, and a restore elsewhere.
	c := newCluster(t, clusterSpec{Servers: 3, Agents: 1, ServerArgs: []string{"--secrets-encryption"}})
	c.waitNodesReady(t, 4)
	first, second, third := c.Servers[0], c.Servers[1], c.Servers[2]

	t.Run("three voting members, leases held, every server in the kubernetes Service", func(t *testing.T) {
		threeVoters(t, c, second)
		for _, lease := range []string{"kube-controller-manager", "kube-scheduler"} {
			eventually(t, 60*time.Second, "the "+lease+" lease held", func() error {
				// The identity is the host name (which the namespaces share) and a UUID.
				holder := c.kubectl(t, "-n", "kube-system", "get", "lease", lease, "-o", "jsonpath={.spec.holderIdentity}")
				if !regexp.MustCompile(`_[0-9a-f-]{36}$`).MatchString(holder) {
					return fmt.Errorf("lease %s held by %q", lease, holder)
				}
				return nil
			})
		}
		eventually(t, 60*time.Second, "the kubernetes Service's endpoints", func() error {
			ips := c.kubectl(t, "get", "endpointslices", "-l", "kubernetes.io/service-name=kubernetes", "-o", "jsonpath={.items[*].endpoints[*].addresses[*]}")
			for _, s := range c.Servers {
				if !strings.Contains(" "+ips+" ", " "+s.ip+" ") {
					return fmt.Errorf("server %s (%s) missing from %q", s.name, s.ip, ips)
				}
			}
			return nil
		})
	})

	t.Run("writes through one server read through another", func(t *testing.T) {
		if out, err := second.proc.kubectl("create", "configmap", "ha-written", "--from-literal=via="+second.name); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		eventually(t, 10*time.Second, "the ConfigMap through "+third.name, func() error {
			out, err := third.proc.kubectl("get", "configmap", "ha-written", "-o", "jsonpath={.data.via}")
			if err != nil || out != second.name {
				return fmt.Errorf("%v: %q", err, out)
			}
			return nil
		})
	})

	t.Run("an agent token neither joins a server nor reads the bootstrap data", func(t *testing.T) {
		cfg := &rest.Config{Host: c.serverURL(), BearerToken: strings.SplitN(c.joinToken(), "::", 2)[1], TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = client.CoreV1().Secrets("kube-system").Get(context.Background(), "k1s-server-bootstrap", metav1.GetOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("reading the bootstrap data with the agent token: %v, want forbidden", err)
		}
		// In etcd the bootstrap data is sealed (k1s's own copy, which the apiserver does not
		// encrypt): no key, no certificate, no file name shows.
		raw := etcdGet(t, first.proc, "/k1s/bootstrap")
		for _, clear := range []string{"PRIVATE KEY", "CERTIFICATE", "server-ca", "service.key"} {
			if bytes.Contains(raw, []byte(clear)) {
				t.Fatalf("the bootstrap data in etcd shows %q", clear)
			}
		}
		// And the cluster does not hold what unseals it: the server token's Secret has a
		// secret derived from the token's, not the token's own.
		id, secret, _ := strings.Cut(strings.SplitN(c.serverToken(), "::", 2)[1], ".")
		stored := first.proc.mustKubectl("-n", "kube-system", "get", "secret", "bootstrap-token-"+id, "-o", "jsonpath={.data.token-secret}")
		if decoded, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(stored)); len(decoded) != 16 || string(decoded) == secret {
			t.Fatalf("the server token's Secret holds %q: want a derived secret, not the token's own", decoded)
		}

		n := c.addNode("server-x")
		p := n.newProcess("server", "server-x", "--server", c.serverURL(), "--token", c.joinToken())
		lines, _, exited := n.run(t, p, 2*time.Minute)
		out := strings.Join(lines, "\n")
		if !exited || !strings.Contains(out, "it is not a server token") {
			t.Fatalf("a server joining with the agent token: exited %t, want the agent-token error:\n%s", exited, out)
		}
		if _, err := os.Stat(filepath.Join(p.dataDir, "server", "tls")); err == nil {
			t.Fatalf("the refused server wrote %s", filepath.Join(p.dataDir, "server", "tls"))
		}
	})

	t.Run("kill -9 of the etcd leader's server: no acknowledged write lost, it rejoins as the same member", func(t *testing.T) {
		before := threeVoters(t, c, second)
		var leader, other *clusterNode
		for _, s := range c.Servers {
			if before[s.name][3] == "true" {
				leader = s
			} else if other == nil {
				other = s
			}
		}
		stop := make(chan struct{})
		acked := make(chan []string)
		go func() {
			var names []string
			for i := 0; ; i++ {
				select {
				case <-stop:
					acked <- names
					return
				default:
				}
				name := fmt.Sprintf("ha-write-%d", i)
				if _, err := other.proc.kubectl("create", "configmap", name, "--request-timeout=5s"); err == nil {
					names = append(names, name)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		time.Sleep(time.Second)
		leader.proc.kill()
		// The two others elect a leader and keep accepting writes.
		killed := time.Now()
		eventually(t, 30*time.Second, "a write through "+other.name+" after the leader died", func() error {
			_, err := other.proc.kubectl("create", "configmap", fmt.Sprintf("ha-after-%d", time.Now().UnixNano()), "--request-timeout=5s")
			return err
		})
		t.Logf("first write acknowledged %s after the leader's server (%s) died", time.Since(killed).Round(time.Millisecond), leader.name)
		leader.proc.start()
		leader.proc.waitReady(3 * time.Minute)
		close(stop)
		names := <-acked
		after := threeVoters(t, c, leader)
		if after[leader.name][0] != before[leader.name][0] {
			t.Fatalf("%s came back as member %s, was %s", leader.name, after[leader.name][0], before[leader.name][0])
		}
		stored := strings.Fields(leader.proc.mustKubectl("get", "configmaps", "-o", "name"))
		for _, name := range names {
			if !slices.Contains(stored, "configmap/"+name) {
				t.Errorf("acknowledged write %s is lost", name)
			}
		}
		if len(names) < 5 {
			t.Fatalf("only %d writes acknowledged around the kill", len(names))
		}
	})

	t.Run("the agent survives the loss of the server it joined", func(t *testing.T) {
		agent := c.Agents[0]
		renewed := func() time.Time {
			out, _ := second.proc.kubectl("-n", "kube-node-lease", "get", "lease", agent.name, "-o", "jsonpath={.spec.renewTime}")
			at, _ := time.Parse(time.RFC3339Nano, strings.TrimSpace(out))
			return at
		}
		first.proc.kill()
		killed := time.Now()
		// The kubelet renews its lease every 10 s: a renewal after the kill went through
		// another server.
		eventually(t, 40*time.Second, "the agent's kubelet renewing its lease through another server", func() error {
			if at := renewed(); !at.After(killed) {
				return fmt.Errorf("last renewal %s", at)
			}
			return nil
		})
		t.Logf("the agent's kubelet renewed its lease %s after its server died", time.Since(killed).Round(time.Millisecond))
		manifest := fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: ha-pod}\nspec:\n  nodeSelector: {kubernetes.io/hostname: %s}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: main, image: %s, imagePullPolicy: Never, command: [sleep, \"3600\"]}\n", agent.name, "k1s.local/busybox:test")
		if out, err := second.proc.kubectl("apply", "-f", c.file("ha-pod.yaml", manifest)); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		eventually(t, 90*time.Second, "a new pod running on the agent", func() error {
			out, _ := second.proc.kubectl("get", "pod", "ha-pod", "-o", "jsonpath={.status.phase}")
			if out != "Running" {
				return fmt.Errorf("phase %q", out)
			}
			return nil
		})
		if ready, _ := second.proc.kubectl("get", "node", agent.name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`); ready != "True" {
			t.Fatalf("the agent's Node is Ready=%q", ready)
		}
		first.proc.start()
		first.proc.waitReady(3 * time.Minute)
		threeVoters(t, c, first)
		back := fmt.Sprintf("server %s:%d is back", first.ip, first.proc.port)
		eventually(t, 30*time.Second, "the agent's load balancer taking "+first.name+" back", func() error {
			if !strings.Contains(strings.Join(agent.proc.lines(), "\n"), back) {
				return fmt.Errorf("no %q in the agent's log", back)
			}
			return nil
		})
	})

	t.Run("a snapshot restored on a new machine with the server token", func(t *testing.T) {
		first.proc.mustKubectl("create", "secret", "generic", "ha-secret", "--from-literal=password=s3cret")
		first.proc.mustKubectl("create", "configmap", "before-snapshot")
		out, err := first.k1s("etcd-snapshot", "save", "--name", "ha", "--data-dir", first.proc.dataDir)
		if err != nil {
			t.Fatalf("etcd-snapshot save: %v\n%s", err, out)
		}
		lines := strings.Fields(out)
		snap := lines[len(lines)-1]
		first.proc.mustKubectl("create", "configmap", "after-snapshot")

		n := c.addNode("server-r")
		p := n.newProcess("server", "server-r", "--disable-agent")
		if out, err := n.k1s(append(slices.Clone(p.args), "--cluster-reset-restore-path", snap)...); err == nil || !strings.Contains(out, "needs the server token") {
			t.Fatalf("a restore on a new machine without the token: %v\n%s", err, out)
		}
		out, err = n.k1s(append(slices.Clone(p.args), "--cluster-reset-restore-path", snap, "--token", c.serverToken())...)
		if err != nil || !strings.Contains(out, "start k1s again without --cluster-reset-restore-path") {
			t.Fatalf("restore with the server token: %v\n%s", err, out)
		}
		p.start()
		p.waitReady(3 * time.Minute)
		if out := strings.TrimSpace(p.mustKubectl("get", "configmap", "before-snapshot", "-o", "name")); out != "configmap/before-snapshot" {
			t.Fatalf("the ConfigMap from before the snapshot: %q", out)
		}
		if out, err := p.kubectl("get", "configmap", "after-snapshot"); err == nil || !strings.Contains(out, "NotFound") {
			t.Fatalf("the ConfigMap from after the snapshot: %v %s", err, out)
		}
		if out := strings.TrimSpace(p.mustKubectl("get", "secret", "ha-secret", "-o", "jsonpath={.data.password}")); out != "czNjcmV0" {
			t.Fatalf("the encrypted Secret restored: %q", out)
		}
		if err, _ := p.stop(); err != nil {
			t.Errorf("stopping the restored server: %v", err)
		}
	})

	t.Run("kubectl delete node of a server removes its member, and it cannot start again", func(t *testing.T) {
		if out, err := first.proc.kubectl("delete", "node", third.name, "--wait=false"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		eventually(t, 60*time.Second, "two etcd members, and "+third.name+"'s Node gone", func() error {
			members, err := etcdMembers(t, first)
			if err != nil {
				return err
			}
			if _, ok := members[third.name]; ok || len(members) != 2 {
				return fmt.Errorf("members %v", members)
			}
			if out, err := first.proc.kubectl("get", "node", third.name, "-o", "name"); err == nil {
				return fmt.Errorf("the Node is still there: %s", out)
			}
			return nil
		})
		if out, err := second.proc.kubectl("create", "configmap", "ha-two-servers"); err != nil {
			t.Fatalf("a write with two servers left: %v\n%s", err, out)
		}
		// The removed server stops (its peers tell its etcd); a restart is refused.
		select {
		case <-third.proc.exited:
		case <-time.After(60 * time.Second):
			third.proc.kill()
		}
		third.proc.start()
		select {
		case <-third.proc.exited:
		case <-time.After(2 * time.Minute):
			t.Fatalf("the removed server started again:\n%s", strings.Join(third.proc.lines(), "\n"))
		}
		if out := strings.Join(third.proc.lines(), "\n"); !strings.Contains(out, "etcd member was removed from its cluster") || !strings.Contains(out, "--server") {
			t.Fatalf("the removed server's restart did not say why and how to rejoin:\n%s", out)
		}
	})

	t.Run("quorum lost: requests fail with the reason, --cluster-reset brings the survivor back with its data", func(t *testing.T) {
		second.proc.kill()
		begin := time.Now()
		out, err := first.proc.kubectl("get", "configmap", "ha-written", "--request-timeout=10s")
		if err == nil {
			t.Fatalf("a read with one of two members answered: %s", out)
		}
		t.Logf("without quorum a read failed after %s: %s", time.Since(begin).Round(time.Millisecond), strings.TrimSpace(out))
		if time.Since(begin) > 30*time.Second {
			t.Fatalf("a read without quorum took %s to fail", time.Since(begin))
		}
		eventually(t, 90*time.Second, "the quorum-lost line in the survivor's log", func() error {
			if !strings.Contains(strings.Join(first.proc.lines(), "\n"), "etcd has had no leader") {
				return errors.New("not yet")
			}
			return nil
		})
		// From then on the apiserver says so at once.
		begin = time.Now()
		out, err = first.proc.kubectl("get", "configmap", "ha-written", "--request-timeout=20s")
		if took := time.Since(begin); err == nil || !strings.Contains(out, "etcd has lost its quorum") || took > 5*time.Second {
			t.Fatalf("a read once quorum is known lost: %v after %s: %s", err, took, out)
		}
		t.Logf("once quorum is known lost, a read fails in %s: %s", time.Since(begin).Round(time.Millisecond), strings.TrimSpace(out))
		first.proc.stop()
		reset, err := runK1s(append(slices.Clone(first.proc.args), "--cluster-reset")...)
		if err != nil || !strings.Contains(reset, "start k1s again without --cluster-reset") {
			t.Fatalf("--cluster-reset: %v\n%s", err, reset)
		}
		first.proc.start()
		first.proc.waitReady(3 * time.Minute)
		members, err := etcdMembers(t, first)
		if err != nil || len(members) != 1 || members[first.name][1] != "voter" {
			t.Fatalf("members after the reset: %v %v", members, err)
		}
		if out := first.proc.mustKubectl("get", "configmap", "ha-written", "-o", "jsonpath={.data.via}"); out != second.name {
			t.Fatalf("the data before the reset: %q", out)
		}
		first.proc.mustKubectl("create", "configmap", "ha-after-reset")
	})
}

// TestHAConversion: a single server restarted with --cluster-init keeps its data and takes a
// control-plane-only server (--disable-agent) as the second member.
func TestHAConversion(t *testing.T) {
	c := newCluster(t, clusterSpec{Servers: 1, DisableAgent: true, Network: true})
	first := c.Servers[0]
	first.proc.mustKubectl("create", "configmap", "before-conversion", "--from-literal=k=v")
	if err, _ := first.proc.stop(); err != nil {
		t.Fatalf("stopping the single server: %v", err)
	}
	// Its etcd now also serves the other servers on the bridge.
	for i, a := range first.proc.args {
		if strings.HasPrefix(a, "listen-client-urls=") {
			port := a[strings.LastIndex(a, ":")+1:]
			first.proc.args[i] = a + ",https://" + first.ip + ":" + port
		}
	}
	first.proc.args = append(first.proc.args, "--cluster-init")
	first.proc.start()
	first.proc.waitReady(3 * time.Minute)
	second := c.addServer("server-b")
	var members map[string][4]string
	eventually(t, 60*time.Second, "two voting members", func() error {
		var err error
		if members, err = etcdMembers(t, second); err != nil {
			return err
		}
		for _, s := range []*clusterNode{first, second} {
			if m := members[s.name]; m[1] != "voter" || m[2] != "healthy" {
				return fmt.Errorf("member %s: %v", s.name, members)
			}
		}
		return nil
	})
	if out := second.proc.mustKubectl("get", "configmap", "before-conversion", "-o", "jsonpath={.data.k}"); out != "v" {
		t.Fatalf("the single server's data through the new server: %q", out)
	}
}
