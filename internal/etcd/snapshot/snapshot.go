// Package snapshot owns the files of etcd snapshots: their names, the metadata beside each
// (node, time, size, sha256), writing one atomically, listing, pruning, and checking one
// before a restore. It does no etcd or Kubernetes work itself, so that the decisions are
// cheap to test: the caller hands it the snapshot stream etcd sends.
package snapshot

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/k1s-io/k1s/internal/args"
	"github.com/k1s-io/k1s/internal/fileutil"
)

// Name prefixes: on-demand snapshots (`k1s etcd-snapshot save` without --name) and scheduled
// ones, as k3s names them. Scheduled retention prunes only its own prefix, so that a snapshot
// taken by hand is never deleted by the schedule.
const (
	OnDemandPrefix  = "on-demand"
	ScheduledPrefix = "etcd-snapshot"
)

const (
	metadataSuffix   = ".json"
	compressedSuffix = ".gz"
	// tempPrefix starts the names of snapshots being written; List never shows them.
	tempPrefix = ".tmp-"
)

// Metadata is what is recorded beside each snapshot, in <file>.json.
type Metadata struct {
	Name    string    `json:"name"`
	Node    string    `json:"node"`
	Created time.Time `json:"created"`
	// Size and SHA256 are those of the file as stored (compressed or not).
	Size       int64  `json:"size"`
	SHA256     string `json:"sha256"`
	Compressed bool   `json:"compressed"`
}

// Entry is a snapshot found in a directory.
type Entry struct {
	Metadata
	// Path is the snapshot file.
	Path string
	// HasMetadata is false for a file without its <file>.json (copied in by hand, or of an
	// older tool): its node is unknown and its time is the file's.
	HasMetadata bool
}

var prefixPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,99})$`)

// ValidatePrefix checks a --name: it becomes the start of a file name.
func ValidatePrefix(prefix string) error {
	if !prefixPattern.MatchString(prefix) {
		return fmt.Errorf("--name %q is not a valid snapshot name: use lower-case letters, digits, '.', '_' and '-' (at most 100), starting with a letter or digit", prefix)
	}
	return nil
}

// FileName is a snapshot's name (and file name): <prefix>-<node>-<unix seconds>[.gz], as k3s
// names them, so that names sort by prefix and node and say when they were taken.
func FileName(prefix, node string, created time.Time, compressed bool) string {
	name := fmt.Sprintf("%s-%s-%d", prefix, node, created.Unix())
	if compressed {
		name += compressedSuffix
	}
	return name
}

// ParseSchedule parses a cron expression of five fields (minute hour day month weekday).
func ParseSchedule(spec string) (cron.Schedule, error) {
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("--etcd-snapshot-schedule-cron %q: %v; give five fields, minute hour day month weekday, like \"0 */12 * * *\"", spec, err)
	}
	return s, nil
}

// ClientEndpoint is the URL a running server's etcd serves clients at, and its member name
// (the node name), from the effective etcd command line the server recorded (see
// datadir.RecordArgs): --etcd-arg listen-client-urls=… may have moved it from the default.
// An unspecified listen address is reached on loopback.
func ClientEndpoint(etcdArgs []string) (endpoint, node string, err error) {
	urls, ok := args.Value(etcdArgs, "listen-client-urls")
	if !ok || urls == "" {
		return "", "", errors.New("the server's recorded etcd arguments have no listen-client-urls")
	}
	first, _, _ := strings.Cut(urls, ",")
	u, err := url.Parse(first)
	if err != nil {
		return "", "", fmt.Errorf("the server's etcd listen-client-urls %q: %w", urls, err)
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
		loopback := "127.0.0.1"
		if ip.To4() == nil {
			loopback = "::1"
		}
		u.Host = net.JoinHostPort(loopback, u.Port())
	}
	node, _ = args.Value(etcdArgs, "name")
	return u.String(), node, nil
}

// Write stores the snapshot stream src as dir/name with its metadata. The stream is etcd's:
// its last 32 bytes are the sha256 of the rest, which is checked as it is written. The file
// is written under a temporary name and appears under its own only once complete and synced,
// with its metadata already beside it; on any failure nothing is left behind.
func Write(dir string, meta Metadata, src io.Reader) (Metadata, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return meta, fmt.Errorf("creating the snapshot directory: %w", err)
	}
	final := filepath.Join(dir, meta.Name)
	if _, err := os.Lstat(final); err == nil {
		return meta, fmt.Errorf("a snapshot named %s already exists in %s; choose another --name or wait a second", meta.Name, dir)
	}
	tmp, err := os.CreateTemp(dir, tempPrefix+meta.Name+"-*")
	if err != nil {
		return meta, writeError(dir, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	stored := sha256.New()
	counter := &countingWriter{w: io.MultiWriter(tmp, stored)}
	var out io.Writer = counter
	var gz *gzip.Writer
	if meta.Compressed {
		gz = gzip.NewWriter(counter)
		out = gz
	}
	check := newTrailerCheck()
	if _, err := io.Copy(io.MultiWriter(out, check), src); err != nil {
		return meta, writeError(dir, err)
	}
	if err := check.verify(); err != nil {
		return meta, fmt.Errorf("etcd sent a damaged snapshot: %w", err)
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			return meta, writeError(dir, err)
		}
	}
	if err := tmp.Sync(); err != nil {
		return meta, writeError(dir, err)
	}
	if err := tmp.Close(); err != nil {
		return meta, writeError(dir, err)
	}
	meta.Size = counter.n
	meta.SHA256 = hex.EncodeToString(stored.Sum(nil))
	data, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return meta, err
	}
	metaPath := final + metadataSuffix
	if err := fileutil.WriteAtomic(metaPath, append(data, '\n'), 0o600); err != nil {
		return meta, writeError(dir, err)
	}
	// A link, not a rename: it fails rather than replace a snapshot of the same name.
	if err := os.Link(tmp.Name(), final); err != nil {
		os.Remove(metaPath)
		if errors.Is(err, fs.ErrExist) {
			return meta, fmt.Errorf("a snapshot named %s already exists in %s; choose another --name or wait a second", meta.Name, dir)
		}
		return meta, writeError(dir, err)
	}
	os.Remove(tmp.Name())
	ok = true
	syncDir(dir)
	return meta, nil
}

// writeError names the fix of the failures a user can cause.
func writeError(dir string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("no space left in %s for the snapshot (the partial file was removed); free space there or choose another --etcd-snapshot-dir", dir)
	}
	return fmt.Errorf("writing the snapshot in %s (the partial file was removed): %w", dir, err)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// trailerCheck verifies etcd's snapshot format: the data, then the sha256 of the data.
type trailerCheck struct {
	h    hash.Hash
	tail []byte
	n    int64
}

func newTrailerCheck() *trailerCheck { return &trailerCheck{h: sha256.New()} }

func (c *trailerCheck) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	c.tail = append(c.tail, p...)
	if extra := len(c.tail) - sha256.Size; extra > 0 {
		c.h.Write(c.tail[:extra])
		c.tail = append(c.tail[:0], c.tail[extra:]...)
	}
	return len(p), nil
}

func (c *trailerCheck) verify() error {
	// etcd pads the database to 512-byte pages and appends the 32-byte sum.
	if c.n%512 != sha256.Size {
		return fmt.Errorf("%d bytes is not the size of an etcd snapshot (pages of 512 bytes and a sha256)", c.n)
	}
	if !bytes.Equal(c.h.Sum(nil), c.tail) {
		return errors.New("its content does not match the sha256 at its end")
	}
	return nil
}

// List returns the snapshots in dir, oldest first. A missing directory has none.
func List(dir string) ([]Entry, error) {
	files, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the snapshot directory: %w", err)
	}
	var out []Entry
	for _, f := range files {
		name := f.Name()
		if !f.Type().IsRegular() || strings.HasPrefix(name, ".") || strings.HasSuffix(name, metadataSuffix) {
			continue
		}
		e, err := entry(dir, name)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	sortOldestFirst(out)
	return out, nil
}

func sortOldestFirst(entries []Entry) {
	sort.SliceStable(entries, func(i, j int) bool {
		if !entries[i].Created.Equal(entries[j].Created) {
			return entries[i].Created.Before(entries[j].Created)
		}
		return entries[i].Name < entries[j].Name
	})
}

func entry(dir, name string) (Entry, error) {
	path := filepath.Join(dir, name)
	info, err := os.Stat(path)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Path: path, Metadata: Metadata{Name: name, Size: info.Size(), Created: info.ModTime()}}
	meta, found, err := ReadMetadata(path)
	if err != nil {
		return Entry{}, err
	}
	if found {
		e.Metadata, e.HasMetadata = meta, true
		e.Name = name
	}
	return e, nil
}

// ReadMetadata reads the metadata beside the snapshot file path, if there is any.
func ReadMetadata(path string) (Metadata, bool, error) {
	var m Metadata
	data, err := os.ReadFile(path + metadataSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("reading the metadata of snapshot %s: %w", path, err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, false, fmt.Errorf("the metadata of snapshot %s (%s) is malformed: %w", path, path+metadataSuffix, err)
	}
	return m, true, nil
}

// Find returns the snapshot called name in dir.
func Find(dir, name string) (Entry, error) {
	notFound := fmt.Errorf("%q is not a snapshot in %s (see 'k1s etcd-snapshot ls')", name, dir)
	if name == "" || strings.ContainsRune(name, '/') || strings.HasPrefix(name, ".") || strings.HasSuffix(name, metadataSuffix) {
		return Entry{}, notFound
	}
	info, err := os.Lstat(filepath.Join(dir, name))
	if err != nil || !info.Mode().IsRegular() {
		return Entry{}, notFound
	}
	return entry(dir, name)
}

// Remove deletes a snapshot and its metadata.
func Remove(e Entry) error {
	if err := os.Remove(e.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting snapshot %s: %w", e.Name, err)
	}
	if err := os.Remove(e.Path + metadataSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting the metadata of snapshot %s: %w", e.Name, err)
	}
	return nil
}

// ToPrune chooses the snapshots that retention removes: of those whose name starts with
// prefix ("" for all) and that node took ("" for any node), all but the newest retain.
func ToPrune(entries []Entry, prefix, node string, retain int) []Entry {
	var matching []Entry
	for _, e := range entries {
		if prefix != "" && !strings.HasPrefix(e.Name, prefix+"-") {
			continue
		}
		if node != "" && e.HasMetadata && e.Node != node {
			continue
		}
		matching = append(matching, e)
	}
	sortOldestFirst(matching)
	if len(matching) <= retain {
		return nil
	}
	return matching[:len(matching)-retain]
}

// Prune removes what ToPrune chooses from dir and returns the names removed.
func Prune(dir, prefix, node string, retain int) ([]string, error) {
	if retain < 1 {
		return nil, fmt.Errorf("a retention of %d would delete every snapshot; keep at least 1", retain)
	}
	entries, err := List(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range ToPrune(entries, prefix, node, retain) {
		if err := Remove(e); err != nil {
			return removed, err
		}
		removed = append(removed, e.Name)
	}
	return removed, nil
}

// Extract checks the snapshot file path and writes the etcd database it holds to dst (a new
// file), uncompressed: the file must match the sha256 of its metadata when it has any, and be
// an etcd snapshot whose own trailing sha256 matches. A compressed snapshot is recognised by
// its content, not its name.
func Extract(path, dst string) (Metadata, error) {
	meta, hasMeta, err := ReadMetadata(path)
	if err != nil {
		return meta, err
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return meta, fmt.Errorf("%s is not a snapshot: no such file", path)
		}
		return meta, fmt.Errorf("opening snapshot %s: %w", path, err)
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
		return meta, fmt.Errorf("%s is not a snapshot: not a regular file", path)
	}
	if hasMeta {
		sum := sha256.New()
		if _, err := io.Copy(sum, f); err != nil {
			return meta, fmt.Errorf("reading snapshot %s: %w", path, err)
		}
		if got := hex.EncodeToString(sum.Sum(nil)); got != meta.SHA256 {
			return meta, fmt.Errorf("snapshot %s does not match its checksum (sha256 %s, recorded %s): the file is damaged; restore another snapshot", path, got, meta.SHA256)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return meta, err
		}
	}
	var src io.Reader = f
	magic := make([]byte, 2)
	if n, _ := io.ReadFull(f, magic); n == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return meta, err
		}
		gz, err := gzip.NewReader(f)
		if err != nil {
			return meta, fmt.Errorf("%s is not an etcd snapshot: %w", path, err)
		}
		defer gz.Close()
		src = gz
	} else if _, err := f.Seek(0, io.SeekStart); err != nil {
		return meta, err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return meta, fmt.Errorf("extracting snapshot %s: %w", path, err)
	}
	check := newTrailerCheck()
	_, err = io.Copy(io.MultiWriter(out, check), src)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if verr := check.verify(); verr != nil {
			os.Remove(dst)
			return meta, fmt.Errorf("%s is not an etcd snapshot, or is damaged: %w", path, verr)
		}
		return meta, nil
	}
	os.Remove(dst)
	if errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) {
		return meta, fmt.Errorf("%s is not an etcd snapshot, or is damaged: %w", path, err)
	}
	return meta, fmt.Errorf("extracting snapshot %s to %s: %w", path, filepath.Dir(dst), err)
}
