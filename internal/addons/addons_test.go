package addons

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/k1s-io/k1s/internal/deploy"
	"github.com/k1s-io/k1s/manifests"
)

func TestValidateDisabled(t *testing.T) {
	if err := ValidateDisabled([]string{"coredns"}); err != nil {
		t.Errorf("coredns: %v", err)
	}
	err := ValidateDisabled([]string{"traefik"})
	if err == nil || !strings.Contains(err.Error(), `--disable "traefik": unknown add-on; k1s ships: coredns, local-storage, metrics-server, servicelb, network-policy`) {
		t.Errorf("unknown add-on: %v", err)
	}
}

// Every registered add-on has its manifest, and renders with no placeholder left.
func TestEveryAddonRenders(t *testing.T) {
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 192.0.2.53\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := Settings{ClusterDNS: net.ParseIP("10.43.0.10"), ClusterDomain: "cluster.local", ResolvConf: resolv,
		Images: map[string]string{"coredns": "k1s.local/coredns:test", "pause": "k1s.local/pause:test"}}
	list, err := Manifests(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	withManifest := 0
	for _, a := range Registry() {
		if !a.NoManifest {
			withManifest++
		}
	}
	if len(list) != withManifest {
		t.Fatalf("%d manifests for %d add-ons", len(list), withManifest)
	}
	for _, a := range list {
		if _, err := fs.Stat(manifests.FS, a.Name+".yaml"); err != nil {
			t.Errorf("add-on %s has no manifest: %v", a.Name, err)
		}
		out, err := deploy.Render(manifests.FS, a)
		if err != nil {
			t.Errorf("add-on %s: %v", a.Name, err)
		}
		if strings.Contains(string(out), "%{") {
			t.Errorf("add-on %s: placeholder left", a.Name)
		}
	}
	disabled, err := Manifests(Settings{}, []string{"coredns"})
	if err != nil || !disabled[0].Disabled {
		t.Errorf("a disabled add-on needs no settings and is marked for removal: %v %v", disabled, err)
	}
}
