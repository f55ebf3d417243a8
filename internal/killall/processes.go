package killall

import (
	"bytes"
	"debug/buildinfo"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/k1s-io/k1s/internal/layout"
)

// modulePath is k1s's Go module: the build info of every k1s binary names it.
const modulePath = "github.com/k1s-io/k1s"

type proc struct {
	pid, ppid int
	// start (clock ticks after boot) tells the process from a later one given the same PID.
	start uint64
	exe   string
	argv  []string
}

func (p proc) String() string { return fmt.Sprintf("%d (%s)", p.pid, strings.Join(p.argv, " ")) }

func readProc(pid int) (proc, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return proc{}, false
	}
	// The command name is in parentheses and may contain anything; state, ppid, … follow it.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 > len(stat) {
		return proc{}, false
	}
	fields := strings.Fields(string(stat[i+2:]))
	if len(fields) < 20 || fields[0] == "Z" {
		return proc{}, false
	}
	ppid, _ := strconv.Atoi(fields[1])
	start, _ := strconv.ParseUint(fields[19], 10, 64)
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return proc{
		pid:   pid,
		ppid:  ppid,
		start: start,
		exe:   strings.TrimSuffix(exe, " (deleted)"),
		argv:  strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"),
	}, true
}

// processes lists the live processes, killall itself excepted.
func processes() []proc {
	entries, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if p, ok := readProc(pid); ok {
			out = append(out, p)
		}
	}
	return out
}

// alive reports whether p still runs (a zombie waiting for its parent does not, nor a new
// process that was given p's PID).
func (p proc) alive() bool {
	now, ok := readProc(p.pid)
	return ok && now.start == p.start
}

// signal sends sig to p if p still runs.
func (p proc) signal(sig syscall.Signal) bool {
	return p.alive() && syscall.Kill(p.pid, sig) == nil
}

// withDescendants returns tops and every process below them, parents before children.
func withDescendants(all []proc, tops []proc) []proc {
	children := map[int][]proc{}
	for _, p := range all {
		children[p.ppid] = append(children[p.ppid], p)
	}
	seen := map[int]bool{}
	var out []proc
	var walk func(p proc)
	walk = func(p proc) {
		if seen[p.pid] {
			return
		}
		seen[p.pid] = true
		out = append(out, p)
		for _, c := range children[p.pid] {
			walk(c)
		}
	}
	for _, p := range tops {
		walk(p)
	}
	return out
}

// stopProcesses stops this data directory's k1s (the lock holder, with its containerd) and
// then its shims and the pods below them. Nothing else is a target: other k1s nodes on the
// host hold other data directories, and kubectl sessions hold none.
func stopProcesses(self, dataDir string, report func(string, ...any)) error {
	all := processes()
	var tops []proc
	if holder, ok := lockHolder(dataDir, all, report); ok {
		tops = append(tops, holder)
	}
	ours := map[int]bool{}
	for _, p := range withDescendants(all, tops) {
		ours[p.pid] = true
	}
	selfInfo, _ := os.Stat(self)
	for _, p := range all {
		// Its own containerd k1s stops itself; one whose k1s died is signalled directly.
		if !ours[p.pid] && isNodeContainerd(p, dataDir, selfInfo) {
			tops = append(tops, p)
		}
	}
	// Politely first: k1s stops its components in order.
	for _, p := range tops {
		p.signal(syscall.SIGTERM)
	}
	group := withDescendants(all, tops)
	waitGone(group, 15*time.Second)
	killed := map[int]bool{}
	for _, p := range group {
		if p.signal(syscall.SIGKILL) {
			killed[p.pid] = true
			report("killed process %s: it did not stop within 15 s of SIGTERM", p)
		}
	}
	waitGone(group, 5*time.Second)
	for _, p := range tops {
		if !killed[p.pid] {
			report("stopped process %s", p)
		}
	}

	all = processes()
	var shims []proc
	for _, p := range all {
		if isNodeShim(p, dataDir) {
			shims = append(shims, p)
		}
	}
	victims := withDescendants(all, shims)
	for _, p := range victims {
		if p.signal(syscall.SIGKILL) {
			report("killed process %s", p)
		}
	}
	waitGone(victims, 10*time.Second)
	return nil
}

// isNodeShim: the shims are the payload's, which is extracted under <data-dir>/data/.
func isNodeShim(p proc, dataDir string) bool {
	return strings.HasPrefix(filepath.Base(p.exe), "containerd-shim") && strings.HasPrefix(p.exe, layout.DataDir(dataDir).PayloadDir()+"/")
}

// isNodeContainerd recognises the containerd that k1s runs for dataDir, even when k1s itself is
// gone: k1s starts it as its own executable with argv[0] "containerd" and "--config" naming
// the config.toml it writes under the data directory (internal/containerd). The config path
// ties it to this data directory; the executable's identity (the running binary, or any
// binary built from k1s's module, for one upgraded since) keeps a stranger that merely reads
// that file out.
func isNodeContainerd(p proc, dataDir string, self os.FileInfo) bool {
	if len(p.argv) == 0 || p.argv[0] != "containerd" {
		return false
	}
	config := flagValue(p.argv[1:], "--config", "-c")
	if config == "" {
		return false
	}
	if !filepath.IsAbs(config) {
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", p.pid))
		if err != nil {
			return false
		}
		config = filepath.Join(cwd, config)
	}
	if resolved, err := filepath.EvalSymlinks(config); err == nil {
		config = resolved
	}
	if !strings.HasPrefix(filepath.Clean(config), dataDir+"/") {
		return false
	}
	return isK1sBinary(p.pid, self)
}

// flagValue is the value of the first of names in args ("--name v" or "--name=v").
func flagValue(args []string, names ...string) string {
	for i, a := range args {
		for _, n := range names {
			if a == n && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, n+"="); ok {
				return v
			}
		}
	}
	return ""
}

func isK1sBinary(pid int, self os.FileInfo) bool {
	exe := fmt.Sprintf("/proc/%d/exe", pid) // opens the binary even if it was deleted since
	if info, err := os.Stat(exe); err == nil && self != nil && os.SameFile(info, self) {
		return true
	}
	bi, err := buildinfo.ReadFile(exe)
	return err == nil && bi.Main.Path == modulePath
}

// lockHolderPID is the PID the running k1s wrote into the data directory's lock file, if
// the lock is held (a stale file from a stopped k1s is not a target).
func lockHolderPID(dataDir string) int {
	path := layout.DataDir(dataDir).Lock()
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return 0
	}
	data, _ := os.ReadFile(path)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// lockHolder is the k1s process holding the data directory's lock. The PID in the file is
// trusted only if that process has the file open, so a stray or reused PID is never signalled.
func lockHolder(dataDir string, all []proc, report func(string, ...any)) (proc, bool) {
	pid := lockHolderPID(dataDir)
	if pid <= 0 {
		return proc{}, false
	}
	lock, err := os.Stat(layout.DataDir(dataDir).Lock())
	if err != nil {
		return proc{}, false
	}
	for _, p := range all {
		if p.pid == pid {
			if hasOpen(pid, lock) {
				return p, true
			}
			break
		}
	}
	report("left process %d alone: %s names it, but it does not hold that file", pid, layout.DataDir(dataDir).Lock())
	return proc{}, false
}

// hasOpen reports whether process pid has the file open.
func hasOpen(pid int, file os.FileInfo) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, _ := os.ReadDir(dir)
	for _, fd := range fds {
		if info, err := os.Stat(filepath.Join(dir, fd.Name())); err == nil && os.SameFile(info, file) {
			return true
		}
	}
	return false
}

func waitGone(ps []proc, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		anyAlive := false
		for _, p := range ps {
			if p.alive() {
				anyAlive = true
				break
			}
		}
		if !anyAlive {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
