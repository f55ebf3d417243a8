package snapshot

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stream is what etcd sends: the database in 512-byte pages, then its sha256.
func stream(content string) []byte {
	data := make([]byte, 1024)
	copy(data, content)
	sum := sha256.Sum256(data)
	return append(data, sum[:]...)
}

func TestFileName(t *testing.T) {
	at := time.Unix(1700000000, 0)
	if got := FileName(OnDemandPrefix, "node-a", at, false); got != "on-demand-node-a-1700000000" {
		t.Errorf("FileName = %q", got)
	}
	if got := FileName(ScheduledPrefix, "n", at, true); got != "etcd-snapshot-n-1700000000.gz" {
		t.Errorf("compressed FileName = %q", got)
	}
	for _, bad := range []string{"", "../x", "a/b", "UPPER", ".hidden", strings.Repeat("a", 102)} {
		if ValidatePrefix(bad) == nil {
			t.Errorf("ValidatePrefix(%q) accepted it", bad)
		}
	}
	if err := ValidatePrefix("before-upgrade_1.2"); err != nil {
		t.Error(err)
	}
}

func TestParseSchedule(t *testing.T) {
	s, err := ParseSchedule("0 */12 * * *")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)
	if next := s.Next(from); !next.Equal(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("next = %v", next)
	}
	if _, err := ParseSchedule("every day"); err == nil || !strings.Contains(err.Error(), "--etcd-snapshot-schedule-cron") {
		t.Errorf("bad cron: %v", err)
	}
}

func TestClientEndpoint(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--name=n1", "--listen-client-urls=https://127.0.0.1:2379"}, "https://127.0.0.1:2379"},
		{[]string{"--name=n1", "--listen-client-urls=https://0.0.0.0:23790,https://10.0.0.1:2379"}, "https://127.0.0.1:23790"},
		{[]string{"--name=n1", "--listen-client-urls=https://[::]:2379"}, "https://[::1]:2379"},
	} {
		got, node, err := ClientEndpoint(c.args)
		if err != nil || got != c.want || node != "n1" {
			t.Errorf("ClientEndpoint(%v) = %q %q %v, want %q", c.args, got, node, err, c.want)
		}
	}
	if _, _, err := ClientEndpoint([]string{"--name=n"}); err == nil {
		t.Error("no listen-client-urls accepted")
	}
}

func TestWriteListExtract(t *testing.T) {
	for _, compressed := range []bool{false, true} {
		dir := t.TempDir()
		created := time.Unix(1700000000, 0).UTC()
		name := FileName(OnDemandPrefix, "n1", created, compressed)
		meta, err := Write(dir, Metadata{Name: name, Node: "n1", Created: created, Compressed: compressed}, bytes.NewReader(stream("db")))
		if err != nil {
			t.Fatal(err)
		}
		if meta.SHA256 == "" || meta.Size == 0 {
			t.Errorf("metadata %+v", meta)
		}
		list, err := List(dir)
		if err != nil || len(list) != 1 || !list[0].HasMetadata || list[0].Node != "n1" || list[0].Name != name || !list[0].Created.Equal(created) {
			t.Fatalf("List = %+v, %v", list, err)
		}
		if _, err := Write(dir, Metadata{Name: name}, bytes.NewReader(stream("other"))); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("a second snapshot of the same name: %v", err)
		}
		dst := filepath.Join(t.TempDir(), "db")
		if _, err := Extract(list[0].Path, dst); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(dst); !bytes.Equal(got, stream("db")) {
			t.Errorf("extracted %d bytes, not the snapshot", len(got))
		}
		// A byte changed: the recorded checksum catches it.
		data, _ := os.ReadFile(list[0].Path)
		data[len(data)/2] ^= 0xff
		os.WriteFile(list[0].Path, data, 0o600)
		if _, err := Extract(list[0].Path, filepath.Join(t.TempDir(), "db")); err == nil || !strings.Contains(err.Error(), "does not match its checksum") {
			t.Errorf("damaged snapshot: %v", err)
		}
	}
}

func TestExtractRefusesWhatIsNotASnapshot(t *testing.T) {
	dir := t.TempDir()
	notSnapshot := filepath.Join(dir, "notes.txt")
	os.WriteFile(notSnapshot, []byte("hello"), 0o600)
	if _, err := Extract(notSnapshot, filepath.Join(dir, "out")); err == nil || !strings.Contains(err.Error(), "is not an etcd snapshot") {
		t.Errorf("a text file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Error("left the extracted file")
	}
	// Without metadata, etcd's own trailing sum still catches damage.
	damaged := stream("db")
	damaged[3] ^= 1
	path := filepath.Join(dir, "copied-in")
	os.WriteFile(path, damaged, 0o600)
	if _, err := Extract(path, filepath.Join(dir, "out2")); err == nil || !strings.Contains(err.Error(), "does not match the sha256") {
		t.Errorf("a damaged snapshot without metadata: %v", err)
	}
	if _, err := Extract(filepath.Join(dir, "missing"), filepath.Join(dir, "out3")); err == nil || !strings.Contains(err.Error(), "is not a snapshot") {
		t.Errorf("a missing file: %v", err)
	}
}

type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestWriteLeavesNothingOnFailure(t *testing.T) {
	dir := t.TempDir()
	src := &failingReader{data: stream("db")[:600], err: &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}}
	_, err := Write(dir, Metadata{Name: "on-demand-n-1"}, src)
	if err == nil || !strings.Contains(err.Error(), "no space left") || !strings.Contains(err.Error(), "partial file was removed") {
		t.Errorf("disk full: %v", err)
	}
	// A stream cut short is not a snapshot either.
	if _, err := Write(dir, Metadata{Name: "on-demand-n-2"}, bytes.NewReader(stream("db")[:700])); err == nil {
		t.Error("a truncated stream was saved")
	}
	if files, _ := os.ReadDir(dir); len(files) != 0 {
		t.Errorf("left %v", files)
	}
}

func TestFindAndPrune(t *testing.T) {
	dir := t.TempDir()
	base := time.Unix(1700000000, 0).UTC()
	write := func(prefix, node string, i int) string {
		t.Helper()
		at := base.Add(time.Duration(i) * time.Minute)
		name := FileName(prefix, node, at, false)
		if _, err := Write(dir, Metadata{Name: name, Node: node, Created: at}, bytes.NewReader(stream(name))); err != nil {
			t.Fatal(err)
		}
		return name
	}
	var scheduled []string
	for i := range 4 {
		scheduled = append(scheduled, write(ScheduledPrefix, "n1", i))
	}
	manual := write(OnDemandPrefix, "n1", 0)
	other := write(ScheduledPrefix, "n2", 0)

	for _, bad := range []string{"nope", "../x", manual + ".json", ""} {
		if _, err := Find(dir, bad); err == nil || !strings.Contains(err.Error(), "is not a snapshot") {
			t.Errorf("Find(%q): %v", bad, err)
		}
	}
	if e, err := Find(dir, manual); err != nil || e.Name != manual {
		t.Errorf("Find(%q) = %+v %v", manual, e, err)
	}

	// Scheduled retention: this node's scheduled snapshots only, the newest kept.
	removed, err := Prune(dir, ScheduledPrefix, "n1", 2)
	if err != nil || strings.Join(removed, " ") != scheduled[0]+" "+scheduled[1] {
		t.Errorf("Prune removed %v (%v), want the two oldest scheduled", removed, err)
	}
	list, _ := List(dir)
	if len(list) != 4 {
		t.Errorf("left %d snapshots, want 4", len(list))
	}
	if _, err := Prune(dir, "", "", 0); err == nil {
		t.Error("a retention of 0 was accepted")
	}
	// Every snapshot: only the newest stays.
	if _, err := Prune(dir, "", "", 1); err != nil {
		t.Fatal(err)
	}
	list, _ = List(dir)
	if len(list) != 1 || list[0].Name != scheduled[3] {
		t.Errorf("after prune 1: %+v (other node's %s)", list, other)
	}
	if files, _ := os.ReadDir(dir); len(files) != 2 {
		t.Errorf("metadata left behind: %v", files)
	}
}
