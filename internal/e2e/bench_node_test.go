//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/k1s-io/k1s/internal/gotune"
	"github.com/k1s-io/k1s/internal/logging"
)

// BenchmarkNode prints the figures of a one-node cluster: start-up, memory at idle, pod start
// latency. It asserts nothing.
func BenchmarkNode(b *testing.B) {
	const runs = 5
	var ready, dns, firstPod, stops []time.Duration
	var warnings []int
	var last *process
	profileAddr := ""
	// First, while no other server runs on the host: the timeline run has one of its own.
	timeline(b)
	for i := 0; i < runs; i++ {
		var args []string
		if i == runs-1 {
			// The run measured at idle serves its heap profile (loopback: the first server
			// uses the host's network).
			profileAddr = fmt.Sprintf("127.0.0.1:%d", freePort(b))
			args = []string{"--debug-profile", profileAddr}
		}
		s := prepareCluster(b, clusterSpec{Servers: 1, ServerArgs: args}).server()
		r, d, p := coldStart(b, s)
		ready, dns, firstPod = append(ready, r), append(dns, d), append(firstPod, p)
		if i < runs-1 {
			took := stopNode(b, s)
			stops = append(stops, took)
			// The test's resolv.conf names only 127.0.0.1, on purpose.
			noisy := startStopWarnings(s.lines(), "names no resolver CoreDNS can forward to")
			warnings = append(warnings, len(noisy))
			for _, l := range noisy {
				fmt.Printf("  run %d: %s\n", i+1, l)
			}
			continue
		}
		last = s
	}
	printFigure(b, "exec to node Ready", ready, 4*time.Second, "s-node-ready")
	printFigure(b, "exec to CoreDNS answering", dns, 5*time.Second, "s-dns-answering")
	printFigure(b, "exec to first pod Running", firstPod, 0, "s-first-pod")
	printFigure(b, "SIGTERM to exit (pods left running)", stops, 2*time.Second, "s-stop")
	fmt.Printf("%-40s %v per start and stop (goal 0)\n", "WARN/ERROR lines:", warnings)

	time.Sleep(60 * time.Second)
	pss, rss, detail := memory(last)
	fmt.Printf("60 s after ready, CoreDNS and 1 pod running: PSS %.0f MB (goal 300), RSS %.0f MB\n  %s\n", pss, rss, detail)
	b.ReportMetric(pss, "MB-PSS-idle")
	b.ReportMetric(rss, "MB-RSS-idle")
	heapByComponent(b, profileAddr)

	cpu := burstCPU(b, last)
	p50, p99 := podStartLatency(b, last.client(), 30)
	fmt.Printf("pod start latency, 30 pods created at once: p50 %s, p99 %s (goal 2.5s)\n  until the last Running: %s\n", p50, p99, cpu())
	b.ReportMetric(p50.Seconds(), "s-pod-start-p50")
	b.ReportMetric(p99.Seconds(), "s-pod-start-p99")
	// The stops above come seconds after a start; this one, of a node that has run for
	// minutes, stops everything a running node has (the metrics-server serving among them).
	printFigure(b, "SIGTERM to exit after minutes (31 pods)", []time.Duration{stopNode(b, last)}, 2*time.Second, "s-stop-running")
	smallBoardMemory(b)
}

// smallBoardMemory prints the idle PSS of a one-node cluster with the Go memory limit k1s
// picks on a 1 GiB board (a Raspberry Pi 3): on this machine the limit it picks is far above
// what k1s uses, so the figure above does not show what the limit does where it matters.
func smallBoardMemory(b *testing.B) {
	b.Helper()
	const board = 1 << 30
	limit := gotune.Decide(func(string) string { return "" }, board).MemoryLimit
	s := prepareCluster(b, clusterSpec{Servers: 1}).server()
	s.env = append(s.env, fmt.Sprintf("GOMEMLIMIT=%d", limit))
	coldStart(b, s)
	time.Sleep(60 * time.Second)
	pss, rss, detail := memory(s)
	fmt.Printf("the same with the 1 GiB board's limit (GOMEMLIMIT=%dMiB): PSS %.0f MB (goal 300), RSS %.0f MB\n  %s\n",
		limit>>20, pss, rss, detail)
	b.ReportMetric(pss, "MB-PSS-idle-1GiB-board")
	stopNode(b, s)
}

// printFigure prints the median of a figure beside its goal (0: none) and reports it.
func printFigure(b *testing.B, what string, d []time.Duration, goal time.Duration, unit string) {
	g := ""
	if goal > 0 {
		g = fmt.Sprintf(" (goal %s)", goal)
	}
	fmt.Printf("%-40s median %s%s of %v\n", what+":", median(d), g, d)
	b.ReportMetric(median(d).Seconds(), unit)
}

// stopNode stops a one-node server with SIGTERM, returns how long it took, and removes what
// it left running (its pods) so that the next start is cold.
func stopNode(b *testing.B, s *process) time.Duration {
	b.Helper()
	err, took := s.stop()
	if err != nil {
		b.Fatalf("stop: %v", err)
	}
	if out, err := runK1s("killall", "--data-dir", s.dataDir); err != nil {
		b.Fatalf("killall: %v\n%s", err, out)
	}
	return took
}

// timeline starts a one-node server with --debug and prints its start-up timeline: each
// component's start and ready in ms since exec, then each stop.
func timeline(b *testing.B) {
	b.Helper()
	s := prepareCluster(b, clusterSpec{Servers: 1, ServerArgs: []string{"--debug"}}).server()
	coldStart(b, s)
	stopNode(b, s)
	fmt.Println("start-up timeline (ms since exec; one --debug run):")
	for _, l := range s.lines() {
		if i := strings.Index(l, "timeline: "); i >= 0 {
			fmt.Printf("  %s\n", strings.TrimSuffix(l[i+len("timeline: "):], `"`))
		}
	}
}

// heapByComponent prints the k1s process's live heap by component, from its heap profile
// (each allocation counted for the component its stack belongs to: logging.ComponentOf), and
// the Go runtime's view of the process's memory.
func heapByComponent(b *testing.B, addr string) {
	b.Helper()
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?gc=1")
	if err != nil {
		b.Fatalf("heap profile: %v", err)
	}
	defer resp.Body.Close()
	prof, err := profile.Parse(resp.Body)
	if err != nil {
		b.Fatalf("heap profile: %v", err)
	}
	inuse := -1
	for i, st := range prof.SampleType {
		if st.Type == "inuse_space" {
			inuse = i
		}
	}
	if inuse < 0 {
		b.Fatalf("heap profile has no inuse_space")
	}
	byComponent := map[string]int64{}
	var total int64
	for _, sample := range prof.Sample {
		var fns []string
		for _, loc := range sample.Location {
			for _, line := range loc.Line {
				if line.Function != nil {
					fns = append(fns, line.Function.Name)
				}
			}
		}
		byComponent[logging.ComponentOf(fns)] += sample.Value[inuse]
		total += sample.Value[inuse]
	}
	names := make([]string, 0, len(byComponent))
	for n := range byComponent {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return byComponent[names[i]] > byComponent[names[j]] })
	fmt.Printf("live Go heap of the k1s process by component, at idle: %.1f MB\n", float64(total)/(1<<20))
	for _, n := range names {
		fmt.Printf("  %-26s %6.1f MB\n", n, float64(byComponent[n])/(1<<20))
	}
	resp2, err := http.Get("http://" + addr + "/debug/pprof/heap?debug=1")
	if err != nil {
		b.Fatalf("heap stats: %v", err)
	}
	defer resp2.Body.Close()
	sc := bufio.NewScanner(resp2.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	var stats []string
	for sc.Scan() {
		for _, k := range []string{"# HeapInuse = ", "# HeapIdle = ", "# HeapReleased = ", "# StackInuse = ", "# Sys = ", "# NumGC = "} {
			if v, ok := strings.CutPrefix(sc.Text(), k); ok {
				n, _ := strconv.ParseFloat(v, 64)
				name := strings.TrimSuffix(strings.TrimPrefix(k, "# "), " = ")
				if name == "NumGC" {
					stats = append(stats, fmt.Sprintf("%s %.0f", name, n))
				} else {
					stats = append(stats, fmt.Sprintf("%s %.0f MB", name, n/(1<<20)))
				}
			}
		}
	}
	fmt.Printf("  Go runtime: %s\n", strings.Join(stats, ", "))
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

// memory sums PSS and RSS (MB) of k1s, its containerd and the node's shims, and describes
// each of them (PSS split into anonymous memory and mapped files: k1s and containerd share
// the one binary's pages), then the pods' own processes, which the sum leaves out.
func memory(s *process) (pss, rss float64, detail string) {
	self, _ := os.Stat(*k1sBinary)
	procs, _ := filepath.Glob("/proc/[0-9]*")
	var rows, pods []string
	shims := map[string]bool{}
	parents := map[string]string{}
	for _, p := range procs {
		pid := filepath.Base(p)
		if f := procStat(p); len(f) > 1 {
			parents[pid] = f[1]
		}
		exe, err := os.Readlink(p + "/exe")
		if err != nil {
			continue
		}
		name := ""
		if info, err := os.Stat(exe); err == nil && os.SameFile(info, self) {
			cmdline, _ := os.ReadFile(p + "/cmdline")
			name = filepath.Base(strings.SplitN(string(cmdline), "\x00", 2)[0])
		} else if strings.HasPrefix(exe, s.dataDir) {
			name = filepath.Base(exe)
			shims[pid] = true
		}
		if name == "" {
			continue
		}
		m := smapsRollup(p)
		pss += m.pss
		rss += m.rss
		rows = append(rows, fmt.Sprintf("%-26s PSS %5.1f (anon %5.1f, files %5.1f)  RSS %5.1f", name, m.pss, m.pssAnon, m.pssFile, m.rss))
	}
	for pid, parent := range parents {
		if !shims[parent] {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + pid + "/comm")
		m := smapsRollup("/proc/" + pid)
		pods = append(pods, fmt.Sprintf("%-26s PSS %5.1f  RSS %5.1f", strings.TrimSpace(string(comm)), m.pss, m.rss))
	}
	sort.Strings(rows)
	sort.Strings(pods)
	return pss, rss, strings.Join(rows, "\n  ") + "\n  the pods' processes (not in the sum):\n    " + strings.Join(pods, "\n    ")
}

// smaps is a process's memory from smaps_rollup, in MB.
type smaps struct{ pss, pssAnon, pssFile, rss float64 }

func smapsRollup(proc string) smaps {
	var m smaps
	f, err := os.Open(proc + "/smaps_rollup")
	if err != nil {
		return m
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
			m.pss = kb / 1024
		case "Pss_Anon:":
			m.pssAnon = kb / 1024
		case "Pss_File:":
			m.pssFile = kb / 1024
		case "Rss:":
			m.rss = kb / 1024
		}
	}
	return m
}

// burstCPU describes where a burst's CPU time went on a one-node server s: the machine's
// busy time, and the share of k1s, its containerd, the programs containerd runs and reaps
// (CNI plugins, each shim's start), the shims and what they run and reap (runc). Pods start
// in parallel, so the busy time divided by the cores is about when the last one can run.
// Call it before the burst; the function it returns describes the burst so far.
func burstCPU(b *testing.B, s *process) func() string {
	b.Helper()
	containerd := childPID(b, s.pid(), "containerd")
	shimCPU := func() (own, children float64) {
		procs, _ := filepath.Glob("/proc/[0-9]*")
		for _, p := range procs {
			if exe, err := os.Readlink(p + "/exe"); err == nil && strings.HasPrefix(exe, s.dataDir) && filepath.Base(exe) == "containerd-shim-runc-v2" {
				o, c := procCPU(p)
				own, children = own+o, children+c
			}
		}
		return own, children
	}
	k0, _ := procCPU(fmt.Sprintf("/proc/%d", s.pid()))
	c0, cc0 := procCPU(fmt.Sprintf("/proc/%d", containerd))
	s0, sc0 := shimCPU()
	busy0 := machineBusy(b)
	return func() string {
		k1, _ := procCPU(fmt.Sprintf("/proc/%d", s.pid()))
		c1, cc1 := procCPU(fmt.Sprintf("/proc/%d", containerd))
		s1, sc1 := shimCPU()
		busy := machineBusy(b) - busy0
		parts := []float64{k1 - k0, c1 - c0, cc1 - cc0, s1 - s0, sc1 - sc0}
		rest := busy
		for _, p := range parts {
			rest -= p
		}
		return fmt.Sprintf("%.1f CPU-s busy on %d cores (÷ cores: %.1f s): k1s %.1f, containerd %.1f, its children (CNI plugins, shim starts) %.1f, shims %.1f, their children (runc) %.1f, the rest (kernel, pods, this benchmark) %.1f",
			busy, runtime.NumCPU(), busy/float64(runtime.NumCPU()), parts[0], parts[1], parts[2], parts[3], parts[4], rest)
	}
}

// userHZ is the unit of /proc's CPU times: USER_HZ, 100 on every Linux architecture k1s runs on.
const userHZ = 100

// procCPU is a process's own CPU time and that of the children it has reaped, in seconds
// (0 when it is gone).
func procCPU(proc string) (own, children float64) {
	f := procStat(proc)
	if len(f) < 15 {
		return 0, 0
	}
	var t [4]float64
	for i := range t {
		t[i], _ = strconv.ParseFloat(f[11+i], 64)
	}
	return (t[0] + t[1]) / userHZ, (t[2] + t[3]) / userHZ
}

// machineBusy is the CPU time all cores have spent on anything but idling, in seconds.
func machineBusy(b *testing.B) float64 {
	b.Helper()
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	// cpu user nice system idle iowait irq softirq steal …
	f := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i > 7 { // guest time is already counted in user
			break
		}
		n, _ := strconv.ParseFloat(v, 64)
		busy += n
	}
	return busy / userHZ
}
