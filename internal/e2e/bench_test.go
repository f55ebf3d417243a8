//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
)

// BenchmarkControlPlane prints start-up and memory figures. It asserts nothing: figures are
// for people to compare across changes.
func BenchmarkControlPlane(b *testing.B) {
	const runs = 5
	var cold, warm []time.Duration
	for i := 0; i < runs; i++ {
		s := newServer(b)
		cold = append(cold, timeToReady(b, s))
		if err, _ := s.stop(); err != nil {
			b.Fatal(err)
		}
		warm = append(warm, timeToReady(b, s))
		if i < runs-1 {
			if err, _ := s.stop(); err != nil {
				b.Fatal(err)
			}
			continue
		}
		time.Sleep(30 * time.Second)
		rss := statusKB(b, s.cmd.Process.Pid, "VmRSS")
		b.ReportMetric(float64(rss)/1024, "MB-RSS-30s-after-ready")
		fmt.Printf("RSS of k1s server 30 s after ready: %.0f MB\n", float64(rss)/1024)
		if err, _ := s.stop(); err != nil {
			b.Fatal(err)
		}
	}
	printFigure(b, "control plane, exec to /readyz, fresh", cold, 2500*time.Millisecond, "s-cold-start")
	printFigure(b, "control plane, exec to /readyz, restart", warm, 0, "s-restart")

}

// timeToReady starts s and returns the time from exec to the first /readyz "ok".
func timeToReady(b *testing.B, s *process) time.Duration {
	b.Helper()
	begin := time.Now()
	s.start()
	client := s.clientWhenWritten(b)
	for {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background())
		if err == nil && string(body) == "ok" {
			return time.Since(begin)
		}
		select {
		case <-s.exited:
			b.Fatalf("server exited: %v\n%s", s.err, strings.Join(s.lines(), "\n"))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(begin) > 2*time.Minute {
			b.Fatal("not ready within 2 minutes")
		}
	}
}

// clientWhenWritten waits for the server to write its kubeconfig and returns a client.
func (s *process) clientWhenWritten(b *testing.B) *kubernetes.Clientset {
	b.Helper()
	for {
		if _, err := os.Stat(s.kubeconfig); err == nil {
			return s.client()
		}
		select {
		case <-s.exited:
			b.Fatalf("server exited: %v\n%s", s.err, strings.Join(s.lines(), "\n"))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2].Round(time.Millisecond)
}

// statusKB reads a "kB" field of /proc/<pid>/status.
func statusKB(b *testing.B, pid int, field string) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
