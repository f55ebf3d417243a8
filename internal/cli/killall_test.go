package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/k1s-io/k1s/internal/layout"
)

// printPaths runs `k1s killall --print-paths ARGS` and returns its output lines.
func printPaths(t *testing.T, args ...string) ([]string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := newApp(&out, &errOut).Run(append([]string{"k1s", "killall", "--print-paths"}, args...))
	if errOut.Len() > 0 {
		t.Logf("stderr: %s", errOut.String())
	}
	return strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"), err
}

// --print-paths names the data directory as every command decides it (flag, K1S_DATA_DIR, the
// config file's key, the default), made absolute, then layout's uninstall paths; it needs no
// k1s data directory and touches nothing.
func TestKillallPrintPaths(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "config.yaml")
	// A server's config file: killall takes its data-dir and ignores the server's other keys.
	if err := os.WriteFile(config, []byte("data-dir: /srv/from-config\ntls-san: [a.example]\nnode-ip: 192.0.2.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := func(dataDir string) string {
		return strings.Join(append([]string{dataDir}, layout.UninstallPaths(layout.DataDir(dataDir))...), "\n")
	}
	t.Setenv("K1S_DATA_DIR", "")
	os.Unsetenv("K1S_DATA_DIR")
	t.Setenv("K1S_CONFIG_FILE", "")
	os.Unsetenv("K1S_CONFIG_FILE")

	got, err := printPaths(t, "--config", config)
	if err != nil || strings.Join(got, "\n") != want("/srv/from-config") {
		t.Errorf("with the config file's data-dir: %q, %v; want %q", got, err, want("/srv/from-config"))
	}
	got, err = printPaths(t, "--config", config, "--data-dir", "/srv/flag")
	if err != nil || got[0] != "/srv/flag" {
		t.Errorf("--data-dir does not win over the config file: %q, %v", got, err)
	}
	t.Setenv("K1S_CONFIG_FILE", config)
	got, err = printPaths(t)
	if err != nil || got[0] != "/srv/from-config" {
		t.Errorf("K1S_CONFIG_FILE is not read: %q, %v", got, err)
	}
	t.Setenv("K1S_DATA_DIR", "/srv/env")
	got, err = printPaths(t)
	if err != nil || got[0] != "/srv/env" {
		t.Errorf("K1S_DATA_DIR does not win over the config file: %q, %v", got, err)
	}
	os.Unsetenv("K1S_DATA_DIR")

	t.Chdir(dir)
	got, err = printPaths(t, "--data-dir", "rel/data")
	if err != nil || strings.Join(got, "\n") != want(filepath.Join(dir, "rel/data")) {
		t.Errorf("a relative --data-dir: %q, %v; want it made absolute", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "rel")); err == nil {
		t.Error("--print-paths created the data directory")
	}

	if _, err := printPaths(t, "--config", filepath.Join(dir, "absent.yaml")); err == nil {
		t.Error("a --config that does not exist was ignored")
	}
	if err := os.WriteFile(config, []byte("data-dir: [a, b]: c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := printPaths(t, "--config", config); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("a malformed config file: %v", err)
	}
	if _, err := printPaths(t, "--data-dir", "/srv/a\nb"); err == nil {
		t.Error("a data directory with a line break was printed")
	}
}
