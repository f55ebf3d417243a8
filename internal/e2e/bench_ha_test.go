//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkHA prints the figures of a cluster of three servers: exec of a joining server to
// its etcd member voting and its Node Ready (median of 5 joins, each removed again with
// kubectl delete node), the idle memory of a server of three, a snapshot of 1,000 ConfigMaps
// (median of 5), and after kill -9 of the etcd leader's server the first acknowledged write
// through the others, and of the server an agent joined, its kubelet's first lease renewal
// through another. It asserts nothing.
func BenchmarkHA(b *testing.B) {
	c := newCluster(b, clusterSpec{Servers: 2, Agents: 1})
	c.waitNodesReady(b, 3)
	first, second := c.Servers[0], c.Servers[1]
	port := strconv.Itoa(first.proc.port)

	var joins []time.Duration
	var third *clusterNode
	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("server-j%d", i)
		n := c.addNode(name)
		p := n.newProcess("server", name, "--server", c.serverURL(), "--token", c.serverToken(), "--https-listen-port", port)
		p.port = first.proc.port
		begin := time.Now()
		p.start()
		eventually(b, 3*time.Minute, name+" voting and Ready", func() error {
			members, err := etcdMembers(b, first)
			if err != nil {
				return err
			}
			if m := members[name]; m[1] != "voter" {
				return fmt.Errorf("member %v", m)
			}
			if ready := c.nodeReady(name); ready != "True" {
				return fmt.Errorf("node Ready=%q", ready)
			}
			return nil
		})
		joins = append(joins, time.Since(begin))
		n.proc = p
		if i == 4 {
			third = n
			break
		}
		first.proc.mustKubectl("delete", "node", name, "--wait=false")
		select {
		case <-p.exited:
		case <-time.After(time.Minute):
			p.kill()
		}
		if out, err := n.k1s("killall", "--data-dir", p.dataDir); err != nil {
			b.Fatalf("killall: %v\n%s", err, out)
		}
	}
	printFigure(b, "third server exec to voting and Ready", joins, 15*time.Second, "s-server-join")

	time.Sleep(30 * time.Second)
	pss, rss := processTreeMemory(third.proc.pid(), third.proc.dataDir)
	fmt.Printf("a server of three, 30 s after Ready (node, no pods of its own): PSS %.0f MB, RSS %.0f MB\n", pss, rss)
	b.ReportMetric(pss, "MB-server-of-3-PSS-idle")

	client := first.proc.client()
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%04d", i)}, Data: map[string]string{"v": strings.Repeat("x", 512)}}
		if _, err := client.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	var saves []time.Duration
	var size int64
	for i := 0; i < 5; i++ {
		begin := time.Now()
		out, err := first.k1s("etcd-snapshot", "save", "--name", fmt.Sprintf("bench%d", i), "--data-dir", first.proc.dataDir)
		saves = append(saves, time.Since(begin))
		if err != nil {
			b.Fatalf("etcd-snapshot save: %v\n%s", err, out)
		}
		fields := strings.Fields(out)
		if info, err := os.Stat(fields[len(fields)-1]); err == nil {
			size = info.Size()
		}
	}
	printFigure(b, "etcd-snapshot save, 1,000 ConfigMaps", saves, time.Second, "s-snapshot-save")
	fmt.Printf("snapshot size with 1,000 ConfigMaps: %.1f MB\n", float64(size)/1e6)

	servers := []*clusterNode{first, second, third}
	members, err := etcdMembers(b, first)
	if err != nil {
		b.Fatal(err)
	}
	var leader, other *clusterNode
	for _, s := range servers {
		if members[s.name][3] == "true" {
			leader = s
		} else if other == nil {
			other = s
		}
	}
	renewed := func(via *clusterNode) time.Time {
		out, _ := via.proc.kubectl("-n", "kube-node-lease", "get", "lease", c.Agents[0].name, "-o", "jsonpath={.spec.renewTime}")
		at, _ := time.Parse(time.RFC3339Nano, strings.TrimSpace(out))
		return at
	}
	leader.proc.kill()
	killed := time.Now()
	eventually(b, time.Minute, "a write through "+other.name, func() error {
		_, err := other.proc.kubectl("create", "configmap", fmt.Sprintf("after-%d", time.Now().UnixNano()), "--request-timeout=2s")
		return err
	})
	printFigure(b, "leader's server killed to first write", []time.Duration{time.Since(killed)}, 5*time.Second, "s-write-resume")
	via := other
	if leader != first {
		via = second
		leader.proc.start()
		leader.proc.waitReady(3 * time.Minute)
		time.Sleep(5 * time.Second)
		first.proc.kill()
		killed = time.Now()
	}
	eventually(b, time.Minute, "the agent's lease renewed through another server", func() error {
		if at := renewed(via); !at.After(killed) {
			return fmt.Errorf("last renewal %s", at)
		}
		return nil
	})
	// The lease is renewed every 10 s: this is the reconnection plus up to one interval.
	printFigure(b, "agent's server killed to kubelet's lease renewal", []time.Duration{time.Since(killed)}, 10*time.Second, "s-kubelet-reconnect")
}
