package payload

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
)

// The payload's CoreDNS shares k1s's compiled k8s.io packages only while its module requires
// every module it has in common with k1s at k1s's version or newer (see build-payload.sh).
func TestPayloadModulesNotOlderThanK1s(t *testing.T) {
	k1s := parseGoMod(t, filepath.Join("..", "..", "go.mod"))
	payload := parseGoMod(t, filepath.Join("..", "..", "scripts", "payload", "go.mod"))
	want := map[string]string{}
	for _, r := range k1s.Require {
		want[r.Mod.Path] = r.Mod.Version
	}
	for _, r := range payload.Require {
		if v, ok := want[r.Mod.Path]; ok && semver.Compare(r.Mod.Version, v) < 0 {
			t.Errorf("scripts/payload/go.mod requires %s %s, older than k1s's %s: run `go get %s@%s` in scripts/payload",
				r.Mod.Path, r.Mod.Version, v, r.Mod.Path, v)
		}
	}
}

func parseGoMod(t *testing.T, path string) *modfile.File {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.ParseLax(path, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
