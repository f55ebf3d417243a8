package gotune

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// SettleDelay is how long a process runs (k1s: after it is ready; containerd: after it starts)
// before it gives back what its start alone used: long enough for the start's stragglers (the
// add-ons, the node's first pods, the images' import) to have run.
const SettleDelay = 30 * time.Second

// ReleaseStartPages tells the kernel that this process no longer needs the pages of its own
// executable it has touched so far, and returns how many bytes of mappings it released.
//
// Why: k1s is one 200 MB binary, and every process of it (the server, its containerd) runs the
// init of every package linked in, Kubernetes' API machinery included, then its own start (the
// apiserver's OpenAPI build, the images' import). Those pages stay mapped, and counted as the
// process's memory, although a running node never reads most of them again: about 150 MB at
// idle, of which about 95 MB is in use (measured on a one-node server and its containerd).
// MADV_DONTNEED unmaps them; a page still in use faults back in from the page cache at once (no
// disk read), and what only the start used is left to the page cache, the first memory the
// kernel reclaims.
//
// Only read-only mappings of the executable are released: they hold the file's contents and
// nothing else, so releasing them cannot lose data. The writable data segment is left alone.
func ReleaseStartPages() (int64, error) {
	var exe unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &exe); err != nil {
		return 0, fmt.Errorf("finding this process's executable: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("reading this process's mappings: %w", err)
	}
	defer f.Close()
	spans, err := readOnlyMappingsOf(f, uint64(exe.Dev), exe.Ino)
	if err != nil {
		return 0, err
	}
	var released int64
	for _, s := range spans {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, s.start, s.end-s.start, unix.MADV_DONTNEED); errno != 0 {
			return released, fmt.Errorf("releasing the executable's pages at %#x: %w", s.start, errno)
		}
		released += int64(s.end - s.start)
	}
	return released, nil
}

type span struct{ start, end uintptr }

// readOnlyMappingsOf returns the read-only mappings of the file dev/ino in a /proc/PID/maps
// listing ("start-end perms offset major:minor inode path").
func readOnlyMappingsOf(maps io.Reader, dev, ino uint64) ([]span, error) {
	var spans []span
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || strings.ContainsRune(fields[1], 'w') || fields[4] != strconv.FormatUint(ino, 10) {
			continue
		}
		major, minor, ok := strings.Cut(fields[3], ":")
		if !ok {
			continue
		}
		maj, err1 := strconv.ParseUint(major, 16, 32)
		mnr, err2 := strconv.ParseUint(minor, 16, 32)
		if err1 != nil || err2 != nil || unix.Mkdev(uint32(maj), uint32(mnr)) != dev {
			continue
		}
		from, to, ok := strings.Cut(fields[0], "-")
		if !ok {
			return nil, fmt.Errorf("malformed mapping %q", sc.Text())
		}
		start, err1 := strconv.ParseUint(from, 16, 64)
		end, err2 := strconv.ParseUint(to, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("malformed mapping %q", sc.Text())
		}
		spans = append(spans, span{uintptr(start), uintptr(end)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading this process's mappings: %w", err)
	}
	return spans, nil
}
