package cli

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/internal/etcd/snapshot"
)

// TestEtcdSnapshotFilesCommands runs ls, delete and prune on snapshots in the directory the
// config file names, and save on a data directory no server runs on.
func TestEtcdSnapshotFilesCommands(t *testing.T) {
	base := t.TempDir()
	dataDir, snapshots := filepath.Join(base, "data"), filepath.Join(base, "backups")
	config := filepath.Join(base, "config.yaml")
	if err := os.WriteFile(config, []byte("etcd-snapshot-dir: "+snapshots+"\nhttps-listen-port: 7443\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := make([]byte, 512)
	sum := sha256.Sum256(db)
	stream := append(db, sum[:]...)
	for i := range 3 {
		at := time.Unix(1700000000+int64(i)*60, 0).UTC()
		name := snapshot.FileName(snapshot.ScheduledPrefix, "n1", at, false)
		if _, err := snapshot.Write(snapshots, snapshot.Metadata{Name: name, Node: "n1", Created: at}, bytes.NewReader(stream)); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) (string, int) {
		var out bytes.Buffer
		code := Run(append([]string{"k1s", "etcd-snapshot"}, args...), &out, &out)
		return out.String(), code
	}
	flags := []string{"--config", config, "--data-dir", dataDir}
	out, code := run(append([]string{"ls"}, flags...)...)
	if code != 0 || strings.Count(out, "etcd-snapshot-n1-") != 3 || !strings.Contains(out, "NAME  ") || !strings.Contains(out, "2023-11-14T22:13:20Z  n1") {
		t.Errorf("ls (%d):\n%s", code, out)
	}
	if out, code := run(append(append([]string{"delete"}, flags...), "etcd-snapshot-n1-1700000000", "typo")...); code == 0 || !strings.Contains(out, `"typo" is not a snapshot in `+snapshots) {
		t.Errorf("delete with a typo (%d): %s", code, out)
	}
	if out, code := run(append(append([]string{"delete"}, flags...), "etcd-snapshot-n1-1700000000")...); code != 0 || !strings.Contains(out, "deleted etcd-snapshot-n1-1700000000") {
		t.Errorf("delete (%d): %s", code, out)
	}
	if out, code := run(append([]string{"prune", "--snapshot-retention", "1"}, flags...)...); code != 0 || strings.TrimSpace(out) != "deleted etcd-snapshot-n1-1700000060" {
		t.Errorf("prune (%d): %s", code, out)
	}
	if out, code := run(append([]string{"save"}, flags...)...); code == 0 || !strings.Contains(out, "no k1s server is running on "+dataDir) {
		t.Errorf("save without a server (%d): %s", code, out)
	}
	if out, code := run(append([]string{"save", "--name", "Bad/Name"}, flags...)...); code == 0 || !strings.Contains(out, "is not a valid snapshot name") {
		t.Errorf("save --name Bad/Name (%d): %s", code, out)
	}
}
