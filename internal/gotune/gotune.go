// Package gotune sets the Go runtime's memory targets for k1s's long-running processes (the
// server or agent, and its containerd). Go's defaults suit a machine with memory to spare: the
// heap may grow to twice what is live, and the garbage a start leaves is returned to the
// system only slowly. k1s runs on 1 GB boards.
package gotune

import (
	"bufio"
	"context"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

const (
	// GCPercent is GOGC's value unless the environment sets one: the heap grows to 1.5 times
	// what is live instead of 2 times; on a small box memory is scarcer than CPU. Measured on
	// a one-node server: 20–30 MB less PSS, no measurable cost in start-up time.
	GCPercent = 50
	// MemoryFraction is the share of the machine's memory each process aims to stay within
	// unless GOMEMLIMIT is set: a soft limit, which makes the collector run sooner and return
	// memory as the process nears it, and never fails an allocation. A quarter leaves a 1 GB
	// board room for the pods and containerd; on a bigger machine it is rarely reached.
	MemoryFraction = 4
)

// Settings are the targets for a process.
type Settings struct {
	// GCPercent is the value for debug.SetGCPercent, or 0 to leave GOGC's.
	GCPercent int
	// MemoryLimit is the value for debug.SetMemoryLimit in bytes, or 0 to leave GOMEMLIMIT's.
	MemoryLimit int64
}

// Decide returns the targets for a process given its environment and the machine's memory in
// bytes (0: unknown). A variable the user set always wins.
func Decide(getenv func(string) string, totalMemory uint64) Settings {
	var s Settings
	if getenv("GOGC") == "" {
		s.GCPercent = GCPercent
	}
	if getenv("GOMEMLIMIT") == "" && totalMemory > 0 {
		s.MemoryLimit = int64(totalMemory / MemoryFraction)
	}
	return s
}

// Apply sets the targets for this process.
func Apply() Settings {
	s := Decide(os.Getenv, totalMemory())
	if s.GCPercent != 0 {
		debug.SetGCPercent(s.GCPercent)
		// Inherited by containerd and its shims (Go programs too).
		os.Setenv("GOGC", strconv.Itoa(s.GCPercent))
	}
	if s.MemoryLimit != 0 {
		debug.SetMemoryLimit(s.MemoryLimit)
	}
	return s
}

// Settle waits SettleDelay, unless ctx ends first, then returns to the system what the start
// left behind: its garbage (tens of MB: the apiserver builds its OpenAPI documents, the
// components their informers; the runtime would otherwise keep it for reuse for minutes) and
// the executable's pages only the start used (ReleaseStartPages). It returns the bytes of the
// executable's resident pages released. Waiting keeps the forced collection and the pages
// faulting back in off the path of the node's first pods.
func Settle(ctx context.Context) (int64, error) {
	t := time.NewTimer(SettleDelay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return 0, nil
	case <-t.C:
	}
	debug.FreeOSMemory()
	return ReleaseStartPages()
}

// totalMemory is MemTotal from /proc/meminfo in bytes, or 0.
func totalMemory() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb * 1024
		}
	}
	return 0
}
