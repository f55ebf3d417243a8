package gotune

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestReadOnlyMappingsOf(t *testing.T) {
	const maps = `00400000-057cb000 r-xp 00000000 fd:01 1837 /usr/local/bin/k1s
057cb000-0b7ff000 r--p 053cb000 fd:01 1837 /usr/local/bin/k1s
0b7ff000-0d2a9000 rw-p 0b3ff000 fd:01 1837 /usr/local/bin/k1s
0d2a9000-0f31b000 rw-p 00000000 00:00 0
7f0c868b4000-7f0c86b3c000 r--p 00000000 fd:01 1838 /usr/local/bin/other
7f0c86b3c000-7f0c86b40000 r--p 00000000 fd:02 1837 /mnt/k1s-on-another-disk
7ffd2c5b1000-7ffd2c5d2000 rw-p 00000000 00:00 0 [stack]
`
	got, err := readOnlyMappingsOf(strings.NewReader(maps), unix.Mkdev(0xfd, 1), 1837)
	if err != nil {
		t.Fatal(err)
	}
	want := []span{{0x400000, 0x57cb000}, {0x57cb000, 0xb7ff000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %#v, want the text and read-only data only: %#v", got, want)
	}
	if _, err := readOnlyMappingsOf(strings.NewReader("zz-yy r--p 0 fd:01 1837 /k1s\n"), unix.Mkdev(0xfd, 1), 1837); err == nil {
		t.Fatal("a malformed mapping of the executable was accepted")
	}
}

// The test binary releases its own pages and goes on running: the pages come back from the file.
func TestReleaseStartPages(t *testing.T) {
	before := executableRss(t)
	released, err := ReleaseStartPages()
	if err != nil {
		t.Fatal(err)
	}
	after := executableRss(t)
	t.Logf("released %d kB of mappings; resident pages of the executable %d kB → %d kB", released>>10, before, after)
	if released == 0 || after >= before {
		t.Fatalf("nothing was released: %d bytes of mappings, resident %d kB → %d kB", released, before, after)
	}
}

// executableRss sums the resident kB of this process's mappings of its executable.
func executableRss(t *testing.T) int {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	total, inExe := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			inExe = len(fields) >= 6 && fields[5] == exe
		case inExe && fields[0] == "Rss:":
			kb, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatal(err)
			}
			total += kb
		}
	}
	return total
}
