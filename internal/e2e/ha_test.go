//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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
func etcdMembers(t *testing.T, n *clusterNode) (map[string][4]string, error) {
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
func threeVoters(t *testing.T, c *cluster, on *clusterNode) map[string][4]string {
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
	c := newCluster(t, clusterSpec{Servers: 3, Agents: 1})
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
		// In etcd the bootstrap data is sealed: no key, no certificate, no file name shows.
		raw := etcdGet(t, first.proc, "/registry/secrets/kube-system/k1s-server-bootstrap")
		for _, clear := range []string{"PRIVATE KEY", "CERTIFICATE", "server-ca", "service.key"} {
			if bytes.Contains(raw, []byte(clear)) {
				t.Fatalf("the bootstrap data in etcd shows %q", clear)
			}
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

	t.Run("a killed server rejoins as the same member", func(t *testing.T) {
		before := threeVoters(t, c, first)
		third.proc.kill()
		// The two others keep a quorum and accept writes.
		if out, err := first.proc.kubectl("create", "configmap", "ha-while-down", "--from-literal=k=v"); err != nil {
			t.Fatalf("a write with one server of three down: %v\n%s", err, out)
		}
		third.proc.start()
		third.proc.waitReady(3 * time.Minute)
		after := threeVoters(t, c, third)
		if after[third.name][0] != before[third.name][0] {
			t.Fatalf("%s came back as member %s, was %s", third.name, after[third.name][0], before[third.name][0])
		}
		if out, err := third.proc.kubectl("get", "configmap", "ha-while-down"); err != nil {
			t.Fatalf("the write made while %s was down, read through it: %v\n%s", third.name, err, out)
		}
	})
}
