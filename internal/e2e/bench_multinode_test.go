//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkAgent prints the figures of joining nodes: exec of `k1s agent` to its Node Ready
// (median of 5 joins, each a new node on a fresh data directory), the memory of an agent at
// idle, and pod-to-pod TCP throughput and round-trip time on one node and across nodes, with
// VXLAN and host-gw. It asserts nothing.
func BenchmarkAgent(b *testing.B) {
	for _, backend := range []string{"vxlan", "host-gw"} {
		// One cluster at a time: each sub-benchmark's clean-up removes its cluster.
		b.Run(backend, func(b *testing.B) { benchmarkAgent(b, backend) })
	}
}

func benchmarkAgent(b *testing.B, backend string) {
	// Network: the agents join after the cluster is up.
	c := newCluster(b, clusterSpec{Servers: 1, FlannelBackend: backend, Network: true})
	client := c.server().client()
	if backend == "vxlan" {
		n := c.addNode("b")
		var joins []time.Duration
		for i := 0; i < 5; i++ {
			name := fmt.Sprintf("bench-%d", i)
			p := n.newProcess("agent", name, c.joinArgs()...)
			begin := time.Now()
			p.start()
			for {
				node, err := client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
				if err == nil && isReady(*node) {
					break
				}
				if time.Since(begin) > 3*time.Minute || !p.running() {
					b.Fatalf("agent %s not Ready:\n%s", name, strings.Join(p.lines(), "\n"))
				}
				time.Sleep(20 * time.Millisecond)
			}
			joins = append(joins, time.Since(begin))
			if i == 4 {
				time.Sleep(30 * time.Second)
				pss, rss := processTreeMemory(p.pid(), p.dataDir)
				fmt.Printf("agent 30 s after Ready (no pods): PSS %.0f MB, RSS %.0f MB\n", pss, rss)
				b.ReportMetric(pss, "MB-agent-PSS-idle")
				break
			}
			p.stop()
			if out, err := n.k1s("killall", "--data-dir", p.dataDir); err != nil {
				b.Fatalf("killall: %v\n%s", err, out)
			}
			if err := client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		fmt.Printf("agent exec to Node Ready: median %s of %v\n", median(joins), joins)
		b.ReportMetric(median(joins).Seconds(), "s-agent-ready")
	}
	a := c.addAgent(map[string]string{"vxlan": "vx", "host-gw": "gw"}[backend])
	c.waitNodesReady(b, 2+boolInt(backend == "vxlan"))
	c.kubectl(b, "apply", "-f", c.file("netbench.yaml", fmt.Sprintf(netbenchManifest, c.Servers[0].name, c.Servers[0].name, a.name)))
	c.kubectl(b, "wait", "--for=condition=Ready", "--timeout=180s", "pod/netbench-server", "pod/netbench-local", "pod/netbench-remote")
	serverIP := c.kubectl(b, "get", "pod", "netbench-server", "-o", "jsonpath={.status.podIP}")
	for _, from := range []string{"local", "remote"} {
		out := c.kubectl(b, "exec", "netbench-"+from, "--", "netbench", "client", "-addr", serverIP+":5001", "-mib", "1024")
		tput, rtt := parseNetbench(b, out)
		where := "on one node"
		if from == "remote" {
			where = "across nodes (" + backend + ")"
		}
		fmt.Printf("pod to pod %-22s throughput %6.0f MiB/s, round trip %4d µs\n", where, tput, rtt)
		metric := strings.ReplaceAll(backend, "-", "") + "-" + from
		b.ReportMetric(tput, "MiBps-"+metric)
		b.ReportMetric(float64(rtt), "us-rtt-"+metric)
	}
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

// netbenchManifest: a server pod and a local client on the server's node, and a client on the
// agent. Fill in: the server's node (twice), the agent's node.
const netbenchManifest = `apiVersion: v1
kind: Pod
metadata: {name: netbench-server}
spec:
  nodeName: %s
  containers:
  - {name: s, image: k1s.local/busybox:test, imagePullPolicy: Never, command: [netbench, server]}
---
apiVersion: v1
kind: Pod
metadata: {name: netbench-local}
spec:
  nodeName: %s
  containers:
  - {name: c, image: k1s.local/busybox:test, imagePullPolicy: Never, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: netbench-remote}
spec:
  nodeName: %s
  containers:
  - {name: c, image: k1s.local/busybox:test, imagePullPolicy: Never, command: [sleep, "3600"]}
`

var netbenchLine = regexp.MustCompile(`throughput_mib_s=(\d+) rtt_us=(\d+)`)

func parseNetbench(b *testing.B, out string) (float64, int) {
	m := netbenchLine.FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("netbench printed %q", out)
	}
	tput, _ := strconv.ParseFloat(m[1], 64)
	rtt, _ := strconv.Atoi(m[2])
	return tput, rtt
}

// processTreeMemory sums PSS and RSS (MB) of pid, its descendants (containerd) and the shims
// from dataDir's payload.
func processTreeMemory(pid int, dataDir string) (pss, rss float64) {
	children := map[int][]int{}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	var shims []int
	for _, p := range procs {
		fields := procStat(p)
		if fields == nil {
			continue
		}
		n, _ := strconv.Atoi(filepath.Base(p))
		if len(fields) > 1 {
			ppid, _ := strconv.Atoi(fields[1])
			children[ppid] = append(children[ppid], n)
		}
		if exe, err := os.Readlink(p + "/exe"); err == nil && strings.HasPrefix(exe, dataDir+"/") {
			shims = append(shims, n)
		}
	}
	seen := map[int]bool{}
	var walk func(int)
	walk = func(n int) {
		if seen[n] {
			return
		}
		seen[n] = true
		m := smapsRollup(fmt.Sprintf("/proc/%d", n))
		pss, rss = pss+m.pss, rss+m.rss
		for _, c := range children[n] {
			walk(c)
		}
	}
	walk(pid)
	for _, s := range shims {
		walk(s)
	}
	return pss, rss
}
