package payload

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// usePayload makes a payload of files (name → content), with correct or wrong checksums, the
// embedded one for the test.
func usePayload(t *testing.T, files map[string]string, corruptSum bool) {
	t.Helper()
	var sums strings.Builder
	for _, name := range []string{"bin/runc", "images/pause.tar"} {
		content, ok := files[name]
		if !ok {
			continue
		}
		sum := sha256.Sum256([]byte(content))
		if corruptSum {
			sum[0] ^= 0xff
		}
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(sum[:]), name)
	}
	all := map[string]string{"SHA256SUMS": sums.String(), "images.txt": "pause k1s.local/pause:3.10\n"}
	for k, v := range files {
		all[k] = v
	}
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for name, content := range all {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(content))
	}
	tw.Close()
	var out bytes.Buffer
	enc, _ := zstd.NewWriter(&out)
	enc.Write(tarBuf.Bytes())
	enc.Close()
	oldData, oldHash := compressed, compressedHash
	compressed = out.Bytes()
	sum := sha256.Sum256(compressed)
	compressedHash = hex.EncodeToString(sum[:]) + "\n"
	t.Cleanup(func() { compressed, compressedHash = oldData, oldHash })
}

func TestExtractVerifiesAndReuses(t *testing.T) {
	usePayload(t, map[string]string{"bin/runc": "runc", "images/pause.tar": "image"}, false)
	dataDir := t.TempDir()
	d, err := Extract(dataDir, []string{"kubectl"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(d.BinDir(), "runc")); string(got) != "runc" {
		t.Fatalf("runc = %q", got)
	}
	if d.Images["pause"] != "k1s.local/pause:3.10" {
		t.Fatalf("images = %v", d.Images)
	}
	self, _ := os.Executable()
	if target, _ := os.Readlink(filepath.Join(d.BinDir(), "kubectl")); target != self {
		t.Fatalf("kubectl links to %q, want %q", target, self)
	}
	// A second start reuses the extracted payload.
	marker := filepath.Join(d.Root, "marker")
	os.WriteFile(marker, nil, 0o600)
	if _, err := Extract(dataDir, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("the payload was extracted again")
	}
}

func TestConcurrentExtract(t *testing.T) {
	usePayload(t, map[string]string{"bin/runc": strings.Repeat("r", 1<<20), "images/pause.tar": "image"}, false)
	dataDir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Extract(dataDir, nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(dataDir, "data"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".extract-") {
			t.Errorf("left a temporary directory: %s", e.Name())
		}
	}
}

func TestCorruptPayloadIsRejected(t *testing.T) {
	usePayload(t, map[string]string{"bin/runc": "runc", "images/pause.tar": "image"}, true)
	dataDir := t.TempDir()
	_, err := Extract(dataDir, nil)
	if err == nil || !strings.Contains(err.Error(), "does not match its checksum") {
		t.Fatalf("Extract = %v, want a checksum error", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dataDir, "data"))
	if len(entries) != 0 {
		t.Fatalf("a rejected payload left %d entries", len(entries))
	}
}

// A program the checksums do not list (the build once listed only the images) is rejected too.
func TestUnlistedPayloadFileIsRejected(t *testing.T) {
	usePayload(t, map[string]string{"bin/runc": "runc", "images/pause.tar": "image", "bin/bridge": "bridge"}, false)
	_, err := Extract(t.TempDir(), nil)
	if err == nil || !strings.Contains(err.Error(), "bin/bridge has no checksum") {
		t.Fatalf("Extract = %v, want an error naming bin/bridge", err)
	}
}

func TestOldPayloadsArePruned(t *testing.T) {
	dataDir := t.TempDir()
	var roots []string
	for _, v := range []string{"one", "two", "three"} {
		usePayload(t, map[string]string{"bin/runc": v, "images/pause.tar": v}, false)
		d, err := Extract(dataDir, nil)
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, d.Root)
	}
	if _, err := os.Stat(roots[0]); err == nil {
		t.Error("the oldest payload was kept")
	}
	for _, keep := range roots[1:] {
		if _, err := os.Stat(keep); err != nil {
			t.Errorf("%s was pruned: %v", keep, err)
		}
	}
}

func TestMissingPayload(t *testing.T) {
	oldData := compressed
	compressed = nil
	defer func() { compressed = oldData }()
	if _, err := Extract(t.TempDir(), nil); err != ErrMissing {
		t.Fatalf("Extract = %v, want ErrMissing", err)
	}
}

func TestWholePages(t *testing.T) {
	for _, tc := range []struct{ addr, length, skip, n uintptr }{
		{4096, 3 * 4096, 0, 3 * 4096},        // aligned
		{4096 + 1, 3 * 4096, 4095, 2 * 4096}, // starts inside a page: that page is kept
		{4096, 3*4096 + 100, 0, 3 * 4096},    // ends inside a page: that page is kept
		{4096 + 10, 4000, 0, 0},              // inside one page
		{4096 + 10, 4096 + 4086, 4086, 4096}, // exactly one whole page
		{8191, 2, 0, 0},                      // across a boundary, no whole page
	} {
		skip, n := wholePages(tc.addr, tc.length, 4096)
		if skip != tc.skip || n != tc.n {
			t.Errorf("wholePages(%d, %d) = %d, %d; want %d, %d", tc.addr, tc.length, skip, n, tc.skip, tc.n)
		}
	}
}

func TestLocateAgreesWithExtract(t *testing.T) {
	usePayload(t, map[string]string{"bin/runc": "runc", "images/pause.tar": "image"}, false)
	dataDir := t.TempDir()
	before, err := Locate(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	extracted, err := Extract(dataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	after, err := Locate(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*Dir{before, after} {
		if d.Root != extracted.Root || d.Images["pause"] != extracted.Images["pause"] || len(d.Images) != len(extracted.Images) {
			t.Fatalf("Locate gave %+v, Extract %+v", d, extracted)
		}
		tarballs := d.ImageTarballs()
		if len(tarballs) != 1 {
			t.Fatalf("image tarballs %v", tarballs)
		}
		if _, err := os.Stat(tarballs[0]); err != nil {
			t.Fatalf("the located tarball is not what Extract wrote: %v", err)
		}
	}
}
