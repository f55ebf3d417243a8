package gotune

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"reflect"
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
// executable it has touched so far, and returns how many of them were resident, in bytes.
//
// Why: k1s is one 200 MB binary, and every process of it (the server, its containerd) runs the
// init of every package linked in, Kubernetes' API machinery included, then its own start (the
// apiserver's OpenAPI build, the images' import). About 150 MB of the binary stay mapped, and
// count as the processes' memory, although a running node reads only about half of it again.
// MADV_DONTNEED drops the pages from the process's page tables: a page still in use faults back
// in from the page cache (no disk read while the kernel keeps it there), and what only the
// start used is left to the page cache, the first memory the kernel reclaims.
//
// Only the executable's read-only mappings that hold nothing but the file's contents are
// released: a writable one, or a read-only one with private copies of pages (relocations made
// read-only after loading, a debugger's breakpoints), would lose data.
func ReleaseStartPages() (int64, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("reading this process's mappings: %w", err)
	}
	defer f.Close()
	// The mapping this function's own code is in identifies the executable's file: its device
	// and inode as the mappings show them (stat's can differ, on overlayfs for one).
	spans, err := fileBackedSpans(f, uintptr(reflect.ValueOf(ReleaseStartPages).Pointer()))
	if err != nil {
		return 0, err
	}
	var released int64
	for _, s := range spans {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, s.start, s.end-s.start, unix.MADV_DONTNEED); errno != 0 {
			return released, fmt.Errorf("releasing the executable's pages at %#x: %w", s.start, errno)
		}
		released += s.resident
	}
	return released, nil
}

type span struct {
	start, end uintptr
	resident   int64
}

// fileBackedSpans reads a /proc/PID/smaps listing and returns the read-only mappings, without
// private copies of pages, of the file that the mapping holding address pc maps.
func fileBackedSpans(smaps io.Reader, pc uintptr) ([]span, error) {
	type mapping struct {
		span
		file      string // "major:minor inode"
		writable  bool
		anonymous int64
	}
	var all []mapping
	sc := bufio.NewScanner(smaps)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if from, to, ok := strings.Cut(fields[0], "-"); ok && len(fields) >= 5 && !strings.HasSuffix(fields[0], ":") {
			start, err1 := strconv.ParseUint(from, 16, 64)
			end, err2 := strconv.ParseUint(to, 16, 64)
			if err1 != nil || err2 != nil || end <= start {
				return nil, fmt.Errorf("malformed mapping %q", sc.Text())
			}
			all = append(all, mapping{span: span{start: uintptr(start), end: uintptr(end)},
				file: fields[3] + " " + fields[4], writable: strings.ContainsRune(fields[1], 'w')})
			continue
		}
		if len(all) == 0 || len(fields) < 2 {
			continue
		}
		m := &all[len(all)-1]
		switch fields[0] {
		case "Rss:", "Anonymous:":
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("malformed %s line %q", fields[0], sc.Text())
			}
			if fields[0] == "Rss:" {
				m.resident = kb << 10
			} else {
				m.anonymous = kb << 10
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading this process's mappings: %w", err)
	}
	file := ""
	for _, m := range all {
		if m.start <= pc && pc < m.end {
			file = m.file
		}
	}
	if file == "" || strings.HasSuffix(file, " 0") {
		return nil, fmt.Errorf("no file mapping holds this process's code at %#x", pc)
	}
	var spans []span
	for _, m := range all {
		if m.file == file && !m.writable && m.anonymous == 0 {
			spans = append(spans, m.span)
		}
	}
	return spans, nil
}
