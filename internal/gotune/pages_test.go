package gotune

import (
	"bufio"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestFileBackedSpans(t *testing.T) {
	const smaps = `00400000-057cb000 r-xp 00000000 00:2a 1837 /usr/local/bin/k1s
Size:              86828 kB
Rss:               75500 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
057cb000-0b7ff000 r--p 053cb000 00:2a 1837 /usr/local/bin/k1s
Rss:               74296 kB
Anonymous:             0 kB
0b7ff000-0b800000 r--p 0b3ff000 00:2a 1837 /usr/local/bin/k1s
Rss:                   4 kB
Anonymous:             4 kB
0b800000-0d2a9000 rw-p 0b400000 00:2a 1837 /usr/local/bin/k1s
Rss:                1000 kB
Anonymous:           200 kB
0d2a9000-0f31b000 rw-p 00000000 00:00 0
Rss:                 100 kB
Anonymous:           100 kB
7f0c868b4000-7f0c86b3c000 r--p 00000000 00:2a 1838 /usr/local/bin/other file
Rss:                 100 kB
Anonymous:             0 kB
7ffd2c5b1000-7ffd2c5d2000 rw-p 00000000 00:00 0 [stack]
Rss:                 100 kB
Anonymous:           100 kB
`
	got, err := fileBackedSpans(strings.NewReader(smaps), 0x401234)
	if err != nil {
		t.Fatal(err)
	}
	want := []span{{0x400000, 0x57cb000, 75500 << 10}, {0x57cb000, 0xb7ff000, 74296 << 10}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %#v, want the text and the read-only data without private copies: %#v", got, want)
	}
	if _, err := fileBackedSpans(strings.NewReader(smaps), 0x0d2a9010); err == nil {
		t.Fatal("code in an anonymous mapping was taken for the executable's")
	}
	if _, err := fileBackedSpans(strings.NewReader("zz-yy r--p 0 fd:01 1837 /k1s\n"), 0x401234); err == nil {
		t.Fatal("a malformed mapping was accepted")
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
	t.Logf("released %d kB; resident pages of the executable %d kB → %d kB", released>>10, before, after)
	if released == 0 || after >= before {
		t.Fatalf("nothing was released: %d bytes reported, resident %d kB → %d kB", released, before, after)
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
