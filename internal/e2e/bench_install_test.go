//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkRelease prints the size of each release binary (raw, and compressed with zstd -19
// as a download would be), then installs the host's with `curl | sh` on a booted systemd
// machine and prints the time to a Ready node and the disk space the install takes.
func BenchmarkRelease(b *testing.B) {
	for _, arch := range []string{"amd64", "arm64", "arm"} {
		bin := distFile(b, "k1s-"+arch)
		info, err := os.Stat(bin)
		if err != nil {
			b.Fatal(err)
		}
		out, err := exec.Command("sh", "-c", "zstd -19 -T0 -c "+bin+" | wc -c").Output()
		if err != nil {
			b.Fatalf("zstd: %v", err)
		}
		compressed, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		fmt.Printf("dist/k1s-%s: %.1f MiB, zstd -19: %.1f MiB\n", arch, mib(info.Size()), mib(compressed))
		b.ReportMetric(mib(info.Size()), "MiB-"+arch)
		b.ReportMetric(mib(compressed), "MiB-zstd19-"+arch)
	}

	network := newTestNetwork(b)
	m := bootMachine(b, network, "bench")
	port := serveIn(b, m.node.netns, releaseDir(b, map[string]string{"current": *distDir}))
	begin := time.Now()
	if out, err := m.install(port, "current", nil, "server", "--node-ip", m.node.ip); err != nil {
		b.Fatalf("install: %v\n%s\n%s", err, out, m.journal("k1s"))
	}
	active := time.Since(begin)
	m.waitNodeReady(b, "bench")
	ready := time.Since(begin)
	fmt.Printf("curl | sh on a booted systemd host: service active in %s, node Ready in %s\n",
		active.Round(100*time.Millisecond), ready.Round(100*time.Millisecond))
	b.ReportMetric(ready.Seconds(), "s-install-to-node-ready")

	out := m.mustExec("du", "-sxB1", "--total", "/usr/local/bin/k1s", "/var/lib/k1s/data", "/var/lib/k1s")
	fields := strings.Fields(lastLine(nonEmptyLines(out)))
	total, _ := strconv.ParseInt(fields[0], 10, 64)
	fmt.Printf("disk after install (binary, extracted payload, node and cluster state):\n%s", out)
	b.ReportMetric(mib(total), "MiB-disk-installed")
	if out, err := m.execEnv(3*time.Minute, nil, "/usr/local/bin/k1s-uninstall.sh"); err != nil {
		b.Fatalf("uninstall: %v\n%s", err, out)
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
