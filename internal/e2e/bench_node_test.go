//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// BenchmarkNode prints the figures of a one-node cluster: start-up, memory at idle, pod start
// latency. It asserts nothing.
func BenchmarkNode(b *testing.B) {
	const runs = 5
	var ready, dns, firstPod []time.Duration
	var last *process
	for i := 0; i < runs; i++ {
		s := prepareCluster(b, clusterSpec{Servers: 1}).server()
		r, d, p := coldStart(b, s)
		ready, dns, firstPod = append(ready, r), append(dns, d), append(firstPod, p)
		if i < runs-1 {
			s.stop()
			if out, err := runK1s("killall", "--data-dir", s.dataDir); err != nil {
				b.Fatalf("killall: %v\n%s", err, out)
			}
			continue
		}
		last = s
	}
	fmt.Printf("exec to node Ready:          median %s of %v\n", median(ready), ready)
	fmt.Printf("exec to CoreDNS answering:   median %s of %v\n", median(dns), dns)
	fmt.Printf("exec to first pod Running:   median %s of %v\n", median(firstPod), firstPod)
	b.ReportMetric(median(ready).Seconds(), "s-node-ready")
	b.ReportMetric(median(dns).Seconds(), "s-dns-answering")
	b.ReportMetric(median(firstPod).Seconds(), "s-first-pod")

	time.Sleep(60 * time.Second)
	pss, rss, detail := memory(last)
	fmt.Printf("60 s after ready, CoreDNS and 1 pod running: PSS %.0f MB, RSS %.0f MB (%s)\n", pss, rss, detail)
	b.ReportMetric(pss, "MB-PSS-idle")
	b.ReportMetric(rss, "MB-RSS-idle")

	p50, p99 := podStartLatency(b, last.client(), 30)
	fmt.Printf("pod start latency, 30 pods created at once: p50 %s, p99 %s\n", p50, p99)
	b.ReportMetric(p50.Seconds(), "s-pod-start-p50")
	b.ReportMetric(p99.Seconds(), "s-pod-start-p99")
	last.stop()
}

// coldStart starts s on a fresh data directory and returns the times from exec to node Ready,
// to CoreDNS answering a cluster name, and to the first pod Running.
func coldStart(b *testing.B, s *process) (nodeReady, dnsAnswer, podRunning time.Duration) {
	b.Helper()
	begin := time.Now()
	s.start()
	client := s.clientWhenWritten(b)
	ctx := context.Background()
	pod := benchPod("first")
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{Timeout: 200 * time.Millisecond}).DialContext(ctx, "udp", "10.43.0.10:53")
	}}
	created := false
	for nodeReady == 0 || dnsAnswer == 0 || podRunning == 0 {
		select {
		case <-s.exited:
			b.Fatalf("server exited: %v\n%s", s.err, strings.Join(s.lines(), "\n"))
		default:
		}
		if time.Since(begin) > 3*time.Minute {
			b.Fatalf("not up within 3 minutes (ready %s, dns %s, pod %s)", nodeReady, dnsAnswer, podRunning)
		}
		if nodeReady == 0 {
			if n, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil && len(n.Items) > 0 && isReady(n.Items[0]) {
				nodeReady = time.Since(begin)
			}
		}
		if dnsAnswer == 0 {
			qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			if addrs, err := resolver.LookupHost(qctx, "kubernetes.default.svc.cluster.local"); err == nil && len(addrs) > 0 {
				dnsAnswer = time.Since(begin)
			}
			cancel()
		}
		if !created {
			// Pods are refused until the controller-manager made the default ServiceAccount.
			if _, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err == nil || apierrors.IsAlreadyExists(err) {
				created = true
			}
		} else if podRunning == 0 {
			if p, err := client.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{}); err == nil && p.Status.Phase == corev1.PodRunning {
				podRunning = time.Since(begin)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nodeReady, dnsAnswer, podRunning
}

func isReady(n corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func benchPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "main", Image: "k1s.local/busybox:test", ImagePullPolicy: corev1.PullNever,
			Command: []string{"sleep", "3600"},
		}}},
	}
}

// podStartLatency creates n pods at once and returns the p50 and p99 of creation → Running.
func podStartLatency(b *testing.B, client *kubernetes.Clientset, n int) (time.Duration, time.Duration) {
	b.Helper()
	ctx := context.Background()
	created := map[string]time.Time{}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("latency-%d", i)
		created[name] = time.Now()
		if _, err := client.CoreV1().Pods("default").Create(ctx, benchPod(name), metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	running := map[string]time.Duration{}
	deadline := time.Now().Add(5 * time.Minute)
	for len(running) < n && time.Now().Before(deadline) {
		pods, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, p := range pods.Items {
				if _, seen := running[p.Name]; !seen && p.Status.Phase == corev1.PodRunning && strings.HasPrefix(p.Name, "latency-") {
					running[p.Name] = time.Since(created[p.Name])
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(running) < n {
		b.Fatalf("only %d of %d pods running after 5 minutes", len(running), n)
	}
	var all []time.Duration
	for _, d := range running {
		all = append(all, d)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return all[len(all)/2].Round(time.Millisecond), all[(len(all)*99)/100].Round(time.Millisecond)
}

// memory sums PSS and RSS (MB) of k1s, its containerd and the node's shims.
func memory(s *process) (pss, rss float64, detail string) {
	self, _ := os.Stat(*k1sBinary)
	procs, _ := filepath.Glob("/proc/[0-9]*")
	parts := map[string][2]float64{}
	for _, p := range procs {
		exe, err := os.Readlink(p + "/exe")
		if err != nil {
			continue
		}
		name := ""
		if info, err := os.Stat(exe); err == nil && os.SameFile(info, self) {
			cmdline, _ := os.ReadFile(p + "/cmdline")
			name = strings.SplitN(string(cmdline), "\x00", 2)[0]
			name = filepath.Base(name)
		} else if strings.HasPrefix(exe, s.dataDir) {
			name = filepath.Base(exe)
		}
		if name == "" {
			continue
		}
		ps, rs := smapsRollup(p)
		v := parts[name]
		parts[name] = [2]float64{v[0] + ps, v[1] + rs}
		pss += ps
		rss += rs
	}
	var names []string
	for n, v := range parts {
		names = append(names, fmt.Sprintf("%s PSS %.0f RSS %.0f", n, v[0], v[1]))
	}
	sort.Strings(names)
	return pss, rss, strings.Join(names, "; ")
}

func smapsRollup(proc string) (pss, rss float64) {
	f, err := os.Open(proc + "/smaps_rollup")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "Pss:":
			pss = kb / 1024
		case "Rss:":
			rss = kb / 1024
		}
	}
	return pss, rss
}
