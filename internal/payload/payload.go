// Package payload holds what k1s runs but must not link: containerd-shim-runc-v2, runc and the
// CNI plugins (started per pod, so they must be small separate programs) and the system images.
// The payload is embedded compressed, and extracted once per version into
// <data-dir>/data/<hash>/, verified against the checksums recorded when it was built.
package payload

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unsafe"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/k1s-io/k1s/internal/fileutil"
	"github.com/k1s-io/k1s/internal/layout"
)

// ErrMissing means the binary was built without its payload.
var ErrMissing = errors.New("this k1s binary was built without its payload (containerd shim, runc, CNI plugins, system images); build it with `make build`")

// Dir is an extracted payload.
type Dir struct {
	// Root is <data-dir>/data/<hash>.
	Root string
	// Images maps a system image's short name (pause, coredns) to its reference.
	Images map[string]string
}

// BinDir holds the helper programs (and links to k1s's own multicall names).
func (d *Dir) BinDir() string { return filepath.Join(d.Root, "bin") }

// ImageTarballs are the system images, to import at start: images/<short name>.tar
// (scripts/build-payload.sh), known before the payload is extracted.
func (d *Dir) ImageTarballs() []string {
	var out []string
	for name := range d.Images {
		out = append(out, filepath.Join(d.Root, "images", name+".tar"))
	}
	sort.Strings(out)
	return out
}

// Available reports whether this binary carries a payload.
func Available() bool { return len(compressed) > 0 }

// Extract makes sure the embedded payload is extracted under the data directory's payload
// directory (layout's PayloadDir) and returns it.
// Concurrent starts are safe: each extracts into its own temporary directory and the first
// rename wins. Older payloads are pruned, except the one in use before this start (its shims
// may still run pods).
func Extract(dataDir string, links []string) (*Dir, error) {
	final, hash, err := location(dataDir)
	if err != nil {
		return nil, err
	}
	base := filepath.Dir(final)
	// Nothing else reads the compressed payload (ImageRefs a few pages of it).
	defer releaseEmbedded()
	if _, err := os.Stat(filepath.Join(final, "SHA256SUMS")); err != nil {
		if err := os.MkdirAll(base, 0o700); err != nil {
			return nil, fmt.Errorf("creating %s: %w", base, err)
		}
		if sum := sha256.Sum256(compressed); hex.EncodeToString(sum[:]) != hash {
			return nil, errors.New("the embedded payload does not match its checksum: the k1s binary is damaged, reinstall it")
		}
		tmp, err := os.MkdirTemp(base, ".extract-")
		if err != nil {
			return nil, fmt.Errorf("extracting payload: %w", err)
		}
		defer os.RemoveAll(tmp)
		if err := unpack(tmp); err != nil {
			return nil, fmt.Errorf("extracting payload into %s: %w", tmp, err)
		}
		if err := os.Rename(tmp, final); err != nil {
			if _, statErr := os.Stat(filepath.Join(final, "SHA256SUMS")); statErr != nil {
				return nil, fmt.Errorf("installing payload into %s: %w", final, err)
			}
			// Another k1s extracted the same payload first.
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("locating the k1s binary: %w", err)
	}
	for _, name := range links {
		link := filepath.Join(final, "bin", name)
		if target, err := os.Readlink(link); err == nil && target == self {
			continue
		}
		if err := fileutil.SymlinkAtomic(self, link); err != nil {
			return nil, err
		}
	}
	if err := switchCurrent(base, final); err != nil {
		return nil, err
	}
	images, err := readImageList(filepath.Join(final, "images.txt"))
	if err != nil {
		return nil, err
	}
	return &Dir{Root: final, Images: images}, nil
}

// Locate returns the directory Extract extracts the embedded payload into, with its system
// images, without extracting it: a node configures its components while the payload is
// extracted beside the control plane's start, and only the kubelet and the image import
// need its files.
func Locate(dataDir string) (*Dir, error) {
	final, _, err := location(dataDir)
	if err != nil {
		return nil, err
	}
	// Extracted at an earlier start (Extract's test): its list is on disk, and the archive
	// need not be decompressed for it.
	if _, err := os.Stat(filepath.Join(final, "SHA256SUMS")); err == nil {
		if images, err := readImageList(filepath.Join(final, "images.txt")); err == nil {
			return &Dir{Root: final, Images: images}, nil
		}
	}
	images, err := ImageRefs()
	if err != nil {
		return nil, err
	}
	return &Dir{Root: final, Images: images}, nil
}

// location is where the embedded payload is extracted under dataDir, and its checksum.
func location(dataDir string) (dir, hash string, err error) {
	if !Available() {
		return "", "", ErrMissing
	}
	hash = strings.TrimSpace(compressedHash)
	if len(hash) < 16 {
		return "", "", fmt.Errorf("payload checksum %q is malformed: rebuild with `make build`", hash)
	}
	return filepath.Join(layout.DataDir(dataDir).PayloadDir(), hash[:16]), hash, nil
}

// embeddedPayload is the binary's own payload: tests swap payloads of their own, on the heap,
// into compressed, and those must never be released.
var embeddedPayload = unsafe.SliceData(compressed)

// releaseEmbedded gives the embedded payload's memory back: extracting it reads all of it
// (29 MB on amd64), and the kernel keeps those pages mapped in the process, counted in its
// memory for as long as it runs, although nothing reads them again. They are unmodified pages
// of the binary's file, so a later read (ImageRefs) maps them from the file again.
func releaseEmbedded() {
	if len(compressed) == 0 || unsafe.SliceData(compressed) != embeddedPayload {
		return
	}
	skip, n := wholePages(uintptr(unsafe.Pointer(embeddedPayload)), uintptr(len(compressed)), uintptr(os.Getpagesize()))
	if n == 0 {
		return
	}
	pages := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(embeddedPayload), skip)), n)
	// Advice only: without it the pages stay counted, nothing else changes.
	_ = unix.Madvise(pages, unix.MADV_DONTNEED)
}

// wholePages returns the offset and length of the whole pages inside [addr, addr+length): a
// page the payload shares with other variables may hold their writes, which releasing it
// would undo.
func wholePages(addr, length, page uintptr) (skip, n uintptr) {
	skip = (page - addr%page) % page
	if length <= skip || (length-skip)&^(page-1) == 0 {
		return 0, 0
	}
	return skip, (length - skip) &^ (page - 1)
}

// unpack decompresses the payload into dir and verifies every file against SHA256SUMS.
func unpack(dir string) error {
	dec, err := zstd.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return err
	}
	defer dec.Close()
	tr := tar.NewReader(dec)
	// Every program and image must be covered by a checksum, not only the ones listed.
	unlisted := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(hdr.Name)
		if filepath.IsAbs(name) || strings.HasPrefix(name, "..") {
			return fmt.Errorf("payload entry %q escapes the payload directory", hdr.Name)
		}
		path := filepath.Join(dir, name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(hdr.Mode).Perm())
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if closeErr := f.Close(); err == nil {
				err = closeErr
			}
			if err != nil {
				return err
			}
			if name != "SHA256SUMS" && name != "images.txt" {
				unlisted[name] = true
			}
		}
	}
	return verify(dir, unlisted)
}

// verify checks the files SHA256SUMS lists, and that it lists every one of unlisted.
func verify(dir string, unlisted map[string]bool) error {
	sums, err := os.Open(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		return fmt.Errorf("payload has no checksums: %w", err)
	}
	defer sums.Close()
	sc := bufio.NewScanner(sums)
	n := 0
	for sc.Scan() {
		want, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			return fmt.Errorf("malformed checksum line %q", sc.Text())
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		if hex.EncodeToString(h.Sum(nil)) != want {
			return fmt.Errorf("payload file %s does not match its checksum", name)
		}
		delete(unlisted, filepath.Clean(name))
		n++
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if n == 0 {
		return errors.New("payload checksums list no files")
	}
	for name := range unlisted {
		return fmt.Errorf("payload file %s has no checksum (a broken build: rebuild the payload)", name)
	}
	return nil
}

// switchCurrent points base/current at final, keeps the previous target as base/previous, and
// removes every other extracted payload.
func switchCurrent(base, final string) error {
	current := filepath.Join(base, "current")
	previous, _ := os.Readlink(current)
	if previous != final {
		if previous != "" {
			if err := fileutil.SymlinkAtomic(previous, filepath.Join(base, "previous")); err != nil {
				return err
			}
		}
		if err := fileutil.SymlinkAtomic(final, current); err != nil {
			return err
		}
	}
	keep := map[string]bool{final: true, previous: true}
	if p, err := os.Readlink(filepath.Join(base, "previous")); err == nil {
		keep[p] = true
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		return err
	}
	for _, e := range entries {
		path := filepath.Join(base, e.Name())
		if !e.IsDir() || keep[path] || strings.HasPrefix(e.Name(), ".extract-") || inUse(path) {
			continue
		}
		os.RemoveAll(path)
	}
	return nil
}

// inUse reports whether a running process is a program of dir (a shim of pods that were not
// restarted since an upgrade, whose runc is there too).
func inUse(dir string) bool {
	exes, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, exe := range exes {
		if target, err := os.Readlink(exe); err == nil && strings.HasPrefix(target, dir+"/") {
			return true
		}
	}
	return false
}

func readImageList(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("payload has no image list: %w", err)
	}
	return parseImageList(data), nil
}

// ImageRefs returns the system images' references without extracting the payload: the image
// list is near the start of the archive.
func ImageRefs() (map[string]string, error) {
	if !Available() {
		return nil, ErrMissing
	}
	dec, err := zstd.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	tr := tar.NewReader(dec)
	for {
		hdr, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("payload has no image list: %w", err)
		}
		if filepath.Clean(hdr.Name) != "images.txt" {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		return parseImageList(data), nil
	}
}

func parseImageList(data []byte) map[string]string {
	images := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if name, ref, ok := strings.Cut(line, " "); ok {
			images[name] = ref
		}
	}
	return images
}
